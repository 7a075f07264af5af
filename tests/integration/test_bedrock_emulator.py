"""The Bedrock emulator, held to a real botocore bedrock-runtime client (and raw HTTP where a client
would hide what is on the wire)."""

from __future__ import annotations

import base64
import json
import time

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import EventStreamError, ReadTimeoutError

MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


def body(prompt: str = "Hello there, emulator", **extra) -> bytes:
    return json.dumps(
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": prompt}],
            **extra,
        }
    ).encode()


@pytest.fixture
def bedrock(faults):
    def make(region: str = "us-east-1", **config):
        return boto3.client(
            "bedrock-runtime",
            region_name=region,
            endpoint_url=faults.bedrock_endpoints[region],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 0}, **config),
        )

    return make


def stream_events(response) -> list[dict]:
    return [json.loads(e["chunk"]["bytes"]) for e in response["body"]]


def test_invoke_returns_an_anthropic_message_with_usage_and_bedrock_headers(bedrock):
    response = bedrock().invoke_model(modelId=MODEL, body=body())

    message = json.loads(response["body"].read())
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["model"] == "claude-sonnet-4-5-20250929"
    assert message["content"][0]["text"] == "Emulated reply to: Hello there, emulator"
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["input_tokens"] == len(body()) // 4
    assert message["usage"]["output_tokens"] == 6  # one per word
    assert headers["x-amzn-bedrock-input-token-count"] == str(message["usage"]["input_tokens"])
    assert headers["x-amzn-bedrock-output-token-count"] == "6"


def test_the_same_request_gets_the_same_reply(bedrock):
    client = bedrock()
    first = json.loads(client.invoke_model(modelId=MODEL, body=body())["body"].read())
    second = json.loads(client.invoke_model(modelId=MODEL, body=body())["body"].read())
    assert first == second


def test_stream_decodes_with_botocore_into_the_anthropic_event_sequence(bedrock):
    events = stream_events(bedrock().invoke_model_with_response_stream(modelId=MODEL, body=body("one two")))

    types = [e["type"] for e in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == "Emulated reply to: one two"
    assert events[-2]["delta"]["stop_reason"] == "end_turn"
    assert events[-2]["usage"]["output_tokens"] == 5
    metrics = events[-1]["amazon-bedrock-invocationMetrics"]
    assert metrics["outputTokenCount"] == 5
    assert metrics["inputTokenCount"] == events[0]["message"]["usage"]["input_tokens"]


def test_max_tokens_cuts_the_reply(bedrock):
    raw = json.dumps(
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 3,
            "messages": [{"role": "user", "content": "a b c d e f"}],
        }
    )
    message = json.loads(bedrock().invoke_model(modelId=MODEL, body=raw)["body"].read())
    assert message["stop_reason"] == "max_tokens"
    assert message["usage"]["output_tokens"] == 3
    assert message["content"][0]["text"] == "Emulated reply to:"


def test_tool_use_reply_when_tools_are_offered_and_asked_for(bedrock):
    tools = [
        {
            "name": "get_weather",
            "description": "weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    client = bedrock()

    asked = json.loads(
        client.invoke_model(modelId=MODEL, body=body("Please use get_weather", tools=tools))["body"].read()
    )
    not_asked = json.loads(
        client.invoke_model(modelId=MODEL, body=body("Just chat", tools=tools))["body"].read()
    )
    streamed = stream_events(
        client.invoke_model_with_response_stream(
            modelId=MODEL, body=body("Please use get_weather", tools=tools)
        )
    )

    assert asked["stop_reason"] == "tool_use"
    tool_use = asked["content"][-1]
    assert tool_use["type"] == "tool_use" and tool_use["name"] == "get_weather"
    assert tool_use["input"] == {"city": "example"}
    assert not_asked["stop_reason"] == "end_turn"
    partial = [
        e["delta"]["partial_json"] for e in streamed if e.get("delta", {}).get("type") == "input_json_delta"
    ]
    assert json.loads("".join(partial)) == {"city": "example"}


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (
            {"max_tokens": 10, "messages": [{"role": "user", "content": "x"}]},
            "required key [anthropic_version]",
        ),
        (
            {"anthropic_version": "bedrock-2023-05-31", "messages": [{"role": "user", "content": "x"}]},
            "required key [max_tokens]",
        ),
        (
            {
                "anthropic_version": "bedrock-2023-05-31",
                "max_tokens": 10,
                "model": "claude",
                "messages": [{"role": "user", "content": "x"}],
            },
            "extraneous key [model]",
        ),
        (
            {
                "anthropic_version": "2026-10-21",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "x"}],
            },
            "invalid anthropic version",
        ),
    ],
)
def test_invalid_bodies_are_a_validation_exception(bedrock, raw, detail):
    client = bedrock()
    with pytest.raises(client.exceptions.ValidationException) as caught:
        client.invoke_model(modelId=MODEL, body=json.dumps(raw))
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert detail in caught.value.response["Error"]["Message"]


def test_unknown_fields_are_ignored(bedrock):
    message = json.loads(
        bedrock().invoke_model(modelId=MODEL, body=body(some_future_field={"x": 1}))["body"].read()
    )
    assert message["stop_reason"] == "end_turn"


def test_unsigned_or_wrongly_scoped_requests_are_refused(faults, bedrock):
    url = f"{faults.bedrock_endpoints['us-east-1']}/model/{MODEL}/invoke"
    unsigned = httpx.post(url, content=body())
    # A client signing for us-west-2 sent to the us-east-1 endpoint.
    wrong = boto3.client(
        "bedrock-runtime",
        region_name="us-west-2",
        endpoint_url=faults.bedrock_endpoints["us-east-1"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 0}),
    )

    assert unsigned.status_code == 403
    assert unsigned.headers["x-amzn-errortype"].startswith("MissingAuthenticationTokenException")
    with pytest.raises(wrong.exceptions.ClientError) as caught:
        wrong.invoke_model(modelId=MODEL, body=body())
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert faults.request_counts() == {}  # refused before it counts as a model call


def test_throttle_for_the_next_n_requests_then_success_and_counts(faults, bedrock):
    faults.set_fault("us-east-1", "throttle", count=2)
    client = bedrock()

    for _ in range(2):
        with pytest.raises(client.exceptions.ThrottlingException):
            client.invoke_model(modelId=MODEL, body=body())
    client.invoke_model(modelId=MODEL, body=body())
    bedrock("us-west-2").invoke_model(modelId=MODEL, body=body())

    counts = faults.request_counts()
    assert counts["us-east-1"] == {"total": 3, "invoke": 3}
    assert counts["us-west-2"]["total"] == 1
    assert "eu-west-1" not in counts


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (500, "InternalServerException"),
        (503, "ServiceUnavailableException"),
        (400, "ValidationException"),
        (403, "AccessDeniedException"),
        (404, "ResourceNotFoundException"),
        (424, "ModelErrorException"),
    ],
)
def test_error_faults_last_until_cleared_with_bedrocks_error_codes(faults, bedrock, status, name):
    faults.set_fault("eu-west-1", "error", status=status)
    client = bedrock("eu-west-1")

    for operation in (client.invoke_model, client.invoke_model_with_response_stream, client.invoke_model):
        with pytest.raises(client.exceptions.ClientError) as caught:
            operation(modelId=MODEL, body=body())
        assert caught.value.response["Error"]["Code"] == name
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    faults.clear_faults("eu-west-1")
    client.invoke_model(modelId=MODEL, body=body())


def test_midstream_error_after_n_events(faults, bedrock):
    faults.set_fault("us-west-2", "midstream", after_events=3, count=1, error_type="throttlingException")
    client = bedrock("us-west-2")

    got = []
    with pytest.raises(EventStreamError) as caught:
        for event in client.invoke_model_with_response_stream(modelId=MODEL, body=body())["body"]:
            got.append(json.loads(event["chunk"]["bytes"]))
    assert [e["type"] for e in got] == ["message_start", "content_block_start", "content_block_delta"]
    assert caught.value.response["Error"]["Code"] == "throttlingException"
    # used up: the next stream is whole
    assert (
        stream_events(client.invoke_model_with_response_stream(modelId=MODEL, body=body()))[-1]["type"]
        == "message_stop"
    )


def test_midstream_default_is_a_model_stream_error(faults, bedrock):
    faults.set_fault("us-west-2", "midstream", after_events=0, count=1)
    with pytest.raises(EventStreamError) as caught:
        stream_events(bedrock("us-west-2").invoke_model_with_response_stream(modelId=MODEL, body=body()))
    assert caught.value.response["Error"]["Code"] == "modelStreamErrorException"


def test_timeout_hangs_until_the_client_gives_up(faults, bedrock):
    faults.set_fault("eu-central-1", "timeout", count=1, hang_seconds=10)
    client = bedrock("eu-central-1", read_timeout=0.5, connect_timeout=1)

    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        client.invoke_model(modelId=MODEL, body=body())
    assert 0.4 < time.monotonic() - started < 5


def test_added_latency(faults, bedrock):
    faults.set_fault("us-east-1", "latency", latency_ms=400)
    client = bedrock()
    started = time.monotonic()
    client.invoke_model(modelId=MODEL, body=body())
    assert time.monotonic() - started >= 0.4


def test_control_api_lists_validates_and_clears(faults):
    control = faults.bedrock_control_url
    bad = httpx.post(f"{control}/_emulator/faults/us-east-1", json={"kind": "explode"})
    faults.set_fault("us-east-1", "error", status=503, count=5)
    listed = httpx.get(f"{control}/_emulator/faults").json()
    httpx.delete(f"{control}/_emulator/faults")

    assert bad.status_code == 400
    assert listed["us-east-1"][0]["status"] == 503 and listed["us-east-1"][0]["count"] == 5
    assert httpx.get(f"{control}/_emulator/faults").json() == {}


def test_recent_requests_record_the_body_as_received(faults, bedrock):
    bedrock().invoke_model(modelId=MODEL, body=body("remember me"))
    [recent] = faults.recent_requests()
    assert recent["target"] == "us-east-1" and recent["model_id"] == MODEL
    assert recent["body"]["messages"][0]["content"] == "remember me"


def test_chunk_payload_is_base64_json_on_the_wire(faults):
    # botocore hides the framing; check the raw bytes carry the documented shape too.
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from botocore.eventstream import EventStreamBuffer

    url = f"{faults.bedrock_endpoints['us-east-1']}/model/{MODEL}/invoke-with-response-stream"
    request = AWSRequest("POST", url, data=body())
    SigV4Auth(Credentials("testing", "testing"), "bedrock", "us-east-1").add_auth(request)
    response = httpx.post(url, content=body(), headers=dict(request.headers))
    buffer = EventStreamBuffer()
    buffer.add_data(response.content)
    first = next(iter(buffer))

    assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
    assert first.headers[":event-type"] == "chunk"
    assert json.loads(base64.b64decode(json.loads(first.payload)["bytes"]))["type"] == "message_start"


def test_stop_sequences_end_the_reply(bedrock):
    message = json.loads(
        bedrock()
        .invoke_model(modelId=MODEL, body=body("alpha beta STOP gamma", stop_sequences=["STOP"]))["body"]
        .read()
    )
    assert message["stop_reason"] == "stop_sequence" and message["stop_sequence"] == "STOP"
    assert message["content"][0]["text"] == "Emulated reply to: alpha beta"


def test_a_stalled_stream_sends_some_events_then_nothing(faults, bedrock):
    faults.set_fault("us-east-1", "stall", after_events=2, hang_seconds=10, count=1)
    client = bedrock(read_timeout=0.5)

    got = []
    started = time.monotonic()
    with pytest.raises(Exception) as caught:  # urllib3's read timeout, surfaced while iterating
        for event in client.invoke_model_with_response_stream(modelId=MODEL, body=body())["body"]:
            got.append(json.loads(event["chunk"]["bytes"])["type"])
    assert "timeout" in type(caught.value).__name__.lower() or "timed out" in str(caught.value).lower()
    assert got == ["message_start", "content_block_start"]
    assert time.monotonic() - started < 5
