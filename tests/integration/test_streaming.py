"""messages.stream on the local stack (real Cognito token, DynamoDB quota, Kinesis audit, the Bedrock
emulator's event-stream): SSE framing, usage, tools, images, and errors before and after the first byte."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from tests.integration.test_messages import PIXEL

pytestmark = pytest.mark.integration
MODEL = "claude-haiku-4-5"
TOOLS = [
    {
        "name": "lookup",
        "description": "Look a word up",
        "input_schema": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
    }
]


def attempts(outcome: dict) -> list[tuple[str, str | None]]:
    return [(a["region"], a["error"]) for a in outcome["attempts"]]


def test_stream_text_and_usage(caller, audit_stream) -> None:
    with caller.client.messages.stream(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Tell me a story"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text and text == final.content[0].text
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    assert outcome["event_type"] == "response" and outcome["ttfb_ms"] is not None
    assert (outcome["input_tokens"], outcome["output_tokens"]) == (
        final.usage.input_tokens,
        final.usage.output_tokens,
    )
    assert caller.stack.recent_requests()[-1]["operation"] == "invoke_stream"


def test_stream_tool_use(caller) -> None:
    with caller.client.messages.stream(
        model=MODEL,
        max_tokens=128,
        tools=TOOLS,
        messages=[{"role": "user", "content": "use the tool lookup for 'gateway'"}],
    ) as stream:
        final = stream.get_final_message()

    assert final.stop_reason == "tool_use"
    tool = next(block for block in final.content if block.type == "tool_use")
    assert tool.name == "lookup" and isinstance(tool.input, dict)
    assert final.usage.output_tokens > 0


def test_raw_sse_framing(caller) -> None:
    body = {"model": MODEL, "max_tokens": 32, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(
        f"{caller.stack.endpoint}/v1/messages",
        json=body,
        headers={"authorization": f"Bearer {caller.user.token}"},
        timeout=30,
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


def test_stream_throttled_region_fails_over_before_first_byte(caller, audit_stream) -> None:
    caller.stack.set_fault("us-east-1", "throttle", count=1)
    with caller.client.messages.stream(
        model=MODEL, max_tokens=32, messages=[{"role": "user", "content": "hi"}]
    ) as s:
        final = s.get_final_message()

    assert final.content[0].text
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    assert attempts(outcome) == [("us-east-1", "ThrottlingException"), ("us-west-2", None)]
    assert outcome["region"] == "us-west-2"


def test_error_after_first_byte_is_an_error_event(caller, audit_stream) -> None:
    caller.stack.set_fault("us-east-1", "midstream", after_events=3, error_type="internalServerException")
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        caller.client.messages.stream(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Tell me a long story"}]
        ) as stream,
    ):
        for _ in stream:
            pass

    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "api_error"
    assert "Injected mid-stream internalServerException" in caught.value.body["error"]["message"]
    counts = caller.stack.request_counts()
    assert counts["us-east-1"]["total"] == 1
    assert "us-west-2" not in counts  # no failover after bytes reached the client
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    assert outcome["event_type"] == "error"


def test_midstream_error_before_first_event_is_retried(caller, audit_stream) -> None:
    caller.stack.set_fault("us-east-1", "midstream", after_events=0, count=1)
    with caller.client.messages.stream(
        model=MODEL, max_tokens=32, messages=[{"role": "user", "content": "hi"}]
    ) as s:
        final = s.get_final_message()

    assert final.content
    [outcome] = audit_stream.outcomes(caller.tenant_id)
    # One retry on the same region, which then served it.
    assert attempts(outcome) == [("us-east-1", "ModelStreamErrorException"), ("us-east-1", None)]


def test_stream_with_an_image_and_unknown_fields(caller) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}
    future_block = {"type": "future_block", "payload": {"k": [1, 2]}}
    with caller.client.messages.stream(
        model=MODEL,
        max_tokens=32,
        messages=[
            {"role": "user", "content": [image, {"type": "text", "text": "Describe it"}, future_block]}
        ],
        extra_body={"future_option": 1},
    ) as stream:
        final = stream.get_final_message()

    assert final.content[0].text and final.usage.output_tokens > 0
    sent = caller.stack.recent_requests()[-1]
    assert sent["operation"] == "invoke_stream"
    assert sent["body"]["messages"][0]["content"][0]["source"]["data"] == PIXEL
    assert sent["body"]["messages"][0]["content"][2] == future_block
    assert sent["body"]["future_option"] == 1 and "stream" not in sent["body"]
