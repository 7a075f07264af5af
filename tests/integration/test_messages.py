# ruff: noqa: F811  (pytest fixtures imported from the harness are redefined as test arguments)
"""messages.create over real loopback HTTP with the official anthropic SDK: text, tools, images, usage."""

from __future__ import annotations

import base64

import anthropic
import pytest

from tests.integration.runtime_harness import client, runtime_stack, stack  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration
MODEL = "claude-haiku-4-5"
# A 1x1 PNG.
PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360f8"
        "cf00000301010018dd8db40000000049454e44ae426082"
    )
).decode()


def test_text_message_with_usage(client, stack) -> None:
    message = client.messages.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Hello"}]
    )

    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message._request_id
    [outcome] = stack.outcomes()
    assert outcome.outcome == "response"
    assert outcome.usage.output_tokens == message.usage.output_tokens
    assert outcome.served_by.provider == "bedrock" and outcome.served_by.region == "us-east-1"
    [(_, usage, cost)] = stack.quota.settled
    assert usage.input_tokens == message.usage.input_tokens and cost > 0
    # Bedrock got its own body: no model, no stream, its anthropic_version.
    sent = stack.bedrock.board.snapshot()["recent"][-1]
    assert sent["model_id"] == "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    assert sent["body"]["anthropic_version"] == "bedrock-2023-05-31"
    assert "model" not in sent["body"] and "stream" not in sent["body"]


def test_tool_use(client) -> None:
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
    message = client.messages.create(
        model=MODEL,
        max_tokens=128,
        tools=tools,
        messages=[{"role": "user", "content": "Use the tool get_weather for Paris"}],
    )

    assert message.stop_reason == "tool_use"
    tool = next(block for block in message.content if block.type == "tool_use")
    assert tool.name == "get_weather" and "city" in tool.input


def test_image_block(client, stack) -> None:
    message = client.messages.create(
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
    sent = stack.bedrock.board.snapshot()["recent"][-1]["body"]
    assert sent["messages"][0]["content"][0]["source"]["data"] == PIXEL


def test_unknown_fields_and_block_types_pass_through(client, stack) -> None:
    client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "future_block", "x": [1]}]}
        ],
        extra_body={"future_option": {"enabled": True}},
    )

    sent = stack.bedrock.board.snapshot()["recent"][-1]["body"]
    assert sent["future_option"] == {"enabled": True}
    assert sent["messages"][0]["content"][1] == {"type": "future_block", "x": [1]}


def test_anthropic_id_and_profile_id_resolve_to_the_same_model(client, stack) -> None:
    for model in ("claude-haiku-4-5-20251001", "us.anthropic.claude-haiku-4-5-20251001-v1:0"):
        client.messages.create(model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
        assert stack.bedrock.board.snapshot()["recent"][-1]["model_id"] == (
            "us.anthropic.claude-haiku-4-5-20251001-v1:0"
        )


def test_count_tokens(client) -> None:
    counted = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "x" * 400}])

    assert counted.input_tokens == 100


def test_no_token_is_401(stack) -> None:
    sdk = anthropic.Anthropic(base_url=stack.gateway_url, api_key="nope", max_retries=0)
    with sdk, pytest.raises(anthropic.AuthenticationError):
        sdk.messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert stack.calls("us-east-1") == 0


def test_audit_down_is_503_and_no_model_is_called(client, stack) -> None:
    stack.audit.fail_requests = True
    with pytest.raises(anthropic.InternalServerError) as caught:
        client.messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}])

    assert caught.value.status_code == 503
    assert stack.calls("us-east-1") + stack.calls("us-west-2") == 0
    stack.wait_background()
    assert stack.quota.released  # the reservation was given back
    [outcome] = stack.outcomes()
    assert outcome.outcome == "error" and outcome.status == 503


def test_quota_refusal_is_429_with_retry_after(client, stack) -> None:
    stack.quota.refuse = True
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}])

    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.response.headers["request-id"]
    assert stack.calls("us-east-1") == 0
    assert stack.outcomes()[0].outcome == "denied"
