"""The pipeline's guarantees under odd input and odd upstream answers, through the ASGI app.

Bad input is a 400 (never a 5xx); every request with an identity gets its outcome record, and a served
one is never under-metered; every refusal by policy or quota is `denied`, on every route; every answer
to a resolved principal carries rate-limit headers; a stream's clean-up runs however the client leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from gateway.domain.errors import PermissionDeniedError, PolicyLimitError, UnavailableInResidencyError

from tests.unit.runtime_fakes import SONNET, context_header, message_json, stream_events
from tests.unit.test_pipeline import BODY, World

pytestmark = pytest.mark.anyio

COUNT = "/v1/messages/count_tokens"
ENDPOINTS = ["/v1/messages", COUNT]


@pytest.fixture
def world() -> World:
    return World()


def with_field(name: str, literal: str) -> bytes:
    """BODY with one more top-level field, written as raw JSON text."""
    return (json.dumps(BODY)[:-1] + f', "{name}": {literal}}}').encode()


# -- 1. bad input is a 400 -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_a_deeply_nested_body_is_400_not_500(world: World, path: str) -> None:
    depth = 100_000
    response = await world.post(None, raw=with_field("x", "[" * depth + "]" * depth), path=path)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert world.upstream_calls == 0 and not world.quota.reserved


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_nan_and_infinity_are_400_and_never_forwarded(world: World, path: str, constant: str) -> None:
    response = await world.post(None, raw=with_field("temperature", constant), path=path)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert world.upstream_calls == 0


@pytest.mark.parametrize(
    "max_tokens", [10**400, 10**130, 64_001, True], ids=["1e400", "1e130", "over-model-max", "bool"]
)
async def test_max_tokens_out_of_bounds_is_400_before_policy_quota_or_upstream(
    world: World, max_tokens: Any
) -> None:
    response = await world.post(None, raw=json.dumps({**BODY, "max_tokens": max_tokens}).encode())

    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in response.json()["error"]["message"]
    # The caller is resolved before the body is judged (so the 400 is audited as theirs); nothing else runs.
    assert world.tenancy.calls == ["resolve"] and not world.quota.reserved and world.upstream_calls == 0


async def test_max_tokens_at_the_model_maximum_is_served(world: World) -> None:
    response = await world.post({**BODY, "max_tokens": 64_000})

    assert response.status_code == 200, response.text
    assert world.quota.reserved[0].tokens >= 64_000


# -- 2, 3. a served request always settles and is audited, never under-metered --------------------


@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": "lots", "output_tokens": 5},
        {"input_tokens": 12, "output_tokens": 10**400},
        {"input_tokens": None, "output_tokens": [1]},
        {"input_tokens": True, "output_tokens": 5},
    ],
    ids=["string", "huge", "list", "bool"],
)
async def test_odd_upstream_usage_still_answers_keeps_the_reservation_and_audits(
    world: World, usage: dict[str, Any]
) -> None:
    world.east.message = {**message_json(), "usage": usage}
    response = await world.post(BODY)

    assert response.status_code == 200, response.text
    assert response.json()["usage"] == usage  # passed through unchanged
    [outcome] = world.audit.outcomes
    assert outcome.status == 200 and outcome.usage is None
    # Unknown usage: the whole reservation stands (over, never under).
    assert world.quota.kept == world.quota.reserved and world.quota.reserved


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_failure_in_the_accounting_still_settles_and_writes_the_outcome(
    world: World, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise ZeroDivisionError("accounting bug")

    from gateway.domain.request_end import RequestEnd

    monkeypatch.setattr(RequestEnd, "served", broken)
    response = await world.post({**BODY, "stream": stream})

    assert response.status_code == 200
    [outcome] = world.audit.outcomes
    assert (outcome.outcome, outcome.error_type) == ("error", "accounting_error")
    assert world.quota.kept == world.quota.reserved and world.quota.reserved


@pytest.mark.parametrize(
    "message",
    [
        {k: v for k, v in message_json().items() if k != "usage"},
        {**message_json(), "usage": {"input_tokens": 0, "output_tokens": 0}},
    ],
    ids=["no-usage", "zero-usage"],
)
async def test_a_reply_without_usage_is_not_released(world: World, message: dict[str, Any]) -> None:
    world.east.message = message
    response = await world.post(BODY)

    assert response.status_code == 200
    assert not world.quota.released and not world.quota.settled
    assert world.quota.kept == world.quota.reserved and world.quota.reserved
    assert world.audit.outcomes[0].outcome == "response"


async def test_a_stream_with_odd_usage_is_relayed_whole_and_keeps_the_reservation(world: World) -> None:
    events = stream_events()
    start = json.loads(events[0][1])
    start["message"]["usage"]["input_tokens"] = "twelve"
    world.east.events = [("message_start", json.dumps(start).encode()), *events[1:]]
    response = await world.post({**BODY, "stream": True})

    assert response.status_code == 200
    assert "event: message_stop" in response.text and "event: error" not in response.text
    [outcome] = world.audit.outcomes
    assert outcome.outcome == "response" and outcome.usage is None
    assert world.quota.kept == world.quota.reserved and world.quota.reserved


async def test_nothing_served_releases_the_reservation(world: World) -> None:
    from tests.unit.runtime_fakes import validation_error

    world.east.script = [validation_error()]
    response = await world.post(BODY)

    assert response.status_code == 400
    assert world.quota.released == world.quota.reserved and world.quota.reserved


# -- 4. every refusal is audited `denied` ----------------------------------------------------------


@pytest.mark.parametrize(
    ("refusal", "status"),
    [
        (PolicyLimitError("max_tokens: 64 is above the limit set for you (10)"), 400),
        (UnavailableInResidencyError(f"model {SONNET} is not available in data residency 'eu'"), 404),
        (PermissionDeniedError("your roles do not allow opus models"), 403),
    ],
    ids=["max-tokens-per-request", "residency", "role"],
)
async def test_policy_refusals_are_denied_with_their_status(
    world: World, refusal: Exception, status: int
) -> None:
    world.tenancy.refusal = refusal
    response = await world.post(BODY)

    assert response.status_code == status
    [outcome] = world.audit.outcomes
    assert (outcome.outcome, outcome.status) == ("denied", status)
    assert world.upstream_calls == 0


async def test_an_unknown_model_is_bad_input_not_a_denial(world: World) -> None:
    response = await world.post({**BODY, "model": "claude-nonexistent"})

    assert response.status_code == 404
    assert world.audit.outcomes[0].outcome == "error"


async def get(world: World, path: str):
    import httpx

    transport = httpx.ASGITransport(app=world.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await client.get(path, headers={"x-amzn-request-context": context_header()})
    await world.app.state.background.drain()
    return response


@pytest.mark.parametrize("path", [COUNT, "/v1/models", "/v1/usage"])
async def test_an_unknown_or_suspended_principal_is_denied_and_audited_on_every_route(
    world: World, path: str
) -> None:
    world.tenancy.denied_principals.add("user-1")
    response = await (world.post(BODY, path=path) if path == COUNT else get(world, path))

    assert response.status_code == 403
    [outcome] = world.audit.outcomes
    assert (outcome.outcome, outcome.status, outcome.error_type) == ("denied", 403, "permission_error")
    assert outcome.identity is not None and outcome.identity.principal_id == "user-1"
    assert outcome.meta.request_id == "req-123"


@pytest.mark.parametrize("path", ["/v1/usage", "/v1/models"])
async def test_a_role_without_read_is_denied_get_endpoints_with_headers(world: World, path: str) -> None:
    world.tenancy.granted = frozenset({"write", "sonnet"})
    response = await get(world, path)

    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"
    [outcome] = world.audit.outcomes
    assert outcome.outcome == "denied" and outcome.principal is not None
    assert response.headers["x-fake-principal"] == "user-1"


async def test_count_tokens_refused_by_policy_is_denied_but_bad_input_is_not_audited(world: World) -> None:
    world.tenancy.refusal = PermissionDeniedError("no")
    assert (await world.post(BODY, path=COUNT)).status_code == 403
    assert [o.outcome for o in world.audit.outcomes] == ["denied"]

    assert (await world.post(None, raw=b"{nope", path=COUNT)).status_code == 400
    assert [o.outcome for o in world.audit.outcomes] == ["denied"]


# -- 5. rate-limit headers on every answer to a resolved principal --------------------------------


async def test_rate_limit_headers_on_count_tokens_and_models(world: World) -> None:
    counted = await world.post(BODY, path=COUNT)
    models = await get(world, "/v1/models")

    assert counted.status_code == 200 and counted.json() == {"input_tokens": 1}
    for response in (counted, models):
        assert response.headers["anthropic-ratelimit-requests-remaining"] == "100"
        assert response.headers["x-fake-principal"] == "user-1"


@pytest.mark.parametrize("fault", ["policy", "audit"])
async def test_rate_limit_headers_on_errors_before_a_reservation(world: World, fault: str) -> None:
    if fault == "policy":
        world.tenancy.refusal = PermissionDeniedError("no")
    else:
        world.audit.fail_requests = True
    response = await world.post(BODY)

    assert response.status_code in (403, 503)
    assert response.headers["x-fake-principal"] == "user-1"


async def test_no_rate_limit_headers_without_a_principal(world: World) -> None:
    world.tenancy.denied_principals.add("user-1")
    response = await world.post(BODY)

    assert response.status_code == 403
    assert not any(h.startswith("anthropic-ratelimit") for h in response.headers)


# -- 6. the stream's clean-up runs however the client leaves ---------------------------------------


async def drive(world: World, fail_on: str) -> list[dict[str, Any]]:
    """Drive the ASGI app by hand as a server would (ASGI 2.4), with a client that has left: sending
    the `fail_on` message raises OSError, as uvicorn's send does then."""
    body = json.dumps({**BODY, "stream": True}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/messages",
        "raw_path": b"/v1/messages",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"x-amzn-request-context", context_header().encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("10.0.0.9", 4321),
        "server": ("gw", 80),
    }
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == fail_on:
            raise OSError("the client went away")
        sent.append(message)

    with contextlib.suppress(Exception):
        await world.app(scope, receive, send)
    return sent


async def test_a_stream_the_client_never_read_is_closed_and_audited_through_the_app(world: World) -> None:
    await drive(world, "http.response.start")
    await world.app.state.background.drain()

    [outcome] = world.audit.outcomes
    assert (outcome.outcome, outcome.error_type) == ("error", "client_disconnected")
    # The model was called (its first event came back): settled to the input it reported plus
    # max_tokens of output, at or above the true usage; nothing is released.
    [(_, usage, _)] = world.quota.settled
    assert (usage.input_tokens, usage.output_tokens) == (12, BODY["max_tokens"])
    assert not world.quota.released


async def test_a_stream_left_after_the_first_event_is_cleaned_up_before_the_response_ends(
    world: World,
) -> None:
    sent = await drive(world, "http.response.body")
    # The relay's clean-up ran as the response ended (not whenever the generator is collected):
    # its outcome task is already spawned.
    assert world.app.state.background.pending >= 1 or world.audit.outcomes
    await world.app.state.background.drain()

    assert [m["type"] for m in sent] == ["http.response.start"]
    [outcome] = world.audit.outcomes
    assert (outcome.outcome, outcome.error_type) == ("error", "client_disconnected")
    [(_, usage, _)] = world.quota.settled
    assert (usage.input_tokens, usage.output_tokens) == (12, BODY["max_tokens"])


async def test_a_stream_read_to_the_end_is_finished_exactly_once(world: World) -> None:
    response = await world.post({**BODY, "stream": True})
    await asyncio.sleep(0)

    assert "event: message_stop" in response.text
    assert len(world.audit.outcomes) == 1 and world.audit.outcomes[0].outcome == "response"
    assert len(world.quota.settled) == 1 and not world.quota.released
