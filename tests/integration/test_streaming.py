# ruff: noqa: F811  (pytest fixtures imported from the harness are redefined as test arguments)
"""messages.stream over real loopback HTTP with the official anthropic SDK: SSE framing, usage, errors."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from tests.integration.runtime_harness import client, runtime_stack, stack  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration
MODEL = "claude-haiku-4-5"
TOOLS = [
    {
        "name": "lookup",
        "description": "Look a word up",
        "input_schema": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
    }
]


def test_stream_text_and_usage(client, stack) -> None:
    with client.messages.stream(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Tell me a story"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text and text == final.content[0].text
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    [outcome] = stack.outcomes()
    assert outcome.outcome == "response" and outcome.first_byte_at is not None
    assert (outcome.usage.input_tokens, outcome.usage.output_tokens) == (
        final.usage.input_tokens,
        final.usage.output_tokens,
    )


def test_stream_tool_use(client) -> None:
    with client.messages.stream(
        model=MODEL,
        max_tokens=128,
        tools=TOOLS,
        messages=[{"role": "user", "content": "use the tool lookup for 'gateway'"}],
    ) as stream:
        final = stream.get_final_message()

    assert final.stop_reason == "tool_use"
    tool = next(block for block in final.content if block.type == "tool_use")
    assert tool.name == "lookup" and isinstance(tool.input, dict)


def test_raw_sse_framing(stack) -> None:
    body = {"model": MODEL, "max_tokens": 32, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(
        f"{stack.gateway_url}/v1/messages", json=body, headers={"authorization": "Bearer user:alice"}
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"]
    blocks = response.text.strip().split("\n\n")
    assert blocks[0].startswith("event: message_start\ndata: {")
    assert blocks[-1].startswith("event: message_stop\ndata: {")
    for block in blocks:
        event, data = block.split("\n")
        assert event.startswith("event: ") and data.startswith("data: ")


def test_stream_throttled_region_fails_over_before_first_byte(client, stack) -> None:
    stack.fault("us-east-1", kind="throttle", count=1)
    with client.messages.stream(
        model=MODEL, max_tokens=32, messages=[{"role": "user", "content": "hi"}]
    ) as s:
        final = s.get_final_message()

    assert final.content[0].text
    [outcome] = stack.outcomes()
    assert [(a.region, a.error) for a in outcome.attempts] == [
        ("us-east-1", "ThrottlingException"),
        ("us-west-2", None),
    ]


def test_error_after_first_byte_is_an_error_event(client, stack) -> None:
    stack.fault("us-east-1", kind="midstream", after_events=3, error_type="internalServerException")
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Tell me a long story"}]
        ) as stream,
    ):
        for _ in stream:
            pass

    assert caught.value.body["error"]["type"] == "api_error"
    assert "Injected mid-stream internalServerException" in caught.value.body["error"]["message"]
    assert stack.calls("us-west-2") == 0  # no failover after bytes reached the client
    [outcome] = stack.outcomes()
    assert outcome.outcome == "error"


def test_midstream_error_before_first_event_is_retried(client, stack) -> None:
    stack.fault("us-east-1", kind="midstream", after_events=0, count=1)
    with client.messages.stream(
        model=MODEL, max_tokens=32, messages=[{"role": "user", "content": "hi"}]
    ) as s:
        final = s.get_final_message()

    assert final.content
    [outcome] = stack.outcomes()
    # One retry on the same region, which then served it.
    assert [a.region for a in outcome.attempts] == ["us-east-1", "us-east-1"]
    assert outcome.attempts[0].error == "ModelStreamErrorException"


def test_stream_with_an_image_and_unknown_fields(client, stack) -> None:
    from tests.integration.test_messages import PIXEL

    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}
    with client.messages.stream(
        model=MODEL,
        max_tokens=32,
        messages=[{"role": "user", "content": [image, {"type": "text", "text": "Describe it"}]}],
        extra_body={"future_option": 1},
    ) as stream:
        final = stream.get_final_message()

    assert final.content[0].text and final.usage.output_tokens > 0
    sent = stack.bedrock.board.snapshot()["recent"][-1]
    assert sent["operation"] == "invoke_stream"
    assert sent["body"]["messages"][0]["content"][0]["source"]["data"] == PIXEL
    assert sent["body"]["future_option"] == 1 and "stream" not in sent["body"]
