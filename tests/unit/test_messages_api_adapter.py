"""The Messages-API adapter against an in-memory HTTP transport: what it sends (body, version, betas,
SigV4 or API key), how it classifies answers, streams and transport failures, and the composition of
the upstream chain (build_upstreams)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.credentials import Credentials
from gateway.adapters import messages_api
from gateway.adapters.bedrock import BedrockUpstream
from gateway.adapters.messages_api import (
    ANTHROPIC_VERSION,
    MessagesApiUpstream,
    SecretApiKey,
    SigV4,
    bedrock_messages_model_id,
    classify,
    claude_api_model_id,
    claude_api_region,
    messages_body,
    stream_error,
)
from gateway.adapters.vertex import VertexUpstream
from gateway.app import build_upstreams
from gateway.domain.catalog import load_catalog
from gateway.domain.failover import CLIENT, MISCONFIG, NEXT, RETRY, UpstreamFailure

from tests.unit.runtime_fakes import settings

LAMBDA_SRC = Path(__file__).resolve().parents[2] / "lambda_src"
CATALOG = load_catalog()
OPUS_47 = CATALOG.lookup("claude-opus-4-7")
HAIKU_45 = CATALOG.lookup("claude-haiku-4-5")
SONNET_4 = CATALOG.lookup("claude-sonnet-4")  # retired on the Claude API
SSE = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","usage":{"input_tokens":3}}}\n\n'
    b'event: ping\ndata: {"type":"ping"}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


class Chunks(httpx.AsyncByteStream):
    """A response body that arrives in pieces, as a real stream does."""

    def __init__(self, data: bytes, size: int = 37) -> None:
        self.pieces = [data[i : i + size] for i in range(0, len(data), size)]

    async def __aiter__(self):
        for piece in self.pieces:
            yield piece


def sse_response(data: bytes) -> httpx.Response:
    return httpx.Response(200, stream=Chunks(data), headers={"content-type": "text/event-stream"})


class Recorder:
    """An httpx transport that records requests and answers from a script."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def bedrock_upstream(recorder: Recorder, region: str = "us-east-1") -> MessagesApiUpstream:
    return MessagesApiUpstream(
        provider="bedrock",
        region=region,
        wire="bedrock-messages",
        base_url=f"https://bedrock-runtime.{region}.amazonaws.com/anthropic",
        auth=SigV4(region, "bedrock", credentials=Credentials("AKIDEXAMPLE", "secret", "token")),
        model_ids=bedrock_messages_model_id("base"),
        service="Bedrock Messages API",
        http=httpx.AsyncClient(transport=httpx.MockTransport(recorder)),
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def collect(upstream: MessagesApiUpstream, body: dict, beta: tuple[str, ...] = ()) -> list[tuple[str, bytes]]:
    return [e async for e in upstream.stream("anthropic.claude-opus-4-7", body, beta=beta, timeout=5)]


# -- what goes out --------------------------------------------------------------------------------


def test_body_sets_the_model_and_keeps_stream_only_for_streams() -> None:
    body = {"model": "claude-opus-4-7", "stream": False, "max_tokens": 3, "future": {"x": "é"}}
    assert json.loads(messages_body(body, "anthropic.claude-opus-4-7", stream=False)) == {
        "model": "anthropic.claude-opus-4-7",
        "max_tokens": 3,
        "future": {"x": "é"},
    }
    assert json.loads(messages_body(body, "m", stream=True))["stream"] is True
    assert body["model"] == "claude-opus-4-7"  # the caller's dict is not changed


def test_a_whole_reply_is_posted_signed_with_the_version_and_betas_as_headers() -> None:
    recorder = Recorder(httpx.Response(200, content=b'{"type":"message"}'))
    up = bedrock_upstream(recorder)
    body = {"model": "claude-opus-4-7", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}

    out = run(up.invoke("anthropic.claude-opus-4-7", body, beta=("b-1", "b-2"), timeout=5))

    assert out == b'{"type":"message"}'
    [request] = recorder.requests
    assert str(request.url) == "https://bedrock-runtime.us-east-1.amazonaws.com/anthropic/v1/messages"
    assert request.headers["anthropic-version"] == ANTHROPIC_VERSION == "2023-06-01"
    assert request.headers["anthropic-beta"] == "b-1,b-2"
    auth = request.headers["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-east-1/bedrock/aws4_request" in auth
    assert "anthropic-beta" in auth.split("SignedHeaders=")[1]  # the betas are signed too
    assert request.headers["x-amz-security-token"] == "token"
    assert json.loads(request.content)["model"] == "anthropic.claude-opus-4-7"
    assert "stream" not in json.loads(request.content)


def test_no_beta_header_without_betas() -> None:
    recorder = Recorder(httpx.Response(200, content=b"{}"))
    run(bedrock_upstream(recorder).invoke("m", {"max_tokens": 1}, beta=(), timeout=5))
    assert "anthropic-beta" not in recorder.requests[0].headers


# -- answers --------------------------------------------------------------------------------------


def anthropic_error(kind: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": f"{kind}!"}}).encode()


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "error_type", "code"),
    [
        (400, anthropic_error("invalid_request_error"), {}, CLIENT, "invalid_request_error", "invalid_request_error"),
        (413, anthropic_error("request_too_large"), {}, CLIENT, "request_too_large", "request_too_large"),
        (429, anthropic_error("rate_limit_error"), {}, NEXT, "rate_limit_error", "rate_limit_error"),
        (529, anthropic_error("overloaded_error"), {}, NEXT, "overloaded_error", "overloaded_error"),
        (500, anthropic_error("api_error"), {}, NEXT, "api_error", "api_error"),
        (503, b"", {}, NEXT, "api_error", "HTTP503"),
        (408, b"", {}, NEXT, "api_error", "HTTP408"),
        (424, b"not json", {}, RETRY, "api_error", "HTTP424"),
        (401, anthropic_error("authentication_error"), {}, MISCONFIG, "authentication_error", "authentication_error"),
        (403, anthropic_error("permission_error"), {}, MISCONFIG, "permission_error", "permission_error"),
        (404, anthropic_error("not_found_error"), {}, MISCONFIG, "not_found_error", "not_found_error"),
        # An AWS front door answers rest-json with the exception name in a header.
        (
            403,
            b'{"message":"The security token included in the request is invalid."}',
            {"x-amzn-ErrorType": "UnrecognizedClientException:http://internal.amazon.com/"},
            MISCONFIG,
            "permission_error",
            "UnrecognizedClientException",
        ),
        (429, b'{"message":"Too many requests"}', {"X-Amzn-ErrorType": "ThrottlingException"}, NEXT,
         "rate_limit_error", "ThrottlingException"),  # fmt: skip
    ],
)
def test_classify(status, body, headers, kind, error_type, code) -> None:
    failure = classify(status, body, headers, "Bedrock Messages API")
    assert (failure.kind, failure.status, failure.error_type, failure.code) == (kind, status, error_type, code)
    assert not failure.possibly_billed


def test_an_upstream_400_keeps_its_message() -> None:
    failure = classify(400, anthropic_error("invalid_request_error"), {}, "x")
    assert failure.message == "invalid_request_error!"


def test_an_error_answer_raises_the_classified_failure() -> None:
    recorder = Recorder(httpx.Response(429, content=anthropic_error("rate_limit_error")))
    with pytest.raises(UpstreamFailure) as caught:
        run(bedrock_upstream(recorder).invoke("m", {"max_tokens": 1}, beta=(), timeout=5))
    assert (caught.value.kind, caught.value.status) == (NEXT, 429)


@pytest.mark.parametrize(
    ("error_type", "kind", "status"),
    [
        ("overloaded_error", NEXT, 529),
        ("rate_limit_error", NEXT, 429),
        ("invalid_request_error", CLIENT, 400),
        ("api_error", RETRY, 500),
        ("something_new", RETRY, 500),
    ],
)
def test_stream_errors(error_type, kind, status) -> None:
    failure = stream_error(json.dumps({"type": "error", "error": {"type": error_type, "message": "m"}}).encode())
    assert (failure.kind, failure.status, failure.code) == (kind, status, error_type)


def test_a_stream_passes_events_through_unchanged() -> None:
    recorder = Recorder(sse_response(SSE))
    events = run(collect(bedrock_upstream(recorder), {"max_tokens": 5}))

    assert [e for e, _ in events] == ["message_start", "ping", "message_stop"]
    assert events[0][1] == b'{"type":"message_start","message":{"id":"m","usage":{"input_tokens":3}}}'
    request = recorder.requests[0]
    assert json.loads(request.content)["stream"] is True
    assert request.headers["accept"] == "text/event-stream"


def test_an_error_event_fails_the_stream_as_possibly_billed() -> None:
    sse = SSE.split(b"event: ping")[0] + b'event: error\ndata: {"type":"error","error":{"type":"api_error"}}\n\n'
    recorder = Recorder(sse_response(sse))

    async def read() -> list[str]:
        seen = []
        with pytest.raises(UpstreamFailure) as caught:
            async for event, _ in bedrock_upstream(recorder).stream("m", {}, beta=(), timeout=5):
                seen.append(event)
        assert (caught.value.kind, caught.value.possibly_billed) == (RETRY, True)
        return seen

    assert run(read()) == ["message_start"]


def test_a_refused_stream_is_not_possibly_billed() -> None:
    recorder = Recorder(httpx.Response(400, content=anthropic_error("invalid_request_error")))
    with pytest.raises(UpstreamFailure) as caught:
        run(collect(bedrock_upstream(recorder), {}))
    assert (caught.value.kind, caught.value.possibly_billed) == (CLIENT, False)


@pytest.mark.parametrize(
    ("exc", "billed"),
    [
        (httpx.ConnectTimeout("connect"), False),
        (httpx.ReadTimeout("read"), True),
    ],
)
def test_timeouts_are_next_and_billed_only_once_sent(exc, billed) -> None:
    with pytest.raises(UpstreamFailure) as caught:
        run(bedrock_upstream(Recorder(exc)).invoke("m", {}, beta=(), timeout=5))
    assert (caught.value.kind, caught.value.code, caught.value.possibly_billed) == (NEXT, "Timeout", billed)


def test_a_refused_connection_is_next() -> None:
    with pytest.raises(UpstreamFailure) as caught:
        run(bedrock_upstream(Recorder(httpx.ConnectError("refused"))).invoke("m", {}, beta=(), timeout=5))
    assert (caught.value.kind, caught.value.status, caught.value.possibly_billed) == (NEXT, 502, False)


def test_the_whole_reply_is_bounded_by_the_timeout() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    up = bedrock_upstream(Recorder())
    up._http = httpx.AsyncClient(transport=httpx.MockTransport(slow))
    with pytest.raises(UpstreamFailure) as caught:
        run(up.invoke("m", {}, beta=(), timeout=0.2))
    assert (caught.value.code, caught.value.possibly_billed) == ("Timeout", True)


# -- the Claude API's key -------------------------------------------------------------------------


def claude_api(recorder: Recorder, fetch, workspace_id: str | None = None) -> MessagesApiUpstream:
    return MessagesApiUpstream(
        provider="anthropic",
        region="global",
        wire="anthropic",
        base_url="https://api.anthropic.com",
        auth=SecretApiKey("arn:aws:secretsmanager:us-east-1:123456789012:secret:k", workspace_id=workspace_id,
                          fetch=fetch),  # fmt: skip
        model_ids=claude_api_model_id,
        service="Claude API",
        http=httpx.AsyncClient(transport=httpx.MockTransport(recorder)),
    )


def test_the_api_key_is_fetched_once_and_sent_as_x_api_key() -> None:
    fetched = []

    def fetch(arn: str) -> str:
        fetched.append(arn)
        return "sk-ant-secret"

    recorder = Recorder(httpx.Response(200, content=b"{}"), httpx.Response(200, content=b"{}"))
    up = claude_api(recorder, fetch)

    async def twice() -> None:
        await up.invoke("claude-opus-4-7", {}, beta=("x",), timeout=5)
        await up.invoke("claude-opus-4-7", {}, beta=(), timeout=5)

    run(twice())
    assert fetched == ["arn:aws:secretsmanager:us-east-1:123456789012:secret:k"]
    first = recorder.requests[0]
    assert str(first.url) == "https://api.anthropic.com/v1/messages"
    assert first.headers["x-api-key"] == "sk-ant-secret" and "authorization" not in first.headers
    assert first.headers["anthropic-version"] == "2023-06-01" and first.headers["anthropic-beta"] == "x"
    assert "sk-ant-secret" not in repr(up.auth)


def test_a_401_forgets_the_key_so_a_rotated_one_is_read_next_time() -> None:
    keys = iter(["old-key", "new-key"])
    recorder = Recorder(
        httpx.Response(401, content=anthropic_error("authentication_error")), httpx.Response(200, content=b"{}")
    )
    up = claude_api(recorder, lambda arn: next(keys))

    async def go() -> None:
        with pytest.raises(UpstreamFailure) as caught:
            await up.invoke("m", {}, beta=(), timeout=5)
        assert caught.value.kind == MISCONFIG
        await up.invoke("m", {}, beta=(), timeout=5)

    run(go())
    assert [r.headers["x-api-key"] for r in recorder.requests] == ["old-key", "new-key"]


def test_claude_platform_on_aws_takes_the_key_as_a_bearer_token_and_a_workspace() -> None:
    recorder = Recorder(httpx.Response(200, content=b"{}"))
    run(claude_api(recorder, lambda arn: '{"api_key": "k-json"}', workspace_id="wrkspc_1").invoke(
        "m", {}, beta=(), timeout=5
    ))
    request = recorder.requests[0]
    assert request.headers["authorization"] == "Bearer k-json"
    assert request.headers["anthropic-workspace-id"] == "wrkspc_1" and "x-api-key" not in request.headers


@pytest.mark.parametrize("secret", ["", "{}", '{"api_key": ""}'])
def test_an_unusable_secret_is_misconfiguration_without_its_value(secret) -> None:
    def fetch(arn: str) -> str:
        if secret == "":
            raise RuntimeError("AccessDeniedException")
        return secret

    with pytest.raises(UpstreamFailure) as caught:
        run(claude_api(Recorder(), fetch).invoke("m", {}, beta=(), timeout=5))
    assert (caught.value.kind, caught.value.code) == (MISCONFIG, "ApiKeyUnavailable")


# -- which entries each upstream serves -----------------------------------------------------------


def test_model_ids_per_api() -> None:
    invoke = BedrockUpstream(settings(), "us-east-1")
    base, profile = bedrock_messages_model_id("base"), bedrock_messages_model_id("profile")

    assert invoke.model_id(HAIKU_45, "us") == "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    assert invoke.model_id(OPUS_47, "us") is None
    assert base(OPUS_47, "us") == "anthropic.claude-opus-4-7"
    assert profile(OPUS_47, "eu") == "eu.anthropic.claude-opus-4-7"
    assert base(HAIKU_45, "us") is None
    assert base(OPUS_47, "au") is None  # no profile there: not offered in that geography
    assert claude_api_model_id(OPUS_47, "global") == "claude-opus-4-7"
    assert claude_api_model_id(HAIKU_45, "global") == "claude-haiku-4-5-20251001"
    assert claude_api_model_id(SONNET_4, "global") is None


def test_the_claude_api_is_not_sent_a_model_past_its_end_of_life_there():
    sonnet_45 = CATALOG.lookup("claude-sonnet-4-5")  # deprecated; end of life on the Claude API 2026-11-30
    end = date.fromisoformat(sonnet_45.lifecycle.end_of_life)
    assert claude_api_model_id(sonnet_45, "global", today=end) == sonnet_45.anthropic_id
    assert claude_api_model_id(sonnet_45, "global", today=end + timedelta(days=1)) is None


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://api.anthropic.com", "global"),
        ("https://aws-external-anthropic.us-west-2.api.aws", "us-west-2"),
        ("http://127.0.0.1:9", "global"),
    ],
)
def test_claude_api_region(url, region) -> None:
    assert claude_api_region(url) == region


def test_each_bedrock_region_has_both_apis_then_vertex_then_the_claude_api() -> None:
    s = settings(
        bedrock_regions={"us": ("us-east-1", "us-west-2"), "global": ("us-east-1",)},
        bedrock_endpoints={"us-west-2": "http://127.0.0.1:7001"},
        bedrock_messages_endpoints={"us-east-1": "https://vpce.example/anthropic/"},
        vertex_project="p",
        vertex_regions={"us": "us-east5"},
        anthropic_api_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:k",
        anthropic_api_residencies=("us",),
    )
    chains = build_upstreams(s)
    us = chains["us"]

    assert [(type(u).__name__, u.provider, u.region, u.wire) for u in us] == [
        ("BedrockUpstream", "bedrock", "us-east-1", "bedrock-invoke"),
        ("MessagesApiUpstream", "bedrock", "us-east-1", "bedrock-messages"),
        ("BedrockUpstream", "bedrock", "us-west-2", "bedrock-invoke"),
        ("MessagesApiUpstream", "bedrock", "us-west-2", "bedrock-messages"),
        ("VertexUpstream", "vertex", "us-east5", "vertex"),
        ("MessagesApiUpstream", "anthropic", "global", "anthropic"),
    ]
    assert us[1].url == "https://vpce.example/anthropic/v1/messages"
    assert us[3].url == "http://127.0.0.1:7001/anthropic/v1/messages"  # the local stack's emulator
    assert chains["global"][0] is us[0] and chains["global"][1] is us[1]  # one pair per region
    assert [u.provider for u in chains["global"]] == ["bedrock", "bedrock"]  # no Claude API there
    assert isinstance(us[4], VertexUpstream)


def test_without_a_secret_there_is_no_claude_api() -> None:
    chains = build_upstreams(settings())
    assert all(u.provider == "bedrock" for chain in chains.values() for u in chain)
    default = chains["us"][1]
    assert default.url == "https://bedrock-runtime.us-east-1.amazonaws.com/anthropic/v1/messages"
    assert messages_api.bedrock_messages_url("eu-west-1") == "https://bedrock-runtime.eu-west-1.amazonaws.com/anthropic"


def test_httpx_and_botocore_auth_load_only_when_used() -> None:
    code = (
        "import sys; import gateway.adapters.messages_api, gateway.app;"
        "print(sorted(m for m in sys.modules if m.startswith(('httpx', 'botocore', 'anthropic'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(LAMBDA_SRC), "PATH": ""},
    )
    assert out.stdout.strip() == "[]"
