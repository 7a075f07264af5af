"""The seams of the request path, as interfaces only; the values they exchange live in gateway.models.

Two kinds:
- what the request path asks of tenancy and quota (`Tenancy`, `Quota`): the domain services in
  domain/tenancy.py and domain/metering.py implement them over the stores below; unit tests pass fakes;
- what the domain asks of the outside world (`TenantStore`, `QuotaStore`, `AuditSink`, `Upstream`,
  `BreakerStore`, `Metrics`): adapters that only load and store; nothing above them imports boto3.

docs/ARCHITECTURE.md walks one request through them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

from gateway.models.catalog import CatalogEntry
from gateway.models.exchange import CallerIdentity, Exchange, MessagesRequest, PolicyDecision, Principal, Usage
from gateway.models.quota import Counters, HoldCommit, HoldGrant, HoldRecord, HoldReturn, UsageKey, Written
from gateway.models.tenancy import PrincipalRecord, TenantConfig


class Reservation(Protocol):
    """What Quota.reserve returns: enough to settle or release it later."""


class Tenancy(Protocol):
    async def resolve(self, identity: CallerIdentity) -> Principal:
        """Raise PermissionDeniedError for unknown or suspended principals and tenants."""

    async def authorize(
        self, principal: Principal, request: MessagesRequest, entry: CatalogEntry | None = None
    ) -> PolicyDecision:
        """Raise PermissionDeniedError (or NotFoundError for unknown models) when policy refuses.
        `entry`: the request's catalog entry, when the caller already looked it up."""

    async def permissions(self, principal: Principal) -> frozenset[str]: ...

    async def allowed_models(self, principal: Principal) -> list[CatalogEntry]: ...


class Quota(Protocol):
    async def reserve(self, principal: Principal, decision: PolicyDecision, request: MessagesRequest) -> Reservation:
        """One atomic reservation across every window; raise RateLimitError when any is exhausted."""

    async def settle(self, reservation: Reservation, usage: Usage, cost_usd: float) -> None: ...

    async def release(self, reservation: Reservation) -> None: ...

    def headers(self, reservation: Reservation | None) -> dict[str, str]:
        """The anthropic-ratelimit-* headers for the response."""

    def headers_for(self, principal: Principal) -> dict[str, str]:
        """The anthropic-ratelimit-* headers for a response without a reservation; no I/O."""

    async def usage_report(self, principal: Principal) -> dict[str, Any]: ...

    async def close(self) -> None:
        """The container stops: give back what it holds (its leases)."""


class TenantStore(Protocol):
    """The tenants table, read only: None for an id that is not there."""

    async def principal(self, principal_id: str) -> PrincipalRecord | None: ...

    async def tenant(self, tenant_id: str) -> TenantConfig | None: ...


class WindowRefused(Exception):
    """A hold refused by a window's condition: `index` into the grant's charges, and the item's counters
    before the refused write (None when the store did not return them)."""

    def __init__(self, index: int, counters: Counters | None) -> None:
        super().__init__(f"window {index} refused")
        self.index = index
        self.counters = counters


class HoldGone(Exception):
    """The hold being given back or committed is no longer active: it was reaped (or returned) meanwhile."""


class QuotaStore(Protocol):
    """The usage table; it only persists what the domain decided. Each write takes effect once, whatever
    is retried and whichever answer is lost. Errors: WindowRefused, HoldGone, QuotaContentionError,
    ServiceUnavailableError."""

    async def acquire(self, grant: HoldGrant, returning: HoldReturn | None = None, *, patient: bool = True) -> Written:
        """Add the grant to its window items, every bound holding, and create its state item, in one
        transaction; with `returning`, give that hold back in the same transaction. Not `patient`: one
        attempt, contention raised at once (the caller has somewhere else to go)."""

    async def give_back(self, back: HoldReturn) -> Written:
        """Return (or reap) a hold in one transaction; not applied when it was no longer active (someone
        else returned or reaped it), applied when this return took effect (now or on an earlier attempt)."""

    async def commit(self, commit: HoldCommit) -> None:
        """Record a lease's new commitment (one conditional write, or a transaction when it grows the
        grant); raise HoldGone when the lease is no longer active."""

    async def mark_hot(self, tenant_id: str, until: float, *, unless_after: float) -> None:
        """Record that the tenant's usage items are contended until `until` (its tenant item's QUOTA#HOT),
        unless the record already says so beyond `unless_after`."""

    async def holds(self, partitions: Sequence[str]) -> list[HoldRecord]:
        """The leases stored in these partitions that are still held (not given back or reaped)."""

    async def read(self, keys: Sequence[UsageKey]) -> dict[UsageKey, Counters]: ...


class AuditSink(Protocol):
    async def record_request(self, exchange: Exchange) -> None:
        """Write the `request` record; raise AuditUnavailableError if it cannot be written."""

    async def record_outcome(self, exchange: Exchange) -> None:
        """Write the `response`, `denied` or `error` record: retried, then dead-lettered; never raises."""


class Upstream(Protocol):
    provider: str  # "bedrock" | "vertex" | "anthropic"
    region: str
    wire: str  # the API it speaks, for its accepted beta flags: one of gateway.domain.betas.WIRES

    def model_id(self, entry: CatalogEntry, residency: str) -> str | None:
        """The id to call for this entry and residency, or None when this upstream cannot serve it."""

    async def invoke(self, model_id: str, body: dict[str, Any], *, beta: tuple[str, ...], timeout: float) -> bytes:
        """The Messages API response body (JSON bytes, passed through unchanged)."""

    def stream(
        self, model_id: str, body: dict[str, Any], *, beta: tuple[str, ...], timeout: float
    ) -> AsyncIterator[tuple[str, bytes]]:
        """The Messages API events as (event type, JSON bytes); raises UpstreamFailure."""


class BreakerStore(Protocol):
    async def load(self, keys: list[str]) -> Mapping[str, Any]:
        """key -> BreakerState for the keys that have a shared state."""

    async def save(self, key: str, state: Any) -> None: ...


class Metrics(Protocol):
    def count(self, name: str, value: float = 1, **dimensions: str) -> None: ...
