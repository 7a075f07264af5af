"""Each emulator held to the official client for its protocol (anthropic SDK 2.14, max_retries=0):
AnthropicBedrock for InvokeModel, AnthropicBedrockMantle for Bedrock's Messages-API endpoint,
AnthropicVertex for rawPredict. What each emulator refuses comes back as the SDK's BadRequestError
(400), never a 500 (rules in gatewayctl/local/rules.py, sources in docs/local-stack.md)."""

from __future__ import annotations

import anthropic
import pytest
from anthropic.lib.bedrock import AnthropicBedrockMantle

from gatewayctl.local.vertex_emulator import VERTEX_VERSION

INVOKE_MODEL = "us.anthropic.claude-haiku-4-5-20251001-v1:0"  # ARN-versioned: InvokeModel only
MESSAGES_MODEL = "anthropic.claude-opus-4-7"  # no ARN-versioned id: the Messages-API endpoint
VERTEX_MODEL = "claude-haiku-4-5@20251001"
HELLO = [{"role": "user", "content": "hello official client"}]
BEDROCK_VERSION = {"anthropic_version": "bedrock-2023-05-31"}


@pytest.fixture
def bedrock(faults):
    """AnthropicBedrock (InvokeModel), SigV4 for service bedrock, on the us-east-1 port."""
    with anthropic.AnthropicBedrock(
        aws_access_key="AKIDTEST",
        aws_secret_key="secret",
        aws_region="us-east-1",
        base_url=faults.bedrock_endpoints["us-east-1"],
        max_retries=0,
    ) as client:
        yield client


@pytest.fixture
def mantle(faults):
    """The SDK's Messages-API client with a Bedrock API key (bearer), on the us-east-1 port's /anthropic."""
    with AnthropicBedrockMantle(
        api_key="bedrock-api-key-test",
        aws_region="us-east-1",
        base_url=f"{faults.bedrock_endpoints['us-east-1']}/anthropic",
        max_retries=0,
    ) as client:
        yield client


@pytest.fixture
def vertex(faults):
    token, _ = faults.vertex.mint()
    with anthropic.AnthropicVertex(
        region="us-east5",
        project_id="claude-gateway-local",
        access_token=token,
        base_url=f"{faults.vertex_endpoint}/v1",
        max_retries=0,
    ) as client:
        yield client


# -- InvokeModel (AnthropicBedrock) ---------------------------------------------------------------


def test_invoke_model_whole_and_streamed(bedrock, faults) -> None:
    message = bedrock.messages.create(
        model=INVOKE_MODEL, max_tokens=32, messages=HELLO, extra_body=BEDROCK_VERSION
    )
    with bedrock.messages.stream(
        model=INVOKE_MODEL, max_tokens=32, messages=HELLO, extra_body=BEDROCK_VERSION
    ) as stream:
        final = stream.get_final_message()

    assert message.content[0].text == "Emulated reply to: hello official client"
    assert message.model == "claude-haiku-4-5-20251001" and message.usage.output_tokens == 6
    assert final.content[0].text == message.content[0].text
    assert faults.request_counts()["us-east-1"] == {"total": 2, "invoke": 1, "invoke_stream": 1}


def test_invoke_model_refuses_the_sdk_default_version_for_an_arn_versioned_model(bedrock) -> None:
    # SDK 2.14 sends anthropic_version 2026-10-21 unless told otherwise.
    with pytest.raises(anthropic.BadRequestError) as caught:
        bedrock.messages.create(model=INVOKE_MODEL, max_tokens=32, messages=HELLO)
    assert "invalid anthropic version" in str(caught.value)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"stop_sequences": True}, "#/stop_sequences"),
        ({"temperature": "hot"}, "#/temperature"),
        ({"top_k": 1.5}, "#/top_k"),
        ({"messages": "hello"}, "#/messages"),
    ],
)
def test_invoke_model_wrong_typed_fields_are_a_400(bedrock, extra, words) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        bedrock.messages.create(
            model=INVOKE_MODEL, max_tokens=32, messages=HELLO, extra_body={**BEDROCK_VERSION, **extra}
        )
    assert caught.value.status_code == 400 and words in str(caught.value)


def test_invoke_model_refuses_a_model_served_by_the_messages_api(bedrock) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        bedrock.messages.create(
            model="us.anthropic.claude-opus-4-7", max_tokens=32, messages=HELLO, extra_body=BEDROCK_VERSION
        )
    assert "/anthropic/v1/messages" in str(caught.value)


@pytest.mark.parametrize("flag", ["mcp-servers-2025-12-04", "no-such-beta-2099-01-01"])
def test_invoke_model_refuses_a_beta_flag_it_does_not_accept(bedrock, flag) -> None:
    # The SDK copies anthropic-beta into the body's anthropic_beta, which is what InvokeModel reads.
    with pytest.raises(anthropic.BadRequestError) as caught:
        bedrock.messages.create(
            model=INVOKE_MODEL,
            max_tokens=32,
            messages=HELLO,
            extra_body=BEDROCK_VERSION,
            extra_headers={"anthropic-beta": flag},
        )
    assert "invalid beta flag" in str(caught.value)


def test_invoke_model_takes_a_beta_flag_it_accepts(bedrock) -> None:
    message = bedrock.messages.create(
        model=INVOKE_MODEL,
        max_tokens=32,
        messages=HELLO,
        extra_body=BEDROCK_VERSION,
        extra_headers={"anthropic-beta": "context-1m-2025-08-07"},
    )
    assert message.stop_reason == "end_turn"


def test_invoke_model_refuses_a_model_field_in_the_body(faults) -> None:
    # The SDK removes `model` and `stream`; a raw body that keeps them is refused (unverified on AWS).
    import httpx
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"{faults.bedrock_endpoints['us-east-1']}/model/{INVOKE_MODEL}/invoke"
    raw = b'{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[],"stream":true}'
    request = AWSRequest("POST", url, data=raw)
    SigV4Auth(Credentials("testing", "testing"), "bedrock", "us-east-1").add_auth(request)
    response = httpx.post(url, content=raw, headers=dict(request.headers))
    assert response.status_code == 400
    assert "extraneous key [stream]" in response.json()["message"]


# -- The Messages-API endpoint (AnthropicBedrockMantle) --------------------------------------------


def test_messages_api_whole_and_streamed(mantle, faults) -> None:
    message = mantle.messages.create(model=MESSAGES_MODEL, max_tokens=32, messages=HELLO)
    with mantle.messages.stream(model=MESSAGES_MODEL, max_tokens=32, messages=HELLO) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()

    assert message.content[0].text == "Emulated reply to: hello official client"
    assert message.model == "claude-opus-4-7"
    assert final.content[0].text == message.content[0].text and final.usage.output_tokens == 6
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert faults.request_counts()["us-east-1"] == {"total": 2, "messages": 1, "messages_stream": 1}
    sent = faults.recent_requests()[-1]
    assert sent["model_id"] == MESSAGES_MODEL and sent["body"]["stream"] is True


def test_messages_api_refuses_an_arn_versioned_model(mantle) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        mantle.messages.create(model=INVOKE_MODEL, max_tokens=32, messages=HELLO)
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "ARN-versioned" in caught.value.body["error"]["message"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"stop_sequences": True}, "stop_sequences"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 1.5}, "temperature"),
        ({"tool_choice": "auto"}, "tool_choice"),
    ],
)
def test_messages_api_wrong_typed_fields_are_a_400(mantle, extra, field) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        mantle.messages.create(model=MESSAGES_MODEL, max_tokens=32, messages=HELLO, extra_body=extra)
    assert caught.value.body["error"]["message"].startswith(f"{field}:")


def test_messages_api_wrong_typed_messages_is_a_400(mantle) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        mantle.messages.create(model=MESSAGES_MODEL, max_tokens=32, messages="hello")  # type: ignore[arg-type]
    assert caught.value.body["error"]["message"].startswith("messages:")


@pytest.mark.parametrize("flag", ["mcp-servers-2025-12-04", "no-such-beta-2099-01-01"])
def test_messages_api_refuses_a_beta_flag_it_does_not_accept(mantle, flag) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        mantle.messages.create(
            model=MESSAGES_MODEL, max_tokens=32, messages=HELLO, extra_headers={"anthropic-beta": flag}
        )
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "invalid beta flag"},
    }


def test_messages_api_needs_a_known_anthropic_version(mantle) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        mantle.messages.create(
            model=MESSAGES_MODEL, max_tokens=32, messages=HELLO, extra_headers={"anthropic-version": "2020-01-01"}
        )
    assert "anthropic-version" in caught.value.body["error"]["message"]


def test_messages_api_unknown_model_is_not_found(mantle) -> None:
    with pytest.raises(anthropic.NotFoundError):
        mantle.messages.create(model="anthropic.claude-nonexistent", max_tokens=32, messages=HELLO)


def test_messages_api_refuses_a_signature_for_another_service(faults) -> None:
    # The SDK's Messages-API client signs for bedrock-mantle; the emulated bedrock-runtime wants `bedrock`.
    with AnthropicBedrockMantle(
        aws_access_key="AKIDTEST",
        aws_secret_key="secret",
        aws_region="us-east-1",
        base_url=f"{faults.bedrock_endpoints['us-east-1']}/anthropic",
        max_retries=0,
    ) as client, pytest.raises(anthropic.PermissionDeniedError):
        client.messages.create(model=MESSAGES_MODEL, max_tokens=32, messages=HELLO)
    assert faults.request_counts() == {}


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (529, anthropic.APIStatusError, "overloaded_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
    ],
)
def test_messages_api_faults_in_the_anthropic_shape(faults, mantle, status, error_class, error_type) -> None:
    faults.set_fault("us-east-1", "error", status=status, count=1)
    with pytest.raises(error_class) as caught:
        mantle.messages.create(model=MESSAGES_MODEL, max_tokens=32, messages=HELLO)
    assert caught.value.status_code == status
    assert caught.value.body["error"]["type"] == error_type
    mantle.messages.create(model=MESSAGES_MODEL, max_tokens=32, messages=HELLO)  # the fault is used up


def test_messages_api_midstream_error_event(faults, mantle) -> None:
    faults.set_fault("us-east-1", "midstream", after_events=3, count=1, error_type="overloaded_error")
    seen = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        mantle.messages.stream(model=MESSAGES_MODEL, max_tokens=32, messages=HELLO) as stream,
    ):
        for event in stream:
            seen.append(event.type)
    assert caught.value.body["error"]["type"] == "overloaded_error"
    assert seen[0] == "message_start"


# -- Vertex (AnthropicVertex) ---------------------------------------------------------------------


def test_vertex_whole_and_streamed(vertex, faults) -> None:
    message = vertex.messages.create(
        model=VERTEX_MODEL, max_tokens=32, messages=HELLO, extra_body={"anthropic_version": VERTEX_VERSION}
    )
    with vertex.messages.stream(
        model=VERTEX_MODEL, max_tokens=32, messages=HELLO, extra_body={"anthropic_version": VERTEX_VERSION}
    ) as stream:
        final = stream.get_final_message()
    assert message.content[0].text == final.content[0].text == "Emulated reply to: hello official client"
    assert faults.request_counts("vertex")["us-east5"] == {"total": 2, "rawPredict": 1, "streamRawPredict": 1}


def test_vertex_refuses_the_sdk_default_version(vertex) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        vertex.messages.create(model=VERTEX_MODEL, max_tokens=32, messages=HELLO)
    assert "anthropic_version" in caught.value.body["error"]["message"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"stop_sequences": True}, "stop_sequences"),
        ({"temperature": "hot"}, "temperature"),
        ({"messages": 7}, "messages"),
    ],
)
def test_vertex_wrong_typed_fields_are_a_400(vertex, extra, field) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        vertex.messages.create(
            model=VERTEX_MODEL,
            max_tokens=32,
            messages=HELLO,
            extra_body={"anthropic_version": VERTEX_VERSION, **extra},
        )
    assert caught.value.body["error"]["message"].startswith(f"{field}:")


@pytest.mark.parametrize("flag", ["mcp-servers-2025-12-04", "no-such-beta-2099-01-01"])
def test_vertex_refuses_a_beta_flag_it_does_not_accept(vertex, flag) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        vertex.messages.create(
            model=VERTEX_MODEL,
            max_tokens=32,
            messages=HELLO,
            extra_body={"anthropic_version": VERTEX_VERSION},
            extra_headers={"anthropic-beta": flag},
        )
    assert caught.value.body["error"]["message"] == f"Unsupported beta header: {flag}"
