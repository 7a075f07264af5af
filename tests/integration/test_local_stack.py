"""The local stack: the harness's own composition (resources from the definitions, the gateway
reachable with the anthropic SDK), and `gatewayctl local up/status/down` as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import anthropic
import boto3
import pytest

from gatewayctl.local.processes import alive, free_port_run, stop
from gatewayctl.target import OUTPUT_KEYS, load_local
from stacks import definitions


def test_outputs_carry_every_output_key_and_load_as_a_target(backing_stack, tmp_path):
    state_file = tmp_path / "stack.json"
    state_file.write_text(json.dumps(backing_stack.state()))

    target = load_local(state_file)

    assert set(target.outputs) == set(OUTPUT_KEYS)
    assert target.endpoint_url == backing_stack.moto_endpoint
    assert target.output("InvokeScope") == definitions.USER_POOL.invoke_scope
    tables = target.client("dynamodb").list_tables()["TableNames"]
    assert target.output("TenantsTableName") in tables


def test_resources_follow_the_definitions(backing_stack):
    ddb = backing_stack.client("dynamodb")
    tenants = ddb.describe_table(TableName=backing_stack.outputs["TenantsTableName"])["Table"]
    usage = backing_stack.outputs["UsageTableName"]
    s3 = backing_stack.client("s3")
    bucket = backing_stack.outputs["AuditBucketName"]

    assert [k["AttributeName"] for k in tenants["KeySchema"]] == ["pk", "sk"]
    [index] = tenants["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by_tenant"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["tenant_pk", "tenant_sk"]
    ttl = ddb.describe_time_to_live(TableName=usage)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == definitions.USAGE.ttl_attribute
    assert (
        s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]["ObjectLockEnabled"]
        == "Enabled"
    )
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    stream = backing_stack.client("kinesis").describe_stream_summary(
        StreamName=backing_stack.outputs["AuditStreamName"]
    )
    assert stream["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
    clients = backing_stack.client("cognito-idp").list_user_pool_clients(
        UserPoolId=backing_stack.cognito["user_pool_id"], MaxResults=60
    )["UserPoolClients"]
    assert {backing_stack.cognito["people_client_id"], backing_stack.cognito["machine_client_id"]} <= {
        c["ClientId"] for c in clients
    }


def test_settings_point_the_app_at_the_emulators(backing_stack):
    settings = backing_stack.settings()
    assert settings.bedrock_regions == {"us": ("us-east-1", "us-west-2"), "eu": ("eu-west-1", "eu-central-1")}
    assert set(settings.bedrock_endpoints) == {"us-east-1", "us-west-2", "eu-west-1", "eu-central-1"}
    assert settings.vertex_endpoint == backing_stack.vertex_endpoint
    assert json.loads(settings.vertex_wif_config)["token_url"].startswith(backing_stack.vertex_endpoint)
    assert os.environ["AWS_ENDPOINT_URL"] == backing_stack.moto_endpoint


def test_the_sdk_reaches_bedrock_through_the_gateway(
    local_stack, make_tenant, make_user, gateway_client, faults
):
    tenant = make_tenant("us")
    user = make_user(tenant, ("power_user",))
    client = gateway_client(user.token)

    message = client.messages.create(
        model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "hi gateway"}]
    )
    with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "stream it"}]
    ) as stream:
        streamed = "".join(stream.text_stream)

    assert message.content[0].text == "Emulated reply to: hi gateway"
    assert streamed == "Emulated reply to: stream it"
    assert faults.request_counts()["us-east-1"]["total"] == 2


def test_a_throttled_region_fails_over_to_the_next(
    local_stack, make_tenant, make_user, gateway_client, faults
):
    user = make_user(make_tenant("eu"))
    faults.set_fault("eu-west-1", "throttle", count=1)

    message = gateway_client(user.token).messages.create(
        model="claude-haiku-4-5", max_tokens=20, messages=[{"role": "user", "content": "x"}]
    )

    counts = faults.request_counts()
    assert message.type == "message"
    assert counts["eu-west-1"]["total"] == 1 and counts["eu-central-1"]["total"] == 1
    assert "us-east-1" not in counts


def test_no_token_no_upstream_call(local_stack, gateway_client, faults):
    with pytest.raises(anthropic.AuthenticationError):
        gateway_client("not-a-token").messages.create(
            model="claude-haiku-4-5", max_tokens=20, messages=[{"role": "user", "content": "x"}]
        )
    assert faults.request_counts() == {}


# -- gatewayctl local up / status / down, as a user runs them -------------------------------------


@pytest.fixture
def ports():
    # Below the ephemeral range, as `local up --free-ports` picks them: there no outgoing connection of
    # another test can take one between this check and the stack's bind.
    base = free_port_run(10)
    return {
        "--gateway-port": base,
        "--moto-port": base + 1,
        "--bedrock-control-port": base + 2,
        "--vertex-port": base + 3,
        "--bedrock-base-port": base + 4,
    }


@pytest.fixture
def gatewayctl(tmp_path, run_gatewayctl):
    def run(*args: str):
        return run_gatewayctl(tmp_path / ".local", *args, own_aws_env=True)

    return run


def test_local_up_status_call_and_down_leave_nothing_behind(tmp_path, ports, gatewayctl):
    flags = [str(x) for pair in ports.items() for x in pair]
    up = gatewayctl("local", "up", "--detach", *flags)
    try:
        assert up.returncode == 0, up.stderr
        state = json.loads((tmp_path / ".local" / "stack.json").read_text())
        status = gatewayctl("--json", "local", "status")
        # a demo person calls the stack with a real token
        person = state["demo"]["users"][0]
        idp = boto3.client(
            "cognito-idp",
            region_name=state["region"],
            endpoint_url=state["moto_endpoint"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        token = idp.initiate_auth(
            ClientId=state["cognito"]["people_client_id"],
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": person["username"], "PASSWORD": person["password"]},
        )["AuthenticationResult"]["AccessToken"]
        reply = anthropic.Anthropic(
            base_url=state["endpoint"], auth_token=token, max_retries=0
        ).messages.create(
            model="claude-haiku-4-5", max_tokens=20, messages=[{"role": "user", "content": "hello local"}]
        )
        again = gatewayctl("local", "up", "--detach", *flags)
    finally:
        down = gatewayctl("local", "down")

    assert f"local stack up: http://127.0.0.1:{ports['--gateway-port']}" in up.stdout
    assert person["password"] in up.stdout
    assert state["endpoint"] == f"http://127.0.0.1:{ports['--gateway-port']}"
    assert state["bedrock"]["control_url"] == f"http://127.0.0.1:{ports['--bedrock-control-port']}"
    assert set(state["outputs"]) == set(OUTPUT_KEYS)
    assert status.returncode == 0, status.stdout
    assert json.loads(status.stdout)["healthy"] is True
    assert reply.content[0].text == "Emulated reply to: hello local"
    assert again.returncode != 0 and "already running" in again.stderr
    assert down.returncode == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        alive(state["pid"]) or (state["pump_pid"] and alive(state["pump_pid"]))
    ):
        time.sleep(0.1)
    assert not alive(state["pid"])
    assert not state["pump_pid"] or not alive(state["pump_pid"])
    assert not (tmp_path / ".local" / "stack.json").exists()
    for port in ports.values():  # nothing listens any more (TIME_WAIT is fine, as for the servers)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen()
    assert gatewayctl("local", "status").returncode == 1


def test_a_taken_port_is_a_clear_error(tmp_path, ports, gatewayctl):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["--moto-port"]))
        taken.listen()
        result = gatewayctl("local", "up", "--detach", *[str(x) for pair in ports.items() for x in pair])

    assert result.returncode == 1
    assert f"port {ports['--moto-port']} (moto server) is already in use" in result.stderr
    assert not (tmp_path / ".local" / "stack.json").exists()


def test_reset_breakers_lets_a_region_that_tripped_serve_again(
    local_stack, make_tenant, make_user, gateway_client, faults
):
    client = gateway_client(make_user(make_tenant("us")).token)
    ask = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    threshold = local_stack.settings().breaker_failure_threshold
    faults.set_fault("us-east-1", "error", status=503)

    for _ in range(threshold):
        client.messages.create(**ask)  # served by us-west-2 after us-east-1 fails
    faults.clear_faults()
    client.messages.create(**ask)  # the breaker is open: us-east-1 is skipped
    tripped = faults.request_counts()["us-east-1"]["total"]
    faults.reset_breakers()
    client.messages.create(**ask)

    assert tripped == threshold
    assert faults.request_counts()["us-east-1"]["total"] == threshold + 1


def test_vertex_serves_when_every_bedrock_region_fails(
    local_stack, make_tenant, make_user, gateway_client, faults
):
    client = gateway_client(make_user(make_tenant("eu")).token)
    for region in ("eu-west-1", "eu-central-1"):
        faults.set_fault(region, "error", status=500, count=1)

    with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=20, messages=[{"role": "user", "content": "fall back"}]
    ) as stream:
        text = "".join(stream.text_stream)

    assert text == "Emulated reply to: fall back"
    assert faults.request_counts("vertex") == {"europe-west1": {"total": 1, "streamRawPredict": 1}}
    assert local_stack.vertex.exchanges >= 1  # the app got its token from the emulated STS (WIF)


def test_foreground_local_up_stops_everything_on_ctrl_c(tmp_path, ports):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION")
    }
    env.update(GATEWAY_LOCAL_DIR=str(tmp_path / ".local"), PYTHONUNBUFFERED="1")
    flags = [str(x) for pair in ports.items() for x in pair]
    parent = subprocess.Popen(
        [sys.executable, "-m", "gatewayctl.cli", "local", "up", "--no-demo", *flags],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    state_file = tmp_path / ".local" / "stack.json"
    try:
        for line in parent.stdout:  # up and waiting
            if "Ctrl-C stops the stack" in line:
                break
        state = json.loads(state_file.read_text())
        parent.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, _ = parent.communicate(timeout=30)
    finally:
        if parent.poll() is None:
            parent.kill()
        # The stack runs in its own process group: a failure (before Ctrl-C or in handling it) must not orphan it.
        if state_file.exists():
            stop(json.loads(state_file.read_text())["pid"])

    assert parent.returncode == 0
    assert "local stack stopped" in out
    assert not alive(state["pid"])
    assert not state["pump_pid"] or not alive(state["pump_pid"])
    assert not state_file.exists()


def test_local_up_status_and_down_in_this_process(tmp_path, ports, monkeypatch, capsys):
    """The same commands through cli.main (the stack itself still runs in its own process group)."""
    from gatewayctl import cli
    from gatewayctl import target as target_module

    state_file = tmp_path / ".local" / "stack.json"
    monkeypatch.setenv("GATEWAY_LOCAL_DIR", str(state_file.parent))
    monkeypatch.setattr(target_module, "LOCAL_STATE", state_file)
    flags = [str(x) for pair in ports.items() for x in pair]
    try:
        up = cli.main(["local", "up", "--detach", "--no-demo", *flags])
        up_out = capsys.readouterr().out
        status = cli.main(["local", "status"])
        status_out = capsys.readouterr().out
        state = json.loads(state_file.read_text())
    finally:
        down = cli.main(["local", "down"])
        down_out = capsys.readouterr().out

    assert up == 0 and f"local stack up: http://127.0.0.1:{ports['--gateway-port']}" in up_out
    assert status == 0 and status_out.startswith(f"local stack up (pid {state['pid']}), all parts answer")
    assert [line.split()[0] for line in status_out.splitlines()[1:3]] == ["PART", "gateway"]
    assert down == 0 and down_out == "local stack stopped\n"
    assert not alive(state["pid"]) and not state_file.exists()
    assert cli.main(["local", "status"]) == 1 and cli.main(["local", "down"]) == 0
    assert capsys.readouterr().out.endswith("no local stack is running\n")
