"""In-memory fakes of the request path's ports and of an upstream, for the runtime's unit tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from gateway.domain import pricing
from gateway.domain.catalog import CatalogEntry, load_catalog
from gateway.domain.errors import PermissionDeniedError, RateLimitError, ServiceUnavailableError
from gateway.domain.failover import UpstreamFailure
from gateway.models.exchange import CallerIdentity, Exchange, MessagesRequest, PolicyDecision, Principal, Usage
from gateway.models.tenancy import PrincipalRecord, TenantConfig
from gateway.settings import Settings

SONNET = "claude-sonnet-4-5"
SECRET = "ab" * 32  # the fake principal's pseudonym secret


def settings(**overrides: Any) -> Settings:
    base = dict(
        env="test",
        region="us-east-1",
        tenants_table="tenants",
        usage_table="usage",
        audit_stream="audit",
        audit_dlq_url="http://dlq",
        bedrock_regions={"us": ("us-east-1", "us-west-2")},
        upstream_timeout_seconds=30.0,
    )
    base.update(overrides)
    return Settings(**base)


def context_header(sub: str = "user-1", client_id: str = "app-client", request_id: str = "req-123") -> str:
    claims = {
        "sub": sub,
        "client_id": client_id,
        "username": sub,
        "scope": "gateway/invoke",
        "token_use": "access",
    }
    return json.dumps(
        {"requestId": request_id, "authorizer": {"claims": claims}, "identity": {"sourceIp": "10.0.0.9"}}
    )


class FakeTenancy:
    def __init__(self, residency: str = "us") -> None:
        self.residency = residency
        self.denied_principals: set[str] = set()
        self.refusal: Exception | None = None  # raised by authorize (a policy refusal)
        self.granted: frozenset[str] = frozenset({"read", "write", "sonnet", "haiku", "opus"})
        self.calls: list[str] = []

    async def resolve(self, identity: CallerIdentity) -> Principal:
        self.calls.append("resolve")
        if identity.principal_id in self.denied_principals:
            raise PermissionDeniedError("principal suspended")
        record = PrincipalRecord(identity.principal_id, "t1", ("power_user",), pseudonym_secret=SECRET)
        return Principal(
            id=identity.principal_id,
            tenant_id="t1",
            roles=("power_user",),
            pseudonym="p" * 64,
            record=record,
            tenant=TenantConfig("t1", "T1", residency=self.residency),
        )

    async def authorize(
        self, principal: Principal, request: MessagesRequest, entry: CatalogEntry | None = None
    ) -> PolicyDecision:
        self.calls.append("authorize")
        if self.refusal is not None:
            raise self.refusal
        entry = entry or load_catalog().lookup(request.model)
        assert entry is not None
        return PolicyDecision(entry=entry, residency=self.residency, body=request.body)

    async def allowed_models(self, principal: Principal) -> list[CatalogEntry]:
        return [load_catalog().lookup("claude-haiku-4-5"), load_catalog().lookup("claude-sonnet-4-5")]

    async def permissions(self, principal: Principal) -> frozenset[str]:
        return self.granted


@dataclass
class FakeReservation:
    tokens: int


class FakeQuota:
    def __init__(self) -> None:
        self.refuse = False
        self.reserved: list[FakeReservation] = []
        self.settled: list[tuple[FakeReservation, Usage, float]] = []
        self.released: list[FakeReservation] = []

    async def reserve(self, principal: Principal, decision: PolicyDecision, request: MessagesRequest):
        if self.refuse:
            raise RateLimitError("minute window exhausted", retry_after=7)
        # What the domain reserves: the input ceiling plus the (clamped) max_tokens.
        tokens = pricing.input_ceiling(decision.entry, request) + (decision.max_tokens or request.max_tokens)
        reservation = FakeReservation(tokens)
        self.reserved.append(reservation)
        return reservation

    async def settle(self, reservation, usage: Usage, cost_usd: float) -> None:
        self.settled.append((reservation, usage, cost_usd))

    async def release(self, reservation) -> None:
        self.released.append(reservation)

    def headers(self, reservation) -> dict[str, str]:
        return {"anthropic-ratelimit-requests-remaining": "99" if reservation else "100"}

    def headers_for(self, principal: Principal) -> dict[str, str]:
        return {"anthropic-ratelimit-requests-remaining": "100", "x-fake-principal": principal.id}

    async def usage_report(self, principal: Principal) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        self.closed = True

    @property
    def kept(self) -> list[FakeReservation]:
        """Reservations neither settled nor released: they stand as charged."""
        done = [id(r) for r, _, _ in self.settled] + [id(r) for r in self.released]
        return [r for r in self.reserved if id(r) not in done]


class FakeAudit:
    def __init__(self) -> None:
        self.fail_requests = False
        self.requests: list[Exchange] = []
        self.outcomes: list[Exchange] = []

    async def record_request(self, exchange: Exchange) -> None:
        if self.fail_requests:
            raise ServiceUnavailableError("kinesis down")
        self.requests.append(exchange)

    async def record_outcome(self, exchange: Exchange) -> None:
        self.outcomes.append(exchange)


def message_json(text: str = "Hello!", input_tokens: int = 12, output_tokens: int = 5) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": SONNET,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def stream_events(
    text: str = "Hello!", input_tokens: int = 12, output_tokens: int = 5
) -> list[tuple[str, bytes]]:
    events = [
        {"type": "message_start", "message": {**message_json("", input_tokens, 1), "content": []}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
        {"type": "message_stop"},
    ]
    return [(e["type"], json.dumps(e, separators=(",", ":")).encode()) for e in events]


@dataclass
class FakeUpstream:
    """Answers from a script: each call pops the next item (an UpstreamFailure raises, else success).

    For streams, `fail_after` events raises that failure after yielding that many events.
    """

    provider: str
    region: str
    script: list[Any] = field(default_factory=list)
    wire: str = ""  # from the provider unless given
    calls: list[dict[str, Any]] = field(default_factory=list)
    fail_after: tuple[int, UpstreamFailure] | None = None
    message: Any = None  # the whole reply's JSON, instead of message_json()
    events: list[tuple[str, bytes]] | None = None  # the stream's events, instead of stream_events()

    def __post_init__(self) -> None:
        self.wire = self.wire or {"bedrock": "bedrock-invoke"}.get(self.provider, self.provider)

    def model_id(self, entry: CatalogEntry, residency: str) -> str | None:
        if self.provider == "vertex":
            return entry.vertex_model_id
        return entry.bedrock_profiles.get(residency)

    def _next(self) -> Any:
        item = self.script.pop(0) if self.script else "ok"
        if isinstance(item, UpstreamFailure):
            raise item
        return item

    async def invoke(self, model_id: str, body: dict[str, Any], *, beta, timeout: float) -> bytes:
        self.calls.append({"model_id": model_id, "body": body, "stream": False})
        self._next()
        return json.dumps(message_json() if self.message is None else self.message).encode()

    async def stream(
        self, model_id: str, body: dict[str, Any], *, beta, timeout: float
    ) -> AsyncIterator[tuple[str, bytes]]:
        self.calls.append({"model_id": model_id, "body": body, "stream": True})
        self._next()
        for i, event in enumerate(stream_events() if self.events is None else self.events):
            if self.fail_after and i == self.fail_after[0]:
                raise self.fail_after[1]
            yield event


def throttled() -> UpstreamFailure:
    return UpstreamFailure("next", 429, "rate_limit_error", "Too many requests", code="ThrottlingException")


def validation_error() -> UpstreamFailure:
    return UpstreamFailure(
        "client", 400, "invalid_request_error", "messages: bad", code="ValidationException"
    )
