"""The local stack takes what the cloud takes from the same definitions: the CLI's registered callback
(stacks.definitions.CLI_CALLBACK_URL), and the audit writer's Object Lock retention, set on the bucket as its
default and given to the pump as the cloud writer's environment gives it to the writer."""

from __future__ import annotations

from audit_writer.writer import Retention

from gatewayctl.local import stack as stack_module
from gatewayctl.local.stack import LocalStack
from stacks.definitions import CLI_CALLBACK_URL


def test_the_people_client_registers_the_cli_callback_from_the_definitions(backing_stack: LocalStack):
    client = backing_stack.client("cognito-idp").describe_user_pool_client(
        UserPoolId=backing_stack.cognito["user_pool_id"], ClientId=backing_stack.cognito["people_client_id"]
    )["UserPoolClient"]
    assert client["CallbackURLs"] == [CLI_CALLBACK_URL]


def test_the_pump_gets_the_writers_retention_and_the_bucket_has_it_as_default(backing_stack, tmp_path, monkeypatch):
    started = {}

    class Recorded:
        def __init__(self, argv, *, env, **kwargs):
            started.update(argv=argv, env=env)

        def poll(self):
            return 0

    monkeypatch.setattr(stack_module.subprocess, "Popen", Recorded)  # undone after the test
    monkeypatch.setattr(backing_stack, "_pump", None)
    backing_stack.start_pump(tmp_path)

    env = started["env"]
    options = backing_stack.options
    assert (env["AUDIT_OBJECT_LOCK_MODE"], env["AUDIT_RETENTION_DAYS"]) == (
        options.object_lock_mode,
        str(options.audit_retention_days),
    )
    assert Retention.from_env(env) == Retention(options.object_lock_mode, options.audit_retention_days)
    default = backing_stack.client("s3").get_object_lock_configuration(Bucket=backing_stack.outputs["AuditBucketName"])
    rule = default["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]
    assert (rule["Mode"], rule["Days"]) == (options.object_lock_mode, options.audit_retention_days)
    assert started["argv"][-2:] == ["-m", "gatewayctl.local.pump"]
