"""The messages pipeline through the ASGI app, with in-memory ports and scripted upstreams (no sockets)."""

from __future__ import annotations

import json

import httpx
import pytest
from gateway.app import create_app
from gateway.domain.failover import UpstreamFailure
from gateway.domain.pseudonym import pseudonymize

from tests.unit.runtime_fakes import (
    SECRET,
    SONNET,
    FakeAudit,
    FakeQuota,
    FakeTenancy,
    FakeUpstream,
    context_header,
    settings,
    throttled,
    validation_error,
)

pytestmark = pytest.mark.anyio

BODY = {"model": SONNET, "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}


class World:
    def __init__(self, **settings_overrides) -> None:
        self.tenancy = FakeTenancy()
        self.quota = FakeQuota()
        self.audit = FakeAudit()
        self.east = FakeUpstream("bedrock", "us-east-1")
        self.west = FakeUpstream("bedrock", "us-west-2")
        self.vertex = FakeUpstream("vertex", "us-east5")
        self.app = create_app(
            settings(**settings_overrides),
            tenancy=self.tenancy,
            quota=self.quota,
            audit=self.audit,
            upstreams={"us": [self.east, self.west, self.vertex]},
            metrics=RecordingMetrics(),
        )

    async def post(self, body, *, headers=None, raw: bytes | None = None, path="/v1/messages"):
        hdrs = {
            "x-amzn-request-context": context_header(),
            "content-type": "application/json",
            **(headers or {}),
        }
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            content = raw if raw is not None else json.dumps(body).encode()
            response = await client.post(path, content=content, headers=hdrs)
        await self.app.state.background.drain()
        return response

    @property
    def upstream_calls(self) -> int:
        return len(self.east.calls) + len(self.west.calls) + len(self.vertex.calls)


class RecordingMetrics:
    def __init__(self) -> None:
        self.counts: dict[str, float] = {}

    def count(self, name: str, value: float = 1, **dimensions: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + value


@pytest.fixture
def world() -> World:
    return World()


async def test_message_is_served_metered_and_audited(world: World) -> None:
    response = await world.post(BODY)

    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == "Hello!"
    assert response.headers["request-id"] == "req-123"
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "99"
    assert world.tenancy.calls == ["resolve", "authorize"]
    # Bedrock got the profile id for the tenant's residency.
    assert world.east.calls[0]["model_id"] == "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    [(_, usage, cost)] = world.quota.settled
    assert (usage.input_tokens, usage.output_tokens) == (12, 5)
    # sonnet: 12 * 3 + 5 * 15 per million, plus the 10 % geographic uplift
    assert cost == pytest.approx((12 * 3 + 5 * 15) / 1e6 * 1.1)
    [outcome] = world.audit.outcomes
    assert outcome.outcome == "response" and outcome.status == 200
    assert outcome.served_by is not None and outcome.served_by.region == "us-east-1"
    assert outcome.cost_usd == cost
    assert outcome.response_sha256 and len(outcome.response_sha256) == 64
    # The source IP is kept only as a pseudonym under the principal's key (erasure unlinks it).
    assert outcome.first_byte_at is not None and "10.0.0.9" not in outcome.meta.source_ip
    assert outcome.meta.source_ip == pseudonymize(SECRET, "source_ip", "10.0.0.9")


async def test_unknown_fields_pass_through_to_the_upstream(world: World) -> None:
    body = {
        **BODY,
        "future_field": {"x": 1},
        "messages": [{"role": "user", "content": [{"type": "new_block_kind", "payload": [1, 2]}]}],
    }
    response = await world.post(body)

    assert response.status_code == 200
    sent = world.east.calls[0]["body"]
    assert sent["future_field"] == {"x": 1}
    assert sent["messages"][0]["content"][0] == {"type": "new_block_kind", "payload": [1, 2]}


async def test_region_throttling_fails_over_and_records_the_attempt(world: World) -> None:
    world.east.script = [throttled()]
    response = await world.post(BODY)

    assert response.status_code == 200
    [outcome] = world.audit.outcomes
    assert [(a.region, a.error) for a in outcome.attempts] == [
        ("us-east-1", "ThrottlingException"),
        ("us-west-2", None),
    ]
    assert outcome.served_by.region == "us-west-2"
    assert world.app.state.chain.metrics.counts["Failovers"] == 1


async def test_every_bedrock_region_down_is_served_by_vertex(world: World) -> None:
    down = UpstreamFailure("next", 503, "api_error", "unavailable", code="ServiceUnavailableException")
    world.east.script = [down]
    world.west.script = [down]
    response = await world.post(BODY)

    assert response.status_code == 200
    assert world.audit.outcomes[0].served_by.provider == "vertex"
    assert world.vertex.calls[0]["model_id"] == "claude-sonnet-4-5@20250929"


async def test_upstream_400_is_passed_on_and_not_retried(world: World) -> None:
    world.east.script = [validation_error()]
    response = await world.post(BODY)

    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "messages: bad"},
    }
    assert world.upstream_calls == 1
    [outcome] = world.audit.outcomes
    assert outcome.outcome == "error" and outcome.status == 400
    assert world.quota.released and not world.quota.settled


async def test_model_error_is_retried_once_on_the_same_region(world: World) -> None:
    model_error = UpstreamFailure("retry", 424, "api_error", "model error", code="ModelErrorException")
    world.east.script = [model_error, model_error]
    response = await world.post(BODY)

    assert response.status_code == 200
    assert [a.region for a in world.audit.outcomes[0].attempts] == ["us-east-1", "us-east-1", "us-west-2"]


async def test_every_upstream_down_is_529_overloaded(world: World) -> None:
    down = UpstreamFailure("next", 500, "api_error", "boom", code="InternalServerException")
    world.east.script, world.west.script, world.vertex.script = [down], [down], [down]
    response = await world.post(BODY)

    assert response.status_code == 529
    assert response.json()["error"]["type"] == "overloaded_error"
    assert len(world.audit.outcomes[0].attempts) == 3


async def test_audit_failure_is_503_without_calling_the_model(world: World) -> None:
    world.audit.fail_requests = True
    response = await world.post(BODY)

    assert response.status_code == 503
    assert response.json()["error"]["type"] == "api_error"
    assert world.upstream_calls == 0
    assert world.quota.released == world.quota.reserved != []
    assert world.audit.outcomes[0].outcome == "error"


async def test_quota_refusal_is_429_denied_with_retry_after(world: World) -> None:
    world.quota.refuse = True
    response = await world.post(BODY)

    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert world.upstream_calls == 0
    assert world.audit.outcomes[0].outcome == "denied"


async def test_policy_refusal_is_403_denied(world: World) -> None:
    world.tenancy.denied_principals.add("user-1")
    response = await world.post(BODY)

    assert response.status_code == 403
    assert world.audit.outcomes[0].outcome == "denied"
    assert world.upstream_calls == 0


HI = b'"messages": [{"role": "user", "content": "hi"}]'


@pytest.mark.parametrize(
    ("raw", "status", "error_type"),
    [
        (b"{not json", 400, "invalid_request_error"),
        (b"[1, 2]", 400, "invalid_request_error"),
        (b'{"model": "claude-sonnet-4-5", ' + HI + b"}", 400, "invalid_request_error"),
        (b'{"model": "claude-sonnet-4-5", "max_tokens": "64", ' + HI + b"}", 400, "invalid_request_error"),
        (b'{"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": "hi"}', 400, "invalid_request_error"),
        (b'{"model": 7, "max_tokens": 64, ' + HI + b"}", 400, "invalid_request_error"),
        (b'{"model": "claude-nonexistent", "max_tokens": 64, ' + HI + b"}", 404, "not_found_error"),
        (
            b'{"model": "claude-sonnet-4-5", "max_tokens": 64, ' + HI.replace(b"hi", b"\xff") + b"}",
            400,
            "invalid_request_error",
        ),
    ],
    ids=[
        "malformed",
        "not-object",
        "no-max-tokens",
        "max-tokens-string",
        "messages-string",
        "model-int",
        "unknown-model",
        "invalid-utf8",
    ],
)
async def test_bad_input_is_4xx_never_upstream(
    world: World, raw: bytes, status: int, error_type: str
) -> None:
    response = await world.post(None, raw=raw)

    assert response.status_code == status, response.text
    assert response.json()["error"]["type"] == error_type
    assert world.upstream_calls == 0
    assert world.audit.outcomes[0].outcome == "error"


async def test_oversized_body_is_413() -> None:
    world = World(max_body_bytes=2048)
    response = await world.post({**BODY, "messages": [{"role": "user", "content": "x" * 4000}]})

    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"
    assert world.upstream_calls == 0


async def test_missing_claims_is_401_with_request_id(world: World) -> None:
    transport = httpx.ASGITransport(app=world.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await client.post("/v1/messages", json=BODY)

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.headers["request-id"]
    assert world.upstream_calls == 0


async def test_streaming_relays_events_and_settles_usage(world: World) -> None:
    response = await world.post({**BODY, "stream": True})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [block.split("\n")[0] for block in response.text.strip().split("\n\n")]
    assert events == [
        "event: message_start",
        "event: content_block_start",
        "event: content_block_delta",
        "event: content_block_stop",
        "event: message_delta",
        "event: message_stop",
    ]
    [(_, usage, _)] = world.quota.settled
    assert (usage.input_tokens, usage.output_tokens) == (12, 5)
    assert world.audit.outcomes[0].outcome == "response"


async def test_stream_failure_before_first_event_fails_over(world: World) -> None:
    world.east.script = [throttled()]
    response = await world.post({**BODY, "stream": True})

    assert response.status_code == 200
    assert "event: message_stop" in response.text
    assert world.audit.outcomes[0].served_by.region == "us-west-2"


async def test_error_after_first_byte_ends_stream_with_error_event(world: World) -> None:
    world.east.fail_after = (3, UpstreamFailure("next", 500, "api_error", "internal failure mid-stream"))
    response = await world.post({**BODY, "stream": True})

    assert response.status_code == 200
    blocks = response.text.strip().split("\n\n")
    assert blocks[-1].startswith("event: error\ndata: ")
    assert json.loads(blocks[-1].split("data: ", 1)[1])["error"]["type"] == "api_error"
    assert world.upstream_calls == 1  # no failover after bytes reached the client
    [outcome] = world.audit.outcomes
    assert outcome.outcome == "error" and outcome.error_type == "api_error"


async def test_models_lists_what_the_caller_may_use(world: World) -> None:
    transport = httpx.ASGITransport(app=world.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await client.get("/v1/models", headers={"x-amzn-request-context": context_header()})

    assert response.status_code == 200
    ids = [m["id"] for m in response.json()["data"]]
    assert ids == ["claude-haiku-4-5-20251001", "claude-sonnet-4-5-20250929"]
    assert response.json()["data"][0]["display_name"] == "Claude Haiku 4.5"


async def test_healthz_and_unknown_route(world: World) -> None:
    transport = httpx.ASGITransport(app=world.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        ok = await client.get("/healthz")
        missing = await client.get("/v1/nothing")

    assert ok.status_code == 200 and ok.headers["request-id"]
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"


async def test_count_tokens_estimates_without_calling_a_model(world: World) -> None:
    body = {"model": SONNET, "messages": [{"role": "user", "content": "x" * 400}]}
    response = await world.post(body, path="/v1/messages/count_tokens")

    assert response.status_code == 200
    assert response.json() == {"input_tokens": 100}
    assert world.upstream_calls == 0


async def test_model_not_served_in_the_residency_is_404_without_upstream_call() -> None:
    world = World()
    world.tenancy.residency = "apac"  # no upstream chain configured for apac
    response = await world.post(BODY)

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
    assert world.upstream_calls == 0
    assert world.quota.released  # the reservation made before the chain was given back


async def test_two_request_context_headers_are_trusted_by_no_one(world: World) -> None:
    transport = httpx.ASGITransport(app=world.app)
    headers = [
        ("x-amzn-request-context", context_header()),
        ("x-amzn-request-context", context_header("admin")),
    ]
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await client.post("/v1/messages", json=BODY, headers=headers)

    assert response.status_code == 401
    assert int(response.headers["content-length"]) == len(response.content)
    assert world.upstream_calls == 0


async def test_on_done_is_idempotent_and_the_relay_does_not_start_after_it(world: World) -> None:
    """The request's end, without the route: the client left before the relay started. The route half
    (the app calls finish) is driven through the app in test_pipeline_guarantees.py."""
    from gateway.models.exchange import CallerIdentity, RequestMeta

    gateway = world.app.state.gateway
    end = gateway.begin(RequestMeta(request_id="gone"), calls_model=True)
    end.exchange.identity = CallerIdentity("user-1", "user", "app", frozenset(), {})
    await gateway.resolve(end)
    reply = await gateway.messages(end, json.dumps({**BODY, "stream": True}).encode(), ())

    assert reply.stream is not None
    await end.finish()
    await end.finish()
    await world.app.state.background.drain()

    [outcome] = world.audit.outcomes
    assert (outcome.outcome, outcome.error_type) == ("error", "client_disconnected")
    # The model was called and its unsent first event told the input: settled to that input plus
    # max_tokens of output (at or above the true usage), never released.
    [(_, usage, _)] = world.quota.settled
    assert (usage.input_tokens, usage.output_tokens) == (12, BODY["max_tokens"])
    assert not world.quota.released and outcome.response_sha256 is None
    assert [chunk async for chunk in reply.stream] == []  # the relay does not start after clean-up
    assert len(world.audit.outcomes) == 1


async def test_a_request_served_by_a_regional_vertex_endpoint_is_charged_its_uplift(world: World) -> None:
    world.east.script = [throttled()]
    world.west.script = [throttled()]
    response = await world.post(BODY)

    assert response.status_code == 200
    [(_, usage, cost)] = world.quota.settled
    assert world.audit.outcomes[0].served_by.provider == "vertex"
    # sonnet on Vertex's regional endpoint (us-east5): the 10 % regional uplift applies there too
    assert cost == pytest.approx((usage.input_tokens * 3 + usage.output_tokens * 15) / 1e6 * 1.1)


async def test_body_beta_flags_are_filtered_like_the_header_and_not_forwarded_as_sent(world: World) -> None:
    body = {**BODY, "anthropic_beta": ["context-1m-2025-08-07", "nope-2099"], "anthropic_version": "2026-10-21"}
    response = await world.post(body, headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})

    assert response.status_code == 200
    [call] = world.east.calls
    assert "anthropic_beta" not in call["body"] and "anthropic_version" not in call["body"]
    assert response.headers["x-gateway-dropped-betas"] == "nope-2099"
