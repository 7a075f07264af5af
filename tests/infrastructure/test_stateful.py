"""The stateful stack: Object Lock per environment, KMS everywhere, retained resources, the audit pipeline."""

from __future__ import annotations

import json

import pytest
from gateway.models.audit import glue_columns

from gatewayctl.target import OUTPUT_KEYS
from stacks.audit_queries import NAMED_QUERIES
from stacks.definitions import TENANTS, USAGE
from tests.infrastructure.conftest import config_for, only, resources

pytestmark = pytest.mark.infrastructure


@pytest.mark.parametrize(("env", "mode", "days"), [("dev", "GOVERNANCE", 1), ("prod", "COMPLIANCE", 2557)])
def test_object_lock_mode_and_retention_per_environment(request, env, mode, days):
    template = request.getfixturevalue(env).stateful
    bucket = template.to_json()["Resources"]["AuditBucket"]["Properties"]
    assert bucket["ObjectLockEnabled"] is True
    assert bucket["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": mode, "Days": days}},
    }
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}


def test_audit_bucket_is_kms_encrypted_tls_only_and_access_logged(synthesized):
    template = synthesized.stateful
    bucket = template.to_json()["Resources"]["AuditBucket"]["Properties"]
    sse = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Fn::GetAtt": ["AuditKey", "Arn"]}}
    assert bucket["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": "AuditLogBucket"}
    policy = [
        p
        for p in resources(template, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": "AuditBucket"}
    ]
    statements = policy[0]["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    )


def test_stream_and_tables_use_customer_managed_keys(synthesized):
    template = synthesized.stateful.to_json()["Resources"]
    assert template["AuditStream"]["Properties"]["StreamEncryption"] == {
        "EncryptionType": "KMS",
        "KeyId": {"Fn::GetAtt": ["AuditKey", "Arn"]},
    }
    for table in (TENANTS, USAGE):
        sse = template[table.logical_id]["Properties"]["SSESpecification"]
        assert sse == {
            "SSEEnabled": True,
            "SSEType": "KMS",
            "KMSMasterKeyId": {"Fn::GetAtt": ["DataKey", "Arn"]},
        }
    assert template["AuditDlq"]["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": ["AuditKey", "Arn"]}


def test_tables_are_on_demand_with_pitr_deletion_protection_and_ttl_on_usage(synthesized):
    template = synthesized.stateful.to_json()["Resources"]
    for table in (TENANTS, USAGE):
        props = template[table.logical_id]["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["DeletionProtectionEnabled"] is True
        assert props["KeySchema"] == [
            {"AttributeName": table.partition_key, "KeyType": "HASH"},
            {"AttributeName": table.sort_key, "KeyType": "RANGE"},
        ]
    assert template["UsageTable"]["Properties"]["TimeToLiveSpecification"] == {
        "AttributeName": USAGE.ttl_attribute,
        "Enabled": True,
    }
    assert "TimeToLiveSpecification" not in template["TenantsTable"]["Properties"]
    indexes = template["TenantsTable"]["Properties"]["GlobalSecondaryIndexes"]
    assert [i["IndexName"] for i in indexes] == [i.name for i in TENANTS.indexes]


def test_stateful_resources_are_retained(synthesized):
    template = synthesized.stateful.to_json()["Resources"]
    for logical_id in (
        "TenantsTable",
        "UsageTable",
        "AuditBucket",
        "AuditLogBucket",
        "AuditStream",
        "AuditDlq",
        "AuditKey",
        "DataKey",
    ):
        assert template[logical_id]["DeletionPolicy"] == "Retain", logical_id
        assert template[logical_id]["UpdateReplacePolicy"] == "Retain", logical_id


def test_termination_protection_only_in_prod(dev, prod):
    assert prod.gateway.stateful.termination_protection is True
    assert dev.gateway.stateful.termination_protection is False
    artifact = prod.assembly.get_stack_artifact(prod.gateway.stateful.artifact_id)
    assert artifact.termination_protection is True


def test_dead_letter_queue_for_audit_records(synthesized):
    # Two queues since the audit writer: the runtime's DLQ (records) and the writer's failures (positions).
    queue = resources(synthesized.stateful, "AWS::SQS::Queue")["AuditDlq"]
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600


def _function(template, handler: str) -> tuple[str, dict]:
    found = [
        (i, f["Properties"])
        for i, f in resources(template, "AWS::Lambda::Function").items()
        if f["Properties"].get("Handler") == handler
    ]
    assert len(found) == 1, found
    return found[0]


def test_the_audit_writer_consumes_the_stream_and_no_firehose_reads_it(synthesized):
    streams = resources(synthesized.stateful, "AWS::KinesisFirehose::DeliveryStream")
    assert all(s["Properties"]["DeliveryStreamType"] == "DirectPut" for s in streams.values())
    writer_id, writer = _function(synthesized.stateful, "audit_writer.handler.kinesis_handler")
    assert (writer["Runtime"], writer["Architectures"]) == ("python3.13", ["arm64"])
    (mapping,) = [
        m["Properties"]
        for m in resources(synthesized.stateful, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": writer_id}
    ]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["AuditStream", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["AuditWriterFailures", "Arn"]}


def test_the_writer_sets_the_environments_object_lock_retention(synthesized):
    config = config_for(synthesized.env)
    for handler in ("audit_writer.handler.kinesis_handler", "audit_writer.handler.staged_access_logs_handler"):
        variables = _function(synthesized.stateful, handler)[1]["Environment"]["Variables"]
        assert variables["AUDIT_BUCKET"] == {"Ref": "AuditBucket"}
        assert variables["AUDIT_OBJECT_LOCK_MODE"] == config.object_lock_mode
        assert variables["AUDIT_RETENTION_DAYS"] == str(config.audit_retention_days)


def _statements_of(template, role_id_prefix: str) -> list[dict]:
    out = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        roles = policy["Properties"]["Roles"]
        if any(r.get("Ref", "").startswith(role_id_prefix) for r in roles):
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def test_writers_may_only_add_locked_objects_under_their_prefixes(synthesized):
    expected = {
        "AuditAuditWriterRole": ("audit/", "audit-errors/"),
        "AuditAccessLogWriterRole": ("access-logs/", "access-log-errors/"),
    }
    for role, prefixes in expected.items():
        statements = _statements_of(synthesized.stateful, role)
        assert statements, role
        s3_actions = {a for s in statements for a in _listed(s["Action"]) if a.startswith("s3:")}
        assert {"s3:PutObject", "s3:PutObjectRetention"} <= s3_actions
        assert not {a for a in s3_actions if "Delete" in a or "Bypass" in a or a == "s3:*"}, s3_actions
        (write,) = [s for s in statements if "s3:PutObjectRetention" in _listed(s["Action"])]
        rendered = json.dumps(write["Resource"])
        for prefix in prefixes:
            assert f"/{prefix}*" in rendered
        assert len(_listed(write["Resource"])) == len(prefixes)


def _listed(value):
    return value if isinstance(value, list) else [value]


def test_jq_date_slice_matches_the_record_time_format():
    # The runtime writes ISO-8601 UTC (2026-11-23T03:40:00.123Z): the first ten characters are the date.
    assert "2026-11-23T03:40:00.123Z"[0:10] == "2026-11-23"


def test_access_logs_have_their_own_prefix_and_an_api_gateway_stream_name(synthesized):
    streams = resources(synthesized.stateful, "AWS::KinesisFirehose::DeliveryStream")
    direct = next(
        s["Properties"] for s in streams.values() if s["Properties"]["DeliveryStreamType"] == "DirectPut"
    )
    assert direct["DeliveryStreamName"].startswith("amazon-apigateway-")
    # Firehose only stages them; the writer puts them under access-logs/ in the audit bucket.
    destination = direct["ExtendedS3DestinationConfiguration"]
    assert destination["BucketARN"] == {"Fn::GetAtt": ["AccessLogStagingBucket", "Arn"]}
    assert destination["Prefix"] == "staged/"
    rule = next(iter(resources(synthesized.stateful, "AWS::Events::Rule").values()))["Properties"]
    assert rule["EventPattern"]["detail"]["bucket"]["name"] == [{"Ref": "AccessLogStagingBucket"}]
    writer_id, _ = _function(synthesized.stateful, "audit_writer.handler.staged_access_logs_handler")
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": [writer_id, "Arn"]}
    staging = resources(synthesized.stateful, "AWS::S3::Bucket")["AccessLogStagingBucket"]["Properties"]
    assert staging["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True
    assert "ObjectLockEnabled" not in staging


def test_glue_table_columns_come_from_the_audit_model_with_partition_projection(synthesized):
    tables = resources(synthesized.stateful, "AWS::Glue::Table")
    audit = next(
        t["Properties"]["TableInput"]
        for t in tables.values()
        if t["Properties"]["TableInput"]["Name"] == "audit_events"
    )
    columns = [(c["Name"], c["Type"]) for c in audit["StorageDescriptor"]["Columns"]]
    assert columns == glue_columns()
    assert [k["Name"] for k in audit["PartitionKeys"]] == ["tenant", "dt"]
    assert audit["Parameters"]["projection.enabled"] == "true"
    assert audit["Parameters"]["projection.dt.type"] == "date"


def test_athena_workgroup_enforces_encrypted_results_and_a_scan_cutoff(request, synthesized):
    _, workgroup = only(synthesized.stateful, "AWS::Athena::WorkGroup")
    config = workgroup["Properties"]["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["BytesScannedCutoffPerQuery"] == (10 if synthesized.env == "dev" else 100) * 1024**3
    assert config["ResultConfiguration"]["EncryptionConfiguration"]["EncryptionOption"] == "SSE_KMS"
    queries = resources(synthesized.stateful, "AWS::Athena::NamedQuery")
    assert sorted(q["Properties"]["Name"] for q in queries.values()) == sorted(NAMED_QUERIES)


def test_outputs_are_exactly_what_gatewayctl_reads(synthesized):
    keys = set(synthesized.stateful.find_outputs("*")) | set(synthesized.stateless.find_outputs("*"))
    # CDK adds ExportsOutput* for the cross-stack references; those are not part of the contract.
    assert {k for k in keys if not k.startswith("ExportsOutput")} == set(OUTPUT_KEYS)


def test_stack_names_match_gatewayctl(synthesized):
    from gatewayctl.target import stack_names

    assert (synthesized.gateway.stateful.stack_name, synthesized.gateway.stateless.stack_name) == stack_names(
        synthesized.env
    )


def test_no_stateful_resource_has_a_physical_name(synthesized):
    template = synthesized.stateful.to_json()["Resources"]
    assert "TableName" not in template["TenantsTable"]["Properties"]
    assert "BucketName" not in template["AuditBucket"]["Properties"]
    assert "Name" not in template["AuditStream"]["Properties"]
    assert json.dumps(template).count("amazon-apigateway-") == 1  # the one name API Gateway requires


def test_access_logs_in_the_immutable_bucket_name_no_person(synthesized):
    # GDPR erasure cannot touch Object Lock objects, so nothing written there may identify a person.
    _, stage = only(synthesized.stateless, "AWS::ApiGateway::Stage")
    fmt = json.loads(stage["Properties"]["AccessLogSetting"]["Format"])
    assert not [v for v in fmt.values() if "claims" in v or "principal" in v.lower()]
    assert "request_id" in fmt and "request_time" in fmt
