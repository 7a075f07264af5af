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

from typing import Any, Protocol

from gateway.models.catalog import CatalogEntry
from gateway.models.exchange import CallerIdentity, Exchange, MessagesRequest, PolicyDecision, Principal, Usage


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
