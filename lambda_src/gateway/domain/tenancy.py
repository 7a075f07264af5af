"""Who is calling and what they may do (steps 1 and 2), over the tenants table's store.

A warm request reads nothing: principals and tenant configs are cached per container for
`ttl_seconds`, and concurrent misses for the same key share one read. Resolving a principal loads
its record and tenant once and checks both are active; the Principal carries them, so policy and
quota read them from there for the rest of the request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any

from gateway.domain import policy
from gateway.domain.catalog import Catalog
from gateway.domain.errors import PermissionDeniedError
from gateway.domain.ports import TenantStore
from gateway.domain.pseudonym import pseudonym
from gateway.models.catalog import CatalogEntry
from gateway.models.exchange import CallerIdentity, MessagesRequest, PolicyDecision, Principal
from gateway.models.tenancy import PrincipalRecord, TenantConfig


class TenancyService:
    def __init__(
        self,
        store: TenantStore,
        catalog: Catalog,
        *,
        ttl_seconds: float,
        bedrock_residencies: Iterable[str] | None = None,
        vertex_residencies: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.bedrock_residencies = None if bedrock_residencies is None else tuple(bedrock_residencies)
        self.vertex_residencies = tuple(vertex_residencies)
        self._cache = _Cache(ttl_seconds, clock)

    async def resolve(self, identity: CallerIdentity) -> Principal:
        record = await self._principal(identity.principal_id)
        tenant = await self._tenant(record.tenant_id) if record else None
        policy.check_active(tenant, record)
        assert record is not None and tenant is not None and record.pseudonym_secret
        if record.kind == "client" and identity.kind != "client":
            raise PermissionDeniedError("this principal is not registered with the gateway")
        return Principal(
            id=record.id,
            tenant_id=record.tenant_id,
            roles=record.roles,
            pseudonym=pseudonym(record.pseudonym_secret, record.id),
            record=record,
            tenant=tenant,
        )

    async def authorize(
        self, principal: Principal, request: MessagesRequest, entry: CatalogEntry | None = None
    ) -> PolicyDecision:
        record, tenant = await self.loaded(principal)
        return policy.decide(
            tenant,
            record,
            request,
            self.catalog,
            bedrock_residencies=self.bedrock_residencies,
            vertex_residencies=self.vertex_residencies,
            entry=entry,
        )

    async def permissions(self, principal: Principal) -> frozenset[str]:
        record, tenant = await self.loaded(principal)
        return policy.permissions_of(record.roles, tenant.roles)

    async def allowed_models(self, principal: Principal) -> list[CatalogEntry]:
        record, tenant = await self.loaded(principal)
        return policy.allowed_models(
            tenant,
            policy.permissions_of(record.roles, tenant.roles),
            self.catalog,
            bedrock_residencies=self.bedrock_residencies,
            vertex_residencies=self.vertex_residencies,
        )

    async def loaded(self, principal: Principal) -> tuple[PrincipalRecord, TenantConfig]:
        """The record and tenant `resolve` put on the principal, or (for a principal built elsewhere)
        loaded now and checked as `resolve` checks them."""
        if principal.record is not None and principal.tenant is not None:
            return principal.record, principal.tenant
        record = await self._principal(principal.id)
        tenant = await self._tenant(principal.tenant_id)
        policy.check_active(tenant, record)
        assert record is not None and tenant is not None
        if record.tenant_id != principal.tenant_id:
            raise PermissionDeniedError("this principal is not registered with the gateway")
        return record, tenant

    def cached(self, principal: Principal) -> Principal:
        """The principal with its record and tenant from what this container holds, even if stale;
        never reads the store (for advisory uses off the critical path: rate-limit headers)."""
        if principal.record is not None and principal.tenant is not None:
            return principal
        return replace(
            principal,
            record=self._cache.peek(("principal", principal.id)),
            tenant=self._cache.peek(("tenant", principal.tenant_id)),
        )

    def forget(self) -> None:
        self._cache.clear()

    async def _principal(self, principal_id: str) -> PrincipalRecord | None:
        return await self._cache.get(("principal", principal_id), lambda: self.store.principal(principal_id))

    async def _tenant(self, tenant_id: str) -> TenantConfig | None:
        return await self._cache.get(("tenant", tenant_id), lambda: self.store.tenant(tenant_id))


class _Cache:
    """A TTL cache whose concurrent misses for one key share one load; None (unknown ids) is not cached,
    so a principal added now works at once."""

    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._values: dict[tuple[str, str], tuple[float, Any]] = {}
        # in-flight loads per (event loop, key): apps in other threads (tests, local stack) share a cache
        self._inflight: dict[tuple[int, str, str], asyncio.Future[Any]] = {}

    def peek(self, key: tuple[str, str]) -> Any:
        hit = self._values.get(key)
        return None if hit is None else hit[1]

    def clear(self) -> None:
        self._values.clear()

    async def get(self, key: tuple[str, str], load: Callable[[], Awaitable[Any]]) -> Any:
        hit = self._values.get(key)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        loop = asyncio.get_running_loop()
        flight = (id(loop), *key)
        pending = self._inflight.get(flight)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = loop.create_future()
        self._inflight[flight] = future
        try:
            value = await load()
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # marked retrieved: waiters re-raise it, no "never retrieved" warning
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            self._inflight.pop(flight, None)
        future.set_result(value)
        if value is not None:
            self._values[key] = (self._clock() + self._ttl, value)
        return value
