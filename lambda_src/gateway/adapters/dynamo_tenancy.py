"""Tenancy on DynamoDB (steps 1-2): principals and tenant configs from the tenants table, cached.

A warm request reads nothing: principals and tenant configs (with the tenant's role overrides,
fetched by one Query on the tenant's partition) are cached per container for
settings.principal_cache_ttl_seconds, and concurrent misses for the same key share one read.
The policy itself is gateway.domain.policy; this module only loads and caches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any

from gateway.domain import policy
from gateway.domain.catalog import Catalog, CatalogEntry
from gateway.domain.errors import PermissionDeniedError, ServiceUnavailableError
from gateway.domain.pseudonym import pseudonym
from gateway.models import tenant_items
from gateway.models.exchange import CallerIdentity, MessagesRequest, PolicyDecision, Principal
from gateway.models.tenancy import PrincipalRecord, TenantConfig
from gateway.settings import Settings


class DynamoTenancy:
    def __init__(self, settings: Settings, catalog: Catalog, *, client: Any = None) -> None:
        self._settings = settings
        self._catalog = catalog
        self.directory = Directory.shared(settings, client)

    async def resolve(self, identity: CallerIdentity) -> Principal:
        record = await self.directory.principal(identity.principal_id)
        tenant = await self.directory.tenant(record.tenant_id) if record else None
        policy.check_active(tenant, record)
        assert record is not None and record.pseudonym_secret  # check_active refused otherwise
        if record.kind == "client" and identity.kind != "client":
            raise PermissionDeniedError("this principal is not registered with the gateway")
        return Principal(
            id=record.id,
            tenant_id=record.tenant_id,
            roles=record.roles,
            pseudonym=pseudonym(record.pseudonym_secret, record.id),
        )

    async def authorize(self, principal: Principal, request: MessagesRequest) -> PolicyDecision:
        record, tenant = await self.directory.pair(principal)
        return policy.decide(
            tenant,
            record,
            request,
            self._catalog,
            bedrock_residencies=self._settings.bedrock_regions.keys(),
            vertex_residencies=self._settings.vertex_regions.keys(),
        )

    async def allowed_models(self, principal: Principal) -> list[CatalogEntry]:
        record, tenant = await self.directory.pair(principal)
        return policy.allowed_models(
            tenant,
            policy.permissions_of(record.roles, tenant.roles),
            self._catalog,
            bedrock_residencies=self._settings.bedrock_regions.keys(),
            vertex_residencies=self._settings.vertex_regions.keys(),
        )

    async def permissions(self, principal: Principal) -> frozenset[str]:
        """The caller's effective permissions (the routes check `read` for GET endpoints)."""
        record, tenant = await self.directory.pair(principal)
        return policy.permissions_of(record.roles, tenant.roles)


class Directory:
    """Principals and tenant configs by id, cached with a TTL; shared by the tenancy and quota adapters
    of one container so that a request's quota step reuses what its tenancy step loaded."""

    _shared: dict[tuple[Any, ...], Directory] = {}

    def __init__(self, settings: Settings, client: Any = None) -> None:
        self._settings = settings
        self._client = client
        self._ttl = settings.principal_cache_ttl_seconds
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}
        # in-flight loads per (event loop, key): apps in other threads (tests, local stack) share a cache
        self._inflight: dict[tuple[int, str, str], asyncio.Future[Any]] = {}

    @classmethod
    def shared(cls, settings: Settings, client: Any = None) -> Directory:
        key = (settings.region, settings.tenants_table, settings.principal_cache_ttl_seconds, id(client))
        directory = cls._shared.get(key)
        if directory is None:
            directory = cls._shared[key] = cls(settings, client)
        return directory

    @property
    def client(self) -> Any:
        if self._client is None:
            from gateway.adapters.aws import client

            # Short timeouts (botocore's default is 60 s): quota settlement and release run before
            # the response ends, and a stuck DynamoDB call must not hold that end for minutes.
            self._client = client("dynamodb", self._settings.region, connect_timeout=2, read_timeout=3)
        return self._client

    async def principal(self, principal_id: str) -> PrincipalRecord | None:
        return await self._cached(("principal", principal_id), lambda: self._load_principal(principal_id))

    async def tenant(self, tenant_id: str) -> TenantConfig | None:
        return await self._cached(("tenant", tenant_id), lambda: self._load_tenant(tenant_id))

    async def pair(self, principal: Principal) -> tuple[PrincipalRecord, TenantConfig]:
        """The principal's record and its tenant, refused if either is gone or suspended meanwhile."""
        record = await self.principal(principal.id)
        tenant = await self.tenant(principal.tenant_id)
        policy.check_active(tenant, record)
        assert record is not None and tenant is not None
        if record.tenant_id != principal.tenant_id:
            raise PermissionDeniedError("this principal is not registered with the gateway")
        return record, tenant

    def cached_pair(self, principal: Principal) -> tuple[PrincipalRecord, TenantConfig] | None:
        """The principal's record and tenant from the cache, even if stale; None if either is absent.
        Never reads DynamoDB (for advisory uses off the request's critical path: rate-limit headers)."""
        record = self._cache.get(("principal", principal.id))
        tenant = self._cache.get(("tenant", principal.tenant_id))
        if record is None or tenant is None:
            return None
        return record[1], tenant[1]

    def forget(self) -> None:
        self._cache.clear()

    async def _cached(self, key: tuple[str, str], load: Callable[[], Any]) -> Any:
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        loop = asyncio.get_running_loop()
        flight = (id(loop), *key)
        pending = self._inflight.get(flight)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = loop.create_future()
        self._inflight[flight] = future
        try:
            value = await _guarded(asyncio.to_thread(load))
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
        if value is not None:  # unknown ids are not cached: a principal added now works at once
            self._cache[key] = (time.monotonic() + self._ttl, value)
        return value

    def _load_principal(self, principal_id: str) -> PrincipalRecord | None:
        got = self.client.get_item(
            TableName=self._settings.tenants_table,
            Key=to_item(tenant_items.principal_key(principal_id)),
        )
        return tenant_items.principal_from_item(from_item(got["Item"])) if "Item" in got else None

    def _load_tenant(self, tenant_id: str) -> TenantConfig | None:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._settings.tenants_table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": tenant_items.tenant_pk(tenant_id)}},
        }
        while True:
            page = self.client.query(**kwargs)
            items += [from_item(i) for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return tenant_items.tenant_from_items(items)


async def _guarded(call: Awaitable[Any]) -> Any:
    """DynamoDB unreachable or failing: refuse (fail closed) with a 503 rather than a bare 500."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return await call
    except (BotoCoreError, ClientError) as exc:
        raise ServiceUnavailableError(f"the tenant directory is unavailable ({type(exc).__name__})") from exc


# DynamoDB attribute values <-> plain values, without importing boto3 (cold start).


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: from_attr(v) for k, v in item.items()}


def from_attr(value: Mapping[str, Any]) -> Any:
    ((kind, raw),) = value.items()
    if kind == "S":
        return raw
    if kind == "N":
        number = Decimal(raw)
        return int(number) if number == number.to_integral_value() else float(number)
    if kind == "BOOL":
        return bool(raw)
    if kind == "NULL":
        return None
    if kind == "L":
        return [from_attr(v) for v in raw]
    if kind == "M":
        return from_item(raw)
    if kind in ("SS", "NS"):
        return sorted(from_attr({kind[0]: v}) for v in raw)
    if kind == "B":
        return raw
    raise ValueError(f"unsupported DynamoDB type {kind}")


def to_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: to_attr(v) for k, v in item.items()}


def to_attr(value: Any) -> dict[str, Any]:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float, Decimal)):
        return {"N": _number(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, Mapping):
        return {"M": to_item(value)}
    if isinstance(value, (list, tuple)):
        return {"L": [to_attr(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__} in DynamoDB")


def _number(value: int | float | Decimal) -> str:
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("DynamoDB numbers must be finite")
        return repr(value) if value != int(value) else str(int(value))
    return str(value)
