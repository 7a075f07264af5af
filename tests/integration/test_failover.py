"""Failover on the local stack (DESIGN.md section 5): Bedrock regions in order, then Vertex. Faults go
in over the emulators' control APIs; the attempts are read back from the audit records on Kinesis."""

from __future__ import annotations

import asyncio
import time

import anthropic
import pytest
from gateway.domain.breaker import breaker_key

from tests.integration.conftest import upstream_calls

pytestmark = pytest.mark.integration
MODEL = "claude-haiku-4-5"
HELLO = [{"role": "user", "content": "hello"}]
VERTEX_REGION = "us-east5"
# Breakers are per provider, region and model.
EAST = breaker_key("bedrock", "us-east-1", "us.anthropic.claude-haiku-4-5-20251001-v1:0")


def calls(stack, region: str, provider: str = "bedrock") -> int:
    return stack.request_counts(provider).get(region, {}).get("total", 0)


def vertex_fault(stack, kind: str, **fault) -> None:
    stack.set_fault(VERTEX_REGION, kind, provider="vertex", **fault)


def test_region_1_throttling_is_served_by_region_2(caller, audit_stream) -> None:
    caller.stack.set_fault("us-east-1", "throttle", count=1)
    message = caller.client.messages.create(model=MODEL, max_tokens=32, messages=HELLO)

    assert message.content[0].text
    assert (calls(caller.stack, "us-east-1"), calls(caller.stack, "us-west-2")) == (1, 1)
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    assert outcome["request_id"] == message._request_id
    assert [(a["provider"], a["region"], a["error"], a["status"]) for a in outcome["attempts"]] == [
        ("bedrock", "us-east-1", "ThrottlingException", 429),
        ("bedrock", "us-west-2", None, None),
    ]
    assert outcome["attempt_count"] == 2 and outcome["region"] == "us-west-2"


def test_every_bedrock_region_down_is_served_by_vertex(caller, audit_stream) -> None:
    caller.stack.set_fault("us-east-1", "error", status=503)
    caller.stack.set_fault("us-west-2", "error", status=500)
    message = caller.client.messages.create(model=MODEL, max_tokens=32, messages=HELLO)

    assert message.content[0].text and message.usage.output_tokens > 0
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    assert (outcome["provider"], outcome["region"]) == ("vertex", VERTEX_REGION)
    assert outcome["upstream_model_id"] == "claude-haiku-4-5@20251001"
    sent = caller.stack.recent_requests("vertex")[-1]
    assert sent["operation"] == "rawPredict" and sent["model_id"] == "claude-haiku-4-5@20251001"
    assert sent["body"]["anthropic_version"] == "vertex-2023-10-16" and "model" not in sent["body"]
    # rawPredict only answers a token minted by the emulated Google STS (Workload Identity Federation).
    assert caller.stack.vertex.exchanges >= 1


def test_every_bedrock_region_down_streams_from_vertex(caller, audit_stream, monkeypatch) -> None:
    caller.stack.set_fault("us-east-1", "error", status=503)
    caller.stack.set_fault("us-west-2", "timeout", hang_seconds=5)
    monkeypatch.setattr(caller.stack.app.state.chain, "first_event_timeout_seconds", 1.0)
    with caller.client.messages.stream(model=MODEL, max_tokens=32, messages=HELLO) as stream:
        final = stream.get_final_message()

    assert final.content[0].text and final.usage.output_tokens > 0
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    assert [a["error"] for a in outcome["attempts"]] == ["ServiceUnavailableException", "Timeout", None]
    assert outcome["provider"] == "vertex"
    assert caller.stack.recent_requests("vertex")[-1]["operation"] == "streamRawPredict"


def test_upstream_400_is_not_retried(caller, audit_stream) -> None:
    caller.stack.set_fault("us-east-1", "error", status=400)
    with pytest.raises(anthropic.BadRequestError) as caught:
        caller.client.messages.create(model=MODEL, max_tokens=32, messages=HELLO)

    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert upstream_calls(caller.stack) == calls(caller.stack, "us-east-1") == 1
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    assert outcome["event_type"] == "error" and outcome["status"] == 400


def test_open_breaker_skips_the_region(caller) -> None:
    caller.stack.set_fault("us-east-1", "throttle")  # until cleared
    threshold = caller.stack.app.state.settings.breaker_failure_threshold
    for _ in range(threshold):
        caller.client.messages.create(model=MODEL, max_tokens=16, messages=HELLO)
    assert caller.stack.app.state.breakers.status(EAST) == "open"

    caller.client.messages.create(model=MODEL, max_tokens=16, messages=HELLO)

    assert calls(caller.stack, "us-east-1") == threshold  # the last request went straight to us-west-2
    assert calls(caller.stack, "us-west-2") == threshold + 1


def test_everything_down_is_529(caller, audit_stream) -> None:
    for region in ("us-east-1", "us-west-2"):
        caller.stack.set_fault(region, "error", status=503)
    vertex_fault(caller.stack, "error", status=503)
    with pytest.raises(anthropic.APIStatusError) as caught:
        caller.client.messages.create(model=MODEL, max_tokens=16, messages=HELLO)

    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    assert [a["provider"] for a in outcome["attempts"]] == ["bedrock", "bedrock", "vertex"]


def test_a_hanging_region_gives_way_to_the_next_for_a_whole_response(caller, audit_stream, monkeypatch):
    caller.stack.set_fault("us-east-1", "timeout", hang_seconds=10)
    # patience: 0.5 s + 8 tokens / 10 per s
    monkeypatch.setattr(caller.stack.app.state.chain, "first_event_timeout_seconds", 0.5)
    started = time.monotonic()
    message = caller.client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)
    elapsed = time.monotonic() - started

    assert message.content[0].text
    assert 1.2 <= elapsed < 5
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    assert [(a["region"], a["error"]) for a in outcome["attempts"]] == [
        ("us-east-1", "Timeout"),
        ("us-west-2", None),
    ]


def test_vertex_error_after_first_byte_ends_the_stream_with_its_error(caller, audit_stream) -> None:
    caller.stack.set_fault("us-east-1", "error", status=503)
    caller.stack.set_fault("us-west-2", "error", status=503)
    vertex_fault(caller.stack, "midstream", after_events=3, error_type="overloaded_error")
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        caller.client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream,
    ):
        for _ in stream:
            pass

    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "overloaded_error"
    assert calls(caller.stack, VERTEX_REGION, "vertex") == 1  # no retry after the first byte
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    assert outcome["event_type"] == "error" and outcome["provider"] == "vertex"


def test_vertex_error_before_first_event_is_retried_once(caller, audit_stream) -> None:
    caller.stack.set_fault("us-east-1", "error", status=503)
    caller.stack.set_fault("us-west-2", "error", status=503)
    vertex_fault(caller.stack, "midstream", after_events=0, error_type="api_error", count=1)
    with caller.client.messages.stream(model=MODEL, max_tokens=32, messages=HELLO) as stream:
        final = stream.get_final_message()

    assert final.content[0].text
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    assert [(a["provider"], a["error"]) for a in outcome["attempts"]][-2:] == [
        ("vertex", "api_error"),
        ("vertex", None),
    ]


def test_a_stream_that_stalls_after_the_first_byte_ends_with_an_error_event(caller, monkeypatch) -> None:
    caller.stack.set_fault("us-east-1", "error", status=503)
    caller.stack.set_fault("us-west-2", "error", status=503)
    vertex_fault(caller.stack, "stall", after_events=3, hang_seconds=5)
    monkeypatch.setattr(caller.stack.app.state.gateway, "stream_idle_timeout_seconds", 0.5)
    started = time.monotonic()
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        caller.client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream,
    ):
        for _ in stream:
            pass
    elapsed = time.monotonic() - started

    assert caught.value.body["error"] == {"type": "api_error", "message": "the upstream stream stalled"}
    assert elapsed < 3


def _breaker_item(stack, key: str) -> dict | None:
    response = stack.client("dynamodb").get_item(
        TableName=stack.outputs["TenantsTableName"],
        Key={"pk": {"S": f"BREAKER#{key}"}, "sk": {"S": "STATE"}},
        ConsistentRead=True,
    )
    return response.get("Item")


def test_an_opened_breaker_is_written_to_the_tenants_table(caller) -> None:
    """Breakers are shared across containers through the tenants table (moto DynamoDB here)."""
    caller.stack.set_fault("us-east-1", "throttle")  # until cleared
    for _ in range(caller.stack.app.state.settings.breaker_failure_threshold):
        caller.client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)

    deadline = time.monotonic() + 5  # the write is fire-and-forget: it lands just after the reply
    item = _breaker_item(caller.stack, EAST)
    while item is None and time.monotonic() < deadline:
        time.sleep(0.05)
        item = _breaker_item(caller.stack, EAST)
    assert item is not None and item["state"]["S"] == "open"
    assert float(item["opened_until"]["N"]) > time.time()


def test_a_breaker_opened_by_another_container_is_honoured(caller) -> None:
    """Another container's transition reaches this one through the background refresh, not a request."""
    from gateway.adapters.breaker_store import DynamoBreakerStore
    from gateway.domain.breaker import BreakerState

    store = DynamoBreakerStore(caller.stack.app.state.settings, client=caller.stack.client("dynamodb"))
    now = time.time()
    asyncio.run(store.save(EAST, BreakerState("open", now + 3600, now + 0.001)))
    breakers = caller.stack.app.state.breakers
    deadline = time.monotonic() + 60
    # The requests that start refreshes must not succeed on us-east-1 (a success there after the open
    # state arrived would close the breaker again, as it should: the region served), nor count as its
    # failures (they would open it locally): a 403 is misconfiguration, neither.
    caller.stack.set_fault("us-east-1", "error", status=403)
    try:
        while breakers.status(EAST) != "open" and time.monotonic() < deadline:
            # A request starts a background refresh when one is due and none is in flight. One already in
            # flight may have read the table before the write above, and on a loaded machine a refresh can
            # time out: so wait for any refresh to end, make one due, start it, and wait for it to end.
            _wait_until(lambda: not breakers._refreshing, deadline)
            breakers._last_refresh = float("-inf")
            caller.client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)
            _wait_until(lambda: not breakers._refreshing, deadline)
    finally:
        caller.stack.clear_faults("us-east-1")
    assert breakers.status(EAST) == "open", "the shared open state never reached this container"
    assert breakers.get(EAST).opened_until > time.time() + 600  # the shared state's hour, not a local open
    caller.stack.reset_counts()
    caller.client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)

    assert calls(caller.stack, "us-east-1") == 0
    assert calls(caller.stack, "us-west-2") == 1


def _wait_until(condition, deadline: float) -> None:
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
