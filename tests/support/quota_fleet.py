"""Containers of the real quota code (QuotaService over DynamoQuotaStore) sharing the DynamoDB model on
virtual time: what the model tests and `bench quota_scale` run. It keeps its own account of what every
served request was charged, per window item, to check that no window ever took more than its limit and
that no stored counter ends below what was used."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from gateway.adapters.dynamo_quota import DynamoQuotaStore
from gateway.domain import pricing, quota
from gateway.domain.catalog import load_catalog
from gateway.domain.errors import QuotaContentionError, RateLimitError
from gateway.domain.leases import LeasePolicy
from gateway.domain.metering import QuotaService
from gateway.models.exchange import MessagesRequest, PolicyDecision, Principal, Usage
from gateway.models.quota import Amount, UsageKey
from gateway.models.tenancy import Limits, PrincipalRecord, TenantConfig
from gateway.models.usage_items import COUNTERS, POOLS, pool_pk
from gateway.settings import Settings

from tests.support.ddb_model import DynamoModel, ModelConfig

MODEL = "claude-haiku-4-5"
# 15 s before a minute ends: runs cross a minute boundary.
EPOCH = datetime(2026, 11, 23, 3, 40, 45, tzinfo=UTC).timestamp()
SETTINGS = Settings(
    env="model",
    region="us-east-1",
    tenants_table="tenants",
    usage_table="usage",
    audit_stream="audit",
    audit_dlq_url="http://dlq",
    bedrock_regions={"us": ("us-east-1",)},
)


@dataclass
class Outcomes:
    served: int = 0
    refused: int = 0
    contention: int = 0
    settle_failed: int = 0
    reserve_seconds: list[float] = field(default_factory=list)
    settle_seconds: list[float] = field(default_factory=list)


class Fleet:
    def __init__(
        self,
        *,
        limits: Limits,
        principal_limits: Limits | None = None,
        leases: LeasePolicy | None = None,
        config: ModelConfig | None = None,
        epoch: float = EPOCH,
    ) -> None:
        self.model = DynamoModel(config, clock=self._time)
        random.seed((config or ModelConfig()).seed)  # the adapter's backoff jitter: runs repeat exactly
        self._ids = itertools.count()
        self.catalog = load_catalog()
        self.entry = self.catalog.lookup(MODEL)
        self.tenant = TenantConfig("acme", "Acme", limits=limits, principal_limits=principal_limits or Limits())
        self.policy = leases or LeasePolicy()
        self.epoch = epoch
        self.containers: list[QuotaService] = []
        self.outcomes = Outcomes()
        self.charged: dict[UsageKey, Amount] = defaultdict(Amount)  # what served requests used, per item
        self.limits: dict[UsageKey, dict[str, int]] = {}

    @staticmethod
    def _time() -> float:
        return asyncio.get_running_loop().time()

    def clock(self) -> float:
        return self.epoch + self._time()

    def delay(self) -> float:
        return self.model.take_delay()

    def container(self) -> QuotaService:
        store = DynamoQuotaStore(SETTINGS, client=self.model, monotonic=self._time)
        service = QuotaService(
            store,
            _Loaded(self),  # type: ignore[arg-type]
            self.catalog,
            clock=self.clock,
            leases=self.policy,
            owner=f"c{len(self.containers)}",
            new_id=lambda: f"{next(self._ids):012x}",
        )
        self.containers.append(service)
        return service

    def principal(self, principal_id: str = "sub-1") -> Principal:
        record = PrincipalRecord(principal_id, "acme", ("basic_user",))
        return Principal(principal_id, "acme", ("basic_user",), "0" * 64, record=record, tenant=self.tenant)

    async def request(
        self,
        service: QuotaService,
        principal: Principal,
        *,
        max_tokens: int = 100,
        input_tokens: int = 20,
        output_tokens: int = 10,
        seconds: float = 0.5,
    ) -> str:
        """One request: reserve, `seconds` at the upstream, settle to the usage given."""
        asked = MessagesRequest(MODEL, max_tokens, False, False, False, input_tokens, {}, "0" * 64)
        decision = PolicyDecision(self.entry, "us", {}, max_tokens)
        started = self._time()
        try:
            reservation = await service.reserve(principal, decision, asked)
        except QuotaContentionError:
            self.outcomes.contention += 1
            return "contention"
        except RateLimitError:
            self.outcomes.refused += 1
            return "refused"
        self.outcomes.reserve_seconds.append(self._time() - started)
        await asyncio.sleep(seconds)
        usage = Usage(input_tokens, min(output_tokens, max_tokens))
        cost = pricing.cost(self.catalog, decision, "bedrock", usage)
        charged = pricing.charged_amount(usage, cost)
        for charge in reservation.plan.charges:
            key = (charge.pk, charge.sk)
            self.charged[key] = self.charged[key] + charged
            self.limits[key] = dict(charge.limits)
        started = self._time()
        try:
            await service.settle(reservation, usage, cost)
        except Exception:  # RequestEnd logs it; the reservation stays charged (counters above the usage)
            self.outcomes.settle_failed += 1
        self.outcomes.settle_seconds.append(self._time() - started)
        self.outcomes.served += 1
        return "served"

    async def close(self) -> None:
        for service in self.containers:
            await service.close()

    def item(self, key: UsageKey) -> Amount:
        item = self.model.item(SETTINGS.usage_table, *key) or {}
        return Amount.of({k: int(v["N"]) for k, v in item.items() if "N" in v and k in COUNTERS})

    def stored(self, key: UsageKey) -> Amount:
        """What is charged to a window item: the item, plus its pools' items (which hold, negative, what
        the pools took from it and have not leased out)."""
        total = self.item(key)
        for n in range(POOLS):
            total = total + self.item((pool_pk(key[0], n), key[1]))
        return total

    def overspent(self) -> dict[UsageKey, dict[str, tuple[int, int]]]:
        """Window items whose served requests used more than a limit: counter -> (used, limit)."""
        out: dict[UsageKey, dict[str, tuple[int, int]]] = {}
        for key, limits in self.limits.items():
            used = self.charged[key].as_dict()
            over = {c: (used[c], limit) for c, limit in limits.items() if used[c] > limit}
            if over:
                out[key] = over
        return out

    def under_counted(self) -> dict[UsageKey, tuple[Amount, Amount]]:
        """Window items whose counters are below what was used: (stored, used). With its pools' items;
        and, for the counters a limit bounds, the window item alone (what the limit is checked against)."""
        out = {}
        for key, used in self.charged.items():
            alone = self.item(key).as_dict()
            limited = used.as_dict()
            if not used.within(self.stored(key)) or any(alone[c] < limited[c] for c in self.limits.get(key, {})):
                out[key] = (self.stored(key), used)
        return out

    def exact(self) -> dict[UsageKey, tuple[Amount, Amount]]:
        """Window items whose stored counters differ from what was used (after every container closed)."""
        return {key: (self.stored(key), used) for key, used in self.charged.items() if self.stored(key) != used}

    def minute(self, offset: float = 0.0) -> UsageKey:
        return (quota.tenant_pk("acme"), quota.window_at("minute", self.epoch + offset).sk)

    def counts(self) -> dict[str, Any]:
        total: dict[str, int] = defaultdict(int)
        for service in self.containers:
            for name, n in service.counts.items():
                total[name] += n
        return dict(total)


class _Loaded:
    """Tenancy for the fleet's principals, cached per container as TenancyService caches it: the tenant
    (with its QUOTA#HOT mark, read from the model's tenants table) is loaded again after CACHE_SECONDS.
    The load itself is not charged to the model: it is the tenancy's cost, the same in every design."""

    CACHE_SECONDS = 30.0

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.tenant: TenantConfig | None = None
        self.loaded_at = -1e9

    async def loaded(self, principal: Principal) -> tuple[PrincipalRecord, TenantConfig]:
        assert principal.record is not None
        now = self.fleet.clock()
        if self.tenant is None or now - self.loaded_at > self.CACHE_SECONDS:
            mark = self.fleet.model.item(SETTINGS.tenants_table, "TENANT#acme", "QUOTA#HOT") or {}
            hot = float(mark.get("until", {}).get("N", 0))
            self.tenant = replace(self.fleet.tenant, quota_hot_until=hot)
            self.loaded_at = now
        return principal.record, self.tenant

    def cached(self, principal: Principal) -> Principal:
        return principal
