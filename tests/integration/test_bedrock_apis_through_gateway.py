"""Both Bedrock APIs through the gateway on the local stack: the official SDK at the gateway, the emulated
Bedrock behind it. A model without an ARN-versioned id goes to the Messages-API endpoint (SSE), a legacy
one to InvokeModel (event-stream), whole and streamed, through failover and to Vertex, with usage,
settlement and audit records as for every request. Beta flags the emulated Bedrock refuses are dropped
and reported; an upstream 400 comes back unchanged, without failover or breaker failures."""

from __future__ import annotations

import anthropic
import pytest
from gateway.domain.breaker import breaker_key
from gateway.domain.catalog import load_catalog

from tests.integration.conftest import upstream_calls
from tests.integration.test_quota import counters, eventually

pytestmark = pytest.mark.integration
MESSAGES_MODEL = "claude-opus-4-7"  # Bedrock id anthropic.claude-opus-4-7: the Messages-API endpoint
INVOKE_MODEL = "claude-haiku-4-5"  # us.anthropic.claude-haiku-4-5-20251001-v1:0: InvokeModel
HELLO = [{"role": "user", "content": "hello both APIs"}]
VERTEX_REGION = "us-east5"


def calls(stack, region: str, operation: str | None = None, provider: str = "bedrock") -> int:
    counts = stack.request_counts(provider).get(region, {})
    return counts.get(operation or "total", 0)


def ask(client, model: str, *, stream: bool, **kwargs):
    if stream:
        with client.messages.stream(model=model, max_tokens=32, messages=HELLO, **kwargs) as events:
            return events.get_final_message()
    return client.messages.create(model=model, max_tokens=32, messages=HELLO, **kwargs)


def expected_cost(alias: str, message) -> float:
    catalog = load_catalog()
    return catalog.lookup(alias).cost_usd(
        "us",
        "bedrock",
        input_tokens=message.usage.input_tokens,
        output_tokens=message.usage.output_tokens,
        geo_uplift=catalog.geo_uplift,
    )


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_messages_api_model_is_served_by_the_messages_endpoint(caller, audit_stream, stream) -> None:
    message = ask(caller.client, MESSAGES_MODEL, stream=stream)

    assert message.content[0].text == "Emulated reply to: hello both APIs"
    assert message.model == "claude-opus-4-7" and message.usage.output_tokens == 6
    operation = "messages_stream" if stream else "messages"
    assert caller.stack.request_counts()["us-east-1"] == {"total": 1, operation: 1}
    sent = caller.stack.recent_requests()[-1]
    # The caller's body, with the Bedrock model id in it; stream only on a stream.
    assert sent["model_id"] == "anthropic.claude-opus-4-7"
    assert sent["body"]["messages"] == HELLO and sent["body"]["max_tokens"] == 32
    assert sent["body"].get("stream", False) is stream and "anthropic_version" not in sent["body"]
    assert sent["headers"] == {"anthropic-version": "2023-06-01"}  # set by the gateway, no betas asked
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    assert outcome["event_type"] == "response" and (outcome["provider"], outcome["region"]) == (
        "bedrock",
        "us-east-1",
    )
    assert outcome["upstream_model_id"] == "anthropic.claude-opus-4-7"
    assert (outcome["input_tokens"], outcome["output_tokens"]) == (
        message.usage.input_tokens,
        message.usage.output_tokens,
    )
    assert outcome["cost_usd"] == pytest.approx(expected_cost(MESSAGES_MODEL, message), abs=1e-6)
    used = message.usage.input_tokens + message.usage.output_tokens
    assert eventually(lambda: counters(caller.stack, caller.tenant_id, "day").get("tokens"), used) == used


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_legacy_model_is_served_by_invoke_model(caller, audit_stream, stream) -> None:
    message = ask(caller.client, INVOKE_MODEL, stream=stream)

    assert message.content[0].text == "Emulated reply to: hello both APIs"
    operation = "invoke_stream" if stream else "invoke"
    assert caller.stack.request_counts()["us-east-1"] == {"total": 1, operation: 1}
    sent = caller.stack.recent_requests()[-1]
    assert sent["model_id"] == "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    assert sent["body"]["anthropic_version"] == "bedrock-2023-05-31" and "model" not in sent["body"]
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    assert outcome["upstream_model_id"] == "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    assert outcome["output_tokens"] == message.usage.output_tokens


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("model", [MESSAGES_MODEL, INVOKE_MODEL])
def test_region_1_throttling_is_served_by_region_2(caller, audit_stream, model, stream) -> None:
    caller.stack.set_fault("us-east-1", "throttle", count=1)
    message = ask(caller.client, model, stream=stream)

    assert message.content[0].text
    assert (calls(caller.stack, "us-east-1"), calls(caller.stack, "us-west-2")) == (1, 1)
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    first_error = "rate_limit_error" if model == MESSAGES_MODEL else "ThrottlingException"
    assert [(a["region"], a["error"], a["status"]) for a in outcome["attempts"]] == [
        ("us-east-1", first_error, 429),
        ("us-west-2", None, None),
    ]
    assert outcome["region"] == "us-west-2"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_every_bedrock_region_down_is_served_by_vertex(caller, audit_stream, stream) -> None:
    caller.stack.set_fault("us-east-1", "error", status=503)
    caller.stack.set_fault("us-west-2", "error", status=529)
    message = ask(caller.client, MESSAGES_MODEL, stream=stream)

    assert message.content[0].text and message.usage.output_tokens > 0
    assert calls(caller.stack, "us-east-1") == calls(caller.stack, "us-west-2") == 1
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    assert [(a["provider"], a["status"]) for a in outcome["attempts"]] == [
        ("bedrock", 503),
        ("bedrock", 529),
        ("vertex", None),
    ]
    assert (outcome["provider"], outcome["region"]) == ("vertex", VERTEX_REGION)
    assert outcome["upstream_model_id"] == "claude-opus-4-7"
    assert outcome["cost_usd"] > 0
    used = message.usage.input_tokens + message.usage.output_tokens
    assert eventually(lambda: counters(caller.stack, caller.tenant_id, "day").get("tokens"), used) == used
    sent = caller.stack.recent_requests("vertex")[-1]
    assert sent["body"]["anthropic_version"] == "vertex-2023-10-16" and "model" not in sent["body"]


def test_a_midstream_error_before_the_first_event_is_retried_once_on_the_same_region(caller, audit_stream):
    caller.stack.set_fault("us-east-1", "midstream", after_events=0, error_type="api_error", count=1)
    message = ask(caller.client, MESSAGES_MODEL, stream=True)

    assert message.content[0].text
    assert calls(caller.stack, "us-east-1") == 2 and calls(caller.stack, "us-west-2") == 0
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    assert [(a["region"], a["error"], a["possibly_billed"]) for a in outcome["attempts"]] == [
        ("us-east-1", "api_error", True),
        ("us-east-1", None, False),
    ]


def test_an_error_after_the_first_byte_ends_the_stream_with_it(caller, audit_stream) -> None:
    caller.stack.set_fault("us-east-1", "midstream", after_events=4, error_type="overloaded_error")
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        caller.client.messages.stream(model=MESSAGES_MODEL, max_tokens=32, messages=HELLO) as stream,
    ):
        for _ in stream:
            pass

    assert caught.value.body["error"]["type"] == "overloaded_error"
    assert upstream_calls(caller.stack) == 1  # no failover once the client has bytes
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    assert outcome["event_type"] == "error" and outcome["region"] == "us-east-1"


@pytest.mark.parametrize("model", [MESSAGES_MODEL, INVOKE_MODEL])
def test_a_beta_flag_the_upstream_refuses_is_dropped_and_reported(caller, audit_stream, model) -> None:
    raw = caller.client.messages.with_raw_response.create(
        model=model,
        max_tokens=32,
        messages=HELLO,
        extra_headers={"anthropic-beta": "mcp-servers-2025-12-04,context-1m-2025-08-07"},
    )

    assert raw.parse().content[0].text
    assert raw.headers["x-gateway-dropped-betas"] == "mcp-servers-2025-12-04"
    sent = caller.stack.recent_requests()[-1]
    assert upstream_calls(caller.stack) == 1
    if model == INVOKE_MODEL:
        assert sent["body"]["anthropic_beta"] == ["context-1m-2025-08-07"]
    else:
        assert sent["headers"]["anthropic-beta"] == "context-1m-2025-08-07"
        assert "anthropic_beta" not in sent["body"]
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    assert outcome["event_type"] == "response" and outcome["dropped_betas"] == "mcp-servers-2025-12-04"


def test_the_messages_endpoint_gets_the_betas_it_accepts_as_a_header(caller) -> None:
    raw = caller.client.messages.with_raw_response.create(
        model=MESSAGES_MODEL,
        max_tokens=32,
        messages=HELLO,
        extra_headers={"anthropic-beta": "no-such-beta-2099-01-01,interleaved-thinking-2025-05-14"},
    )
    assert caller.stack.request_counts()["us-east-1"] == {"total": 1, "messages": 1}
    assert caller.stack.recent_requests()[-1]["headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert raw.headers["x-gateway-dropped-betas"] == "no-such-beta-2099-01-01"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("model", [MESSAGES_MODEL, INVOKE_MODEL])
def test_an_upstream_400_comes_back_unchanged_without_failover(caller, audit_stream, model, stream) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        ask(caller.client, model, stream=stream, stop_sequences=True)  # type: ignore[arg-type]

    error = caught.value.body["error"]
    assert error["type"] == "invalid_request_error"
    if model == MESSAGES_MODEL:
        assert error["message"] == "stop_sequences: Input should be a valid list of strings"
    else:
        assert "#/stop_sequences" in error["message"]
    assert upstream_calls(caller.stack) == calls(caller.stack, "us-east-1") == 1
    breakers = caller.stack.app.state.breakers
    for region in ("us-east-1", "us-west-2"):
        for model_id in ("anthropic.claude-opus-4-7", "us.anthropic.claude-haiku-4-5-20251001-v1:0"):
            state = breakers.get(breaker_key("bedrock", region, model_id))
            assert (state.state, state.failures) == ("closed", 0)
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    assert outcome["event_type"] == "error" and outcome["status"] == 400
    assert [a["status"] for a in outcome["attempts"]] == [400]
