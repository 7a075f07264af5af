"""messages.create on the local stack: the official anthropic SDK with a real Cognito token, over
loopback HTTP, through the local authorizer, DynamoDB tenancy and quota, the Kinesis audit sink and
the Bedrock emulator. Text, tools, images, usage, and passthrough of what the gateway does not know."""

from __future__ import annotations

import base64
import json

import anthropic
import pytest

from tests.integration.conftest import upstream_calls
from tests.integration.test_quota import away_from_minute_end, counters, eventually

pytestmark = pytest.mark.integration
MODEL = "claude-haiku-4-5"
PROFILE = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
# A 1x1 PNG.
PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360f8"
        "cf00000301010018dd8db40000000049454e44ae426082"
    )
).decode()


def last_bedrock_request(stack) -> dict:
    """What the Bedrock emulator received last (its control API keeps the recent bodies)."""
    return stack.recent_requests("bedrock")[-1]


def test_text_message_with_usage(caller, audit_stream) -> None:
    message = caller.client.messages.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Hello"}]
    )

    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message._request_id
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    assert outcome["event_type"] == "response" and outcome["request_id"] == message._request_id
    assert (outcome["input_tokens"], outcome["output_tokens"]) == (
        message.usage.input_tokens,
        message.usage.output_tokens,
    )
    assert (outcome["provider"], outcome["region"]) == ("bedrock", "us-east-1")
    # The reservation was settled to the real usage (the day window: no minute boundary to straddle).
    used = message.usage.input_tokens + message.usage.output_tokens
    assert eventually(lambda: counters(caller.stack, caller.tenant_id, "day").get("tokens"), used) == used
    assert counters(caller.stack, caller.tenant_id, "day")["usd_micros"] > 0
    # Bedrock got its own body: no model, no stream, its anthropic_version.
    sent = last_bedrock_request(caller.stack)
    assert sent["model_id"] == PROFILE and sent["operation"] == "invoke"
    assert sent["body"]["anthropic_version"] == "bedrock-2023-05-31"
    assert "model" not in sent["body"] and "stream" not in sent["body"]


def test_tool_use(caller) -> None:
    tools = [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        }
    ]
    message = caller.client.messages.create(
        model=MODEL,
        max_tokens=128,
        tools=tools,
        messages=[{"role": "user", "content": "Use the tool get_weather for Paris"}],
    )

    assert message.stop_reason == "tool_use"
    tool = next(block for block in message.content if block.type == "tool_use")
    assert tool.name == "get_weather" and "city" in tool.input
    assert message.usage.output_tokens > 0
    assert last_bedrock_request(caller.stack)["body"]["tools"] == tools


def test_image_block(caller) -> None:
    message = caller.client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}},
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )

    assert message.content[0].text
    sent = last_bedrock_request(caller.stack)["body"]
    assert sent["messages"][0]["content"][0]["source"]["data"] == PIXEL


def test_unknown_fields_and_block_types_pass_through(caller) -> None:
    future_block = {"type": "future_block", "x": [1], "nested": {"deep": [None, True, 1.5]}}
    caller.client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}, future_block]}],
        extra_body={"future_option": {"enabled": True}},
    )

    sent = last_bedrock_request(caller.stack)["body"]
    assert sent["future_option"] == {"enabled": True}
    assert sent["messages"][0]["content"] == [{"type": "text", "text": "hi"}, future_block]


def test_anthropic_id_and_profile_id_resolve_to_the_same_model(caller) -> None:
    for model in ("claude-haiku-4-5-20251001", PROFILE):
        caller.client.messages.create(
            model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
        assert last_bedrock_request(caller.stack)["model_id"] == PROFILE


def test_count_tokens(caller) -> None:
    counted = caller.client.messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": "x" * 400}]
    )

    assert counted.input_tokens == 100
    assert upstream_calls(caller.stack) == 0  # an estimate, not a model call


@pytest.mark.parametrize("token", ["nope", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"])  # not a JWT; a JWT's shape, forged
def test_a_bad_token_is_401_and_reaches_no_model(token, local_stack, faults) -> None:
    sdk = anthropic.Anthropic(base_url=local_stack.endpoint, api_key=token, max_retries=0)
    with sdk, pytest.raises(anthropic.AuthenticationError) as caught:
        sdk.messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["error"]["type"] == "authentication_error"
    assert upstream_calls(faults) == 0


def test_audit_down_is_503_the_model_is_not_called_and_the_reservation_is_released(
    caller, audit_stream, monkeypatch
) -> None:
    """Real fault injection: the app's own Kinesis client refuses the `request` record."""
    from tests.integration.audit_helpers import FaultyClient

    sink = caller.stack.app.state.audit
    refuse_requests = FaultyClient(
        sink.kinesis, lambda op, kw: op == "put_record" and b'"event_type":"request"' in kw["Data"]
    )
    monkeypatch.setattr(sink, "_kinesis", refuse_requests)
    with pytest.raises(anthropic.InternalServerError) as caught:
        caller.client.messages.create(
            model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )

    assert caught.value.status_code == 503
    assert caught.value.body["error"]["type"] == "api_error"
    assert "put_record" in refuse_requests.calls
    assert upstream_calls(caller.stack) == 0
    # The reservation (1 request) was given back; the outcome record still went out: straight to the
    # audit DLQ, since the stream had just refused the request record.
    released = eventually(lambda: counters(caller.stack, caller.tenant_id, "day").get("requests", 0), 0)
    assert released == 0
    assert audit_stream.outcomes(caller.tenant_id) == []
    messages = caller.stack.client("sqs").receive_message(
        QueueUrl=caller.stack.outputs["AuditDlqUrl"], MaxNumberOfMessages=10, VisibilityTimeout=0
    ).get("Messages", [])
    [outcome] = [m for m in map(json.loads, (m["Body"] for m in messages)) if m["tenant_id"] == caller.tenant_id]
    assert outcome["event_type"] == "error" and outcome["status"] == 503


def test_quota_refusal_is_429_with_retry_after(make_tenant, make_user, gateway_client, faults, audit_stream):
    tenant_id = make_tenant("us", limits={"requests_per_minute": 1})
    user = make_user(tenant_id)
    away_from_minute_end(margin=3)  # both requests in one minute window
    with gateway_client(user.token) as client:
        client.messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(anthropic.RateLimitError) as caught:
            client.messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}])

    assert caught.value.body["error"]["type"] == "rate_limit_error"
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60
    assert caught.value.response.headers["request-id"]
    assert upstream_calls(faults) == 1  # only the first request reached a model
    # Outcome records are written in the background: the first one may land after the second.
    outcomes = {o["event_type"]: o for o in audit_stream.outcomes(tenant_id, count=2)}
    assert sorted(outcomes) == ["denied", "response"]
    assert outcomes["denied"]["request_id"] == caught.value.response.headers["request-id"]
    assert outcomes["denied"]["status"] == 429
    assert outcomes["denied"]["quota_decision"].startswith("refused")
