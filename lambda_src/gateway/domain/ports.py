"""The seams of the request path (DESIGN.md section 1), as small interfaces.

The messages pipeline calls them in this order:

    identity  = from the authorizer claims                    (routes)
    principal = await tenancy.resolve(identity)               step 1
    decision  = await tenancy.authorize(principal, request)   step 2
    reservation, _ = await gather(quota.reserve(...),          step 3
                                  audit.record_request(...))   step 4 (fails -> 503, model not called)
    upstream chain                                             step 5-6
    await quota.settle(...) / quota.release(...)               step 7
    await audit.record_outcome(exchange)                       step 7 (retried, then DLQ; never raises)

Implementations: DynamoDB-backed tenancy and quota, a Kinesis audit sink. Unit tests pass in-memory
fakes; nothing above the adapters imports boto3.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gateway.domain.catalog import CatalogEntry


@dataclass(frozen=True)
class CallerIdentity:
    """Who the authorizer says is calling: users by `sub`, machine clients by `client_id`."""

    principal_id: str
    kind: Literal["user", "client"]
    client_id: str
    scopes: frozenset[str]
    claims: dict[str, str]


@dataclass(frozen=True)
class RequestMeta:
    """Facts about the HTTP request that the audit trail keeps."""

    request_id: str
    source_ip: str = ""
    user_agent: str = ""


@dataclass(frozen=True)
class Principal:
    id: str
    tenant_id: str
    roles: tuple[str, ...]
    pseudonym: str


@dataclass(frozen=True)
class MessagesRequest:
    """The fields of a Messages API body that policy and quota read; `body` is forwarded otherwise as is."""

    model: str
    max_tokens: int
    stream: bool
    uses_tools: bool
    has_images: bool
    estimated_input_tokens: int
    body: dict[str, Any]
    body_sha256: str
    beta: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyDecision:
    entry: CatalogEntry
    residency: str
    # The body to forward: the request's, or with the tenant's notice appended to the system prompt.
    body: dict[str, Any]


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


@dataclass(frozen=True)
class Attempt:
    provider: Literal["bedrock", "vertex"]
    region: str
    model_id: str
    error: str | None = None  # None for the attempt that served the request
    status: int | None = None
    # The request reached the upstream and the try ended without an answer (a timeout, a stream that
    # failed after it was accepted): the upstream may still have run it and billed it.
    possibly_billed: bool = False


@dataclass
class Exchange:
    """Everything the gateway learns about one request, filled in as the request moves along.

    The audit sink turns it into audit records; it never holds prompt or completion text.
    """

    meta: RequestMeta
    identity: CallerIdentity | None = None
    principal: Principal | None = None
    request: MessagesRequest | None = None
    decision: PolicyDecision | None = None
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started_at: float = field(default_factory=time.time)
    attempts: list[Attempt] = field(default_factory=list)
    served_by: Attempt | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    response_sha256: str | None = None
    first_byte_at: float | None = None
    finished_at: float | None = None
    status: int | None = None
    error_type: str | None = None
    quota_decision: str | None = None  # "granted", "refused:<window>", ...
    # Which outcome record the audit sink writes: "response" (served), "denied" (refused by policy
    # or quota after the authorizer let it in), "error" (bad input, upstream or gateway failure).
    outcome: Literal["response", "denied", "error"] | None = None


class Reservation(Protocol):
    """What quota.reserve returns: enough to settle or release it later."""


class Tenancy(Protocol):
    async def resolve(self, identity: CallerIdentity) -> Principal:
        """Raise PermissionDeniedError for unknown or suspended principals and tenants."""

    async def authorize(self, principal: Principal, request: MessagesRequest) -> PolicyDecision:
        """Raise PermissionDeniedError (or NotFoundError for unknown models) when policy refuses."""

    async def allowed_models(self, principal: Principal) -> list[CatalogEntry]: ...


class Quota(Protocol):
    async def reserve(
        self, principal: Principal, decision: PolicyDecision, request: MessagesRequest
    ) -> Reservation:
        """One atomic reservation across every window; raise RateLimitError when any is exhausted."""

    async def settle(self, reservation: Reservation, usage: Usage, cost_usd: float) -> None: ...

    async def release(self, reservation: Reservation) -> None: ...

    def headers(self, reservation: Reservation | None) -> dict[str, str]:
        """The anthropic-ratelimit-* headers for the response."""

    def headers_for(self, principal: Principal) -> dict[str, str]:
        """The anthropic-ratelimit-* headers for a response without a reservation; no I/O (the
        limits this container has cached, the counters it knows)."""

    async def usage_report(self, principal: Principal) -> dict[str, Any]: ...


class AuditSink(Protocol):
    async def record_request(self, exchange: Exchange) -> None:
        """Write the `request` record; raise AuditUnavailableError if it cannot be written."""

    async def record_outcome(self, exchange: Exchange) -> None:
        """Write the `response`, `denied` or `error` record: retried, then dead-lettered; never raises."""
