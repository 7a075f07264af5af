"""The Vertex emulator: Workload Identity Federation through google.auth.aws against its STS, then
rawPredict / streamRawPredict with the minted token (anthropic's AnthropicVertex as the client)."""

from __future__ import annotations

import json

import anthropic
import google.auth.transport.requests
import httpx
import pytest
from google.auth import aws

from gatewayctl.local.vertex_emulator import SUBJECT_TOKEN_TYPE, vertex_wif_config

MODEL = "claude-sonnet-4-5@20250929"
PROJECT = "claude-gateway-local"
VERSION = {"anthropic_version": "vertex-2023-10-16"}


@pytest.fixture(scope="module")
def wif_token(backing_stack):
    # AWS keys and AWS_REGION come from the environment the stack set: no metadata server call.
    credentials = aws.Credentials.from_info(
        vertex_wif_config(backing_stack.vertex_endpoint, PROJECT),
        scopes=["https://www.googleapis.com/auth/cloud-platform"],
    )
    credentials.refresh(google.auth.transport.requests.Request())
    return credentials.token


def url(stack, operation: str, region: str = "us-east5", model: str = MODEL) -> str:
    base = f"{stack.vertex_endpoint}/v1/projects/{PROJECT}/locations/{region}"
    return f"{base}/publishers/anthropic/models/{model}:{operation}"


def body(prompt: str = "hello vertex", **extra) -> dict:
    return {**VERSION, "max_tokens": 50, "messages": [{"role": "user", "content": prompt}], **extra}


def sdk(stack, token: str, region: str = "us-east5") -> anthropic.AnthropicVertex:
    return anthropic.AnthropicVertex(
        region=region,
        project_id=PROJECT,
        base_url=f"{stack.vertex_endpoint}/v1",
        access_token=token,
        max_retries=0,
    )


def test_wif_config_has_what_google_auth_aws_needs(backing_stack):
    config = vertex_wif_config(backing_stack.vertex_endpoint, PROJECT)
    assert config["subject_token_type"] == SUBJECT_TOKEN_TYPE
    assert config["credential_source"]["environment_id"] == "aws1"
    assert "service_account_impersonation_url" not in config
    assert config["token_url"] == f"{backing_stack.vertex_endpoint}/v1/token"


def test_wif_exchange_mints_a_token_that_raw_predict_accepts(faults, wif_token):
    response = httpx.post(
        url(faults, "rawPredict"), json=body(), headers={"Authorization": f"Bearer {wif_token}"}
    )

    assert wif_token.startswith("ya29.emu-")
    assert response.status_code == 200
    message = response.json()
    assert message["model"] == "claude-sonnet-4-5-20250929"
    assert message["content"][0]["text"] == "Emulated reply to: hello vertex"
    assert faults.request_counts("vertex") == {"us-east5": {"total": 1, "rawPredict": 1}}


def test_sts_refuses_a_subject_token_that_is_not_a_signed_aws_request(backing_stack):
    config = vertex_wif_config(backing_stack.vertex_endpoint, PROJECT)
    response = httpx.post(
        config["token_url"],
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "audience": config["audience"],
            "subject_token_type": SUBJECT_TOKEN_TYPE,
            "subject_token": json.dumps({"url": "x", "method": "POST", "headers": []}),
            "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        },
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("authorization", [None, "Bearer ya29.made-up"])
def test_predict_without_a_minted_token_is_unauthenticated(faults, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.post(url(faults, "rawPredict"), json=body(), headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"
    assert faults.request_counts("vertex") == {}


def test_stream_is_anthropic_sse_that_the_sdk_parses(faults, wif_token):
    raw = httpx.post(
        url(faults, "streamRawPredict"), json=body("a b"), headers={"Authorization": f"Bearer {wif_token}"}
    )
    with sdk(faults, wif_token).messages.stream(
        model=MODEL, max_tokens=50, extra_body=VERSION, messages=[{"role": "user", "content": "a b"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert raw.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("event: ") for line in raw.text.splitlines() if line.startswith("event: ")]
    assert events[:3] == ["message_start", "ping", "content_block_start"]
    assert events[-2:] == ["message_delta", "message_stop"]
    assert text == "Emulated reply to: a b"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 5


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "anthropic_version"),
        ({**VERSION, "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        (
            {**VERSION, "max_tokens": 5, "model": MODEL, "messages": [{"role": "user", "content": "x"}]},
            "model",
        ),
    ],
)
def test_invalid_bodies_are_invalid_request_errors(faults, wif_token, payload, fragment):
    response = httpx.post(
        url(faults, "rawPredict"), json=payload, headers={"Authorization": f"Bearer {wif_token}"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert fragment in response.json()["error"]["message"]


def test_throttle_then_recover_per_region(faults, wif_token):
    faults.set_fault("europe-west1", "throttle", count=1, provider="vertex")
    client = sdk(faults, wif_token, "europe-west1")

    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(
            model=MODEL, max_tokens=10, extra_body=VERSION, messages=[{"role": "user", "content": "x"}]
        )
    ok = client.messages.create(
        model=MODEL, max_tokens=10, extra_body=VERSION, messages=[{"role": "user", "content": "x"}]
    )

    assert ok.stop_reason in ("end_turn", "max_tokens")
    assert faults.request_counts("vertex")["europe-west1"]["total"] == 2


def test_midstream_error_is_an_sse_error_event(faults, wif_token):
    faults.set_fault("us-east5", "midstream", after_events=3, provider="vertex")
    client = sdk(faults, wif_token)
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(
            model=MODEL, max_tokens=50, extra_body=VERSION, messages=[{"role": "user", "content": "x"}]
        ) as stream,
    ):
        for _ in stream:
            pass
    assert caught.value.body["error"]["type"] == "overloaded_error"


def test_server_errors_until_cleared(faults, wif_token):
    faults.set_fault("us-east5", "error", status=503, provider="vertex")
    headers = {"Authorization": f"Bearer {wif_token}"}
    statuses = [
        httpx.post(url(faults, "rawPredict"), json=body(), headers=headers).status_code for _ in range(2)
    ]
    faults.clear_faults(provider="vertex")
    statuses.append(httpx.post(url(faults, "rawPredict"), json=body(), headers=headers).status_code)
    assert statuses == [503, 503, 200]


def test_a_stalled_stream_sends_some_events_then_nothing(faults, wif_token):
    faults.set_fault("us-east5", "stall", after_events=2, hang_seconds=10, count=1, provider="vertex")
    lines = []
    with (
        pytest.raises(httpx.ReadTimeout),
        httpx.stream(
            "POST",
            url(faults, "streamRawPredict"),
            json=body(),
            timeout=httpx.Timeout(5, read=0.5),
            headers={"Authorization": f"Bearer {wif_token}"},
        ) as response,
    ):
        for line in response.iter_lines():
            lines.append(line)
    assert [x for x in lines if x.startswith("event: ")] == ["event: message_start", "event: ping"]
