"""Bad input on the local stack gets the right 4xx in the Anthropic shape: never a 5xx, never an
upstream call (the Bedrock and Vertex emulators' request counts stay at zero).

The bodies are raw bytes (the SDK cannot send malformed JSON), posted over loopback HTTP with a real
Cognito access token through the local authorizer; the SDK cases check the typed errors it raises."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.integration.conftest import upstream_calls

pytestmark = pytest.mark.integration
MODEL = b'"model": "claude-haiku-4-5"'
HI = b'"messages": [{"role": "user", "content": "hi"}]'
DEPTH = 100_000


def body(*fields: bytes) -> bytes:
    return b"{" + b", ".join(fields) + b"}"


CASES: dict[str, tuple[bytes, int, str]] = {
    "malformed-json": (b'{"model": "claude-haiku-4-5", "max_tokens": 5,', 400, "invalid_request_error"),
    "empty-body": (b"", 400, "invalid_request_error"),
    "not-an-object": (b'"hello"', 400, "invalid_request_error"),
    "missing-max-tokens": (body(MODEL, HI), 400, "invalid_request_error"),
    "missing-model": (body(b'"max_tokens": 5', HI), 400, "invalid_request_error"),
    "max-tokens-float": (body(MODEL, b'"max_tokens": 1.5', HI), 400, "invalid_request_error"),
    "max-tokens-string": (body(MODEL, b'"max_tokens": "5"', HI), 400, "invalid_request_error"),
    "max-tokens-zero": (body(MODEL, b'"max_tokens": 0', HI), 400, "invalid_request_error"),
    "messages-wrong-type": (body(MODEL, b'"max_tokens": 5', b'"messages": {}'), 400, "invalid_request_error"),
    "stream-wrong-type": (
        body(MODEL, b'"max_tokens": 5', b'"stream": "yes"', HI),
        400,
        "invalid_request_error",
    ),
    "unknown-model": (body(b'"model": "gpt-4"', b'"max_tokens": 5', HI), 404, "not_found_error"),
    "invalid-utf8": (
        body(MODEL, b'"max_tokens": 5', b'"messages": [{"role": "user", "content": "\xc3\x28"}]'),
        400,
        "invalid_request_error",
    ),
    # What a strict JSON parser refuses and Python's json accepts by default, or turns into trouble later.
    "deeply-nested-arrays": (
        body(MODEL, b'"max_tokens": 5', HI, b'"future_field": ' + b"[" * DEPTH + b"]" * DEPTH),
        400,
        "invalid_request_error",
    ),
    "deeply-nested-document": (b"[" * DEPTH + b"]" * DEPTH, 400, "invalid_request_error"),
    "nan-max-tokens": (body(MODEL, b'"max_tokens": NaN', HI), 400, "invalid_request_error"),
    "nan-temperature": (
        body(MODEL, b'"max_tokens": 5', b'"temperature": NaN', HI),
        400,
        "invalid_request_error",
    ),
    "infinity-max-tokens": (body(MODEL, b'"max_tokens": Infinity', HI), 400, "invalid_request_error"),
    "negative-infinity-top-p": (
        body(MODEL, b'"max_tokens": 5', b'"top_p": -Infinity', HI),
        400,
        "invalid_request_error",
    ),
    "max-tokens-10e400": (body(MODEL, b'"max_tokens": 1' + b"0" * 400, HI), 400, "invalid_request_error"),
    "max-tokens-10e130": (body(MODEL, b'"max_tokens": 1' + b"0" * 130, HI), 400, "invalid_request_error"),
    "max-tokens-true": (body(MODEL, b'"max_tokens": true', HI), 400, "invalid_request_error"),
}


# The error message names the field at fault, so a 400 for some other reason does not pass.
NAMES_THE_FIELD = {
    case: "max_tokens" for case in CASES if case.startswith("max-tokens-") or case == "missing-max-tokens"
}


@pytest.fixture(scope="module")
def token(local_stack) -> str:
    """One power_user (no role cap in the way of what is checked here) for the module's requests."""
    import uuid

    tenant_id = f"bad-{uuid.uuid4().hex[:10]}"
    local_stack.create_tenant(tenant_id, residency="us")
    user = local_stack.add_user(tenant_id, f"bad-{uuid.uuid4().hex[:10]}@example.com", ("power_user",))
    return local_stack.access_token(user.username, user.password)


@pytest.fixture
def post(local_stack, token: str, faults) -> Iterator[Any]:
    with httpx.Client(
        base_url=local_stack.endpoint,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
        timeout=60,
    ) as http:
        yield lambda content: http.post("/v1/messages", content=content)


def assert_anthropic_error(response: httpx.Response, status: int, error_type: str) -> None:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    payload = response.json()
    assert payload["type"] == "error", payload
    assert payload["error"]["type"] == error_type, payload
    assert isinstance(payload["error"]["message"], str) and payload["error"]["message"]
    assert response.headers["request-id"]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(post, faults, case: str) -> None:
    raw, status, error_type = CASES[case]
    response = post(raw)

    assert_anthropic_error(response, status, error_type)
    assert NAMES_THE_FIELD.get(case, "") in response.json()["error"]["message"]
    assert upstream_calls(faults) == 0


def test_the_same_body_well_formed_is_served(post, faults) -> None:
    """The control for the cases above: the emulators do count a good request."""
    response = post(body(MODEL, b'"max_tokens": 5', HI))

    assert response.status_code == 200, response.text
    assert upstream_calls(faults) == 1


def test_oversized_body_is_413(post, faults) -> None:
    limit = faults.app.state.settings.max_body_bytes
    raw = b'{"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "'
    raw += b"a" * (limit + 1) + b'"}]}'
    response = post(raw)

    assert_anthropic_error(response, 413, "request_too_large")
    assert upstream_calls(faults) == 0


def test_chunked_oversized_body_is_413(post, faults) -> None:
    """No content-length: the limit is enforced while reading."""
    limit = faults.app.state.settings.max_body_bytes

    def chunks() -> Iterator[bytes]:
        yield b'{"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "'
        for _ in range(limit // 65536 + 2):
            yield b"a" * 65536
        yield b'"}]}'

    response = post(chunks())

    assert_anthropic_error(response, 413, "request_too_large")
    assert upstream_calls(faults) == 0


def test_sdk_sees_typed_errors(gateway_client, token: str, faults) -> None:
    with gateway_client(token) as client:
        with pytest.raises(anthropic.NotFoundError) as unknown:
            client.messages.create(model="gpt-4", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(anthropic.BadRequestError) as wrong_type:
            client.messages.create(
                model="claude-haiku-4-5",
                max_tokens=5,
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"max_tokens": True},
            )

    assert unknown.value.body["error"]["type"] == "not_found_error"
    assert wrong_type.value.body["error"]["type"] == "invalid_request_error"
    assert upstream_calls(faults) == 0
