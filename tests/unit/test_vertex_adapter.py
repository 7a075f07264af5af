"""The Vertex adapter's pure parts: body, URL, error classification, lazy google imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from gateway.adapters.vertex import VERTEX_VERSION, VertexUpstream, classify_http, vertex_body
from gateway.domain.failover import CLIENT, MISCONFIG, NEXT, RETRY

from tests.unit.runtime_fakes import settings

LAMBDA_SRC = Path(__file__).resolve().parents[2] / "lambda_src"


def test_body_and_url() -> None:
    sent = json.loads(vertex_body({"model": "m", "stream": False, "max_tokens": 3, "x": 1}, (), stream=True))
    assert sent == {"max_tokens": 3, "x": 1, "anthropic_version": VERTEX_VERSION, "stream": True}

    up = VertexUpstream(settings(vertex_project="proj", vertex_regions={"us": "us-east5"}), "us-east5")
    assert up.url("claude-haiku-4-5@20251001", "rawPredict") == (
        "https://us-east5-aiplatform.googleapis.com/v1/projects/proj/locations/us-east5"
        "/publishers/anthropic/models/claude-haiku-4-5@20251001:rawPredict"
    )
    local = VertexUpstream(settings(vertex_project="p", vertex_endpoint="http://127.0.0.1:9/"), "global")
    assert local.url("m", "streamRawPredict").startswith("http://127.0.0.1:9/v1/projects/p/locations/global/")


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (
            429,
            b'{"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}',
            NEXT,
            "RESOURCE_EXHAUSTED",
        ),
        (
            529,
            b'{"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}',
            NEXT,
            "overloaded_error",
        ),
        (
            400,
            b'{"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}',
            CLIENT,
            "invalid_request_error",
        ),
        (
            403,
            b'{"error": {"code": 403, "message": "denied", "status": "PERMISSION_DENIED"}}',
            MISCONFIG,
            "PERMISSION_DENIED",
        ),
        (424, b"not json", RETRY, "HTTP424"),
        (503, b"", NEXT, "HTTP503"),
    ],
)
def test_classify_http(status: int, body: bytes, kind: str, code: str) -> None:
    failure = classify_http(status, body)
    assert (failure.kind, failure.status, failure.code) == (kind, status, code)


def test_google_and_httpx_are_not_imported_for_bedrock_only() -> None:
    code = (
        "import sys; from gateway.app import create_app; import gateway.adapters.bedrock;"
        "heavy = ('google', 'httpx', 'anthropic', 'pydantic', 'boto3');"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(LAMBDA_SRC), "PATH": ""},
    )
    assert out.stdout.strip() == "[]"


def vertex_with(handler) -> VertexUpstream:
    import httpx

    up = VertexUpstream(settings(vertex_project="p", vertex_endpoint="http://vertex.test/"), "global")
    up._http = httpx.AsyncClient(transport=httpx.MockTransport(handler))

    async def token() -> str:
        return "t"

    up._token = token  # type: ignore[method-assign]
    return up


@pytest.mark.anyio
async def test_possibly_billed_only_when_vertex_had_the_request() -> None:
    import httpx
    from gateway.domain.failover import UpstreamFailure

    def accepted_then_error(request: httpx.Request) -> httpx.Response:
        body = b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"x"}}\n\n'
        return httpx.Response(200, stream=httpx.ByteStream(body))

    def never_connected(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("no route", request=request)

    def read_timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    async def failure(handler, stream: bool) -> UpstreamFailure:
        up = vertex_with(handler)
        with pytest.raises(UpstreamFailure) as caught:
            if stream:
                async for _ in up.stream("m", {"max_tokens": 1}, beta=(), timeout=5):
                    pass
            else:
                await up.invoke("m", {"max_tokens": 1}, beta=(), timeout=5)
        return caught.value

    assert (await failure(accepted_then_error, True)).possibly_billed
    assert (await failure(read_timeout, False)).possibly_billed
    assert not (await failure(never_connected, False)).possibly_billed
    assert not (await failure(never_connected, True)).possibly_billed
