# ruff: noqa: F811  (pytest fixtures imported from the harness are redefined as test arguments)
"""Bad input gets the right 4xx in the Anthropic shape: never a 5xx, never an upstream call."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.runtime_harness import VERTEX_REGION, runtime_stack, stack  # noqa: F401

pytestmark = pytest.mark.integration
AUTH = {"authorization": "Bearer user:alice", "content-type": "application/json"}
HI = b'"messages": [{"role": "user", "content": "hi"}]'

CASES = {
    "malformed-json": (b'{"model": "claude-haiku-4-5", "max_tokens": 5,', 400, "invalid_request_error"),
    "not-an-object": (b'"hello"', 400, "invalid_request_error"),
    "missing-max-tokens": (b'{"model": "claude-haiku-4-5", ' + HI + b"}", 400, "invalid_request_error"),
    "max-tokens-wrong-type": (
        b'{"model": "claude-haiku-4-5", "max_tokens": 1.5, ' + HI + b"}",
        400,
        "invalid_request_error",
    ),
    "messages-wrong-type": (
        b'{"model": "claude-haiku-4-5", "max_tokens": 5, "messages": {}}',
        400,
        "invalid_request_error",
    ),
    "bad-role": (
        b'{"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "x", "content": "a"}]}',
        400,
        "invalid_request_error",
    ),
    "stream-wrong-type": (
        b'{"model": "claude-haiku-4-5", "max_tokens": 5, "stream": "yes", ' + HI + b"}",
        400,
        "invalid_request_error",
    ),
    "unknown-model": (b'{"model": "gpt-4", "max_tokens": 5, ' + HI + b"}", 404, "not_found_error"),
    "invalid-utf8": (
        b'{"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", '
        b'"content": "\xc3\x28"}]}',
        400,
        "invalid_request_error",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(stack, case: str) -> None:
    raw, status, error_type = CASES[case]
    response = httpx.post(f"{stack.gateway_url}/v1/messages", content=raw, headers=AUTH)

    assert response.status_code == status, response.text
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == error_type
    assert response.headers["request-id"]
    assert sum(stack.calls(t) for t in ("us-east-1", "us-west-2", VERTEX_REGION)) == 0


def test_oversized_body_is_413(stack) -> None:
    limit = stack.app.state.settings.max_body_bytes
    raw = b'{"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "'
    raw += b"a" * (limit + 1) + b'"}]}'
    response = httpx.post(f"{stack.gateway_url}/v1/messages", content=raw, headers=AUTH, timeout=30)

    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"
    assert stack.calls("us-east-1") == 0


def test_chunked_oversized_body_is_413(stack) -> None:
    """No content-length: the limit is enforced while reading."""
    limit = stack.app.state.settings.max_body_bytes

    def body():
        yield b'{"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "'
        for _ in range(limit // 65536 + 2):
            yield b"a" * 65536
        yield b'"}]}'

    response = httpx.post(f"{stack.gateway_url}/v1/messages", content=body(), headers=AUTH, timeout=30)

    assert response.status_code == 413
    assert stack.calls("us-east-1") == 0
