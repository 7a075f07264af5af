"""Quota on the usage store (steps 3 and 7): price, plan and reserve; settle or release; report.

The reservation is priced and planned here, once per request. What it is taken from is decided here too:
its own hold (one transaction now, one when the request ends: this module), or, while the key is hot
(hot_keys.py), this container's lease of the key's windows (memory, and now and then a commit:
hot_leases.py, from the tenant's pools in tenant_pools.py). The store only writes what these decide, each
write exactly once (docs/tenancy.md, "Exactly once" and "Hot tenants"). They share one MeteringState
(metering_state.py), which also keeps this container's view of the window counters for the headers.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from gateway.domain import policy, pricing, quota
from gateway.domain.catalog import Catalog
from gateway.domain.errors import PolicyLimitError, QuotaContentionError, RateLimitError, ServiceUnavailableError
from gateway.domain.hot_keys import HotKeys
from gateway.domain.hot_leases import HotLeases
from gateway.domain.leases import KeyState, Lease, LeasePolicy
from gateway.domain.metering_state import MeteringState, key_of, keys_of
from gateway.domain.ports import QuotaStore, WindowRefused
from gateway.domain.tenancy import TenancyService
from gateway.domain.tenant_pools import TenantPools
from gateway.models.exchange import MessagesRequest, PolicyDecision, Principal, Usage
from gateway.models.quota import HOLD, Amount, QuotaPlan, Reservation, WindowCharge
from gateway.models.tenancy import Limits
from gateway.models.usage_items import POOLS, pool_pk


class QuotaService:
    def __init__(
        self,
        store: QuotaStore,
        tenancy: TenancyService,
        catalog: Catalog,
        *,
        clock: Callable[[], float] = time.time,
        leases: LeasePolicy | None = None,
        owner: str | None = None,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        self.tenancy = tenancy
        self.catalog = catalog
        self.shared = MeteringState(
            store,
            clock=clock,
            policy=leases or LeasePolicy(),
            owner=owner or uuid.uuid4().hex[:12],
            new_id=new_id or (lambda: uuid.uuid4().hex),
        )
        self.hot = HotKeys(self.shared)
        self.pools = TenantPools(self.shared)
        self.leases = HotLeases(self.shared, self.hot, self.pools)

    @property
    def store(self) -> QuotaStore:
        return self.shared.store

    @store.setter
    def store(self, store: QuotaStore) -> None:
        self.shared.store = store

    @property
    def clock(self) -> Callable[[], float]:
        return self.shared.clock

    @property
    def policy(self) -> LeasePolicy:
        return self.shared.policy

    @property
    def owner(self) -> str:
        return self.shared.owner

    @property
    def counts(self) -> Counter[str]:
        """What this container wrote, by kind (for the benchmark and the tests; no I/O)."""
        return self.shared.counts

    @property
    def _keys(self) -> dict[str, KeyState]:  # each key's state (tests set one up to take a hold directly)
        return self.shared.keys

    # -- the request path ------------------------------------------------------------------------------

    async def reserve(self, principal: Principal, decision: PolicyDecision, request: MessagesRequest) -> Reservation:
        record, tenant = await self.tenancy.loaded(principal)
        ceiling = pricing.ceiling(self.catalog, decision, request)
        now = self.clock()
        own = policy.principal_limits(tenant, record)
        plan = quota.plan(tenant.tenant_id, principal.id, tenant.limits, own, pricing.reservation_amount(*ceiling), now)
        too_big = quota.precheck(plan)
        if too_big is not None:  # no amount of waiting makes it fit: the request is at fault
            raise PolicyLimitError(
                f"this request can never fit a limit: it may use {plan.amount.tokens} tokens and "
                f"${plan.amount.usd_micros / quota.MICROS:.6f} (input at most, plus max_tokens), and "
                f"{quota.refusal_message(too_big).removeprefix('rate limit reached: ').split(';')[0]} is lower; "
                "send less input or a smaller max_tokens"
            )
        state = self.shared.key_state(key_of(plan))
        state.last_used = now
        state.note_start(now, 60.0)
        state.tenant_id = tenant.tenant_id
        state.loaded_tenant_mark(tenant.quota_hot_until)
        refused = state.refused_at(keys_of(plan.charges), plan.amount, now)
        if refused is not None:  # refused a moment ago and nothing given back since: no store call
            self.counts["refused_locally"] += 1
            raise self._refusal(plan, next(c for c in plan.charges if (c.pk, c.sk) == refused))
        who = (tenant.tenant_id, principal.id)
        lease: Lease | None = None
        leased = self.hot.leasing(state, now) and self.hot.plenty(plan)
        if leased or state.lease is not None:  # scarce: what this container's lease still has, no renewal
            lease = await self.leases.from_lease(state, plan, who, tenant.limits, own, renew=leased)
        if lease is None:
            lease = await self._hold(state, plan, switch=not leased)
        if lease is None:
            lease = await self.leases.from_lease(state, plan, who, tenant.limits, own, renew=True)
        if lease is None:
            lease = await self._hold(state, plan, switch=False)
        assert lease is not None
        state.note_in_flight(now, self.policy.seconds)
        self.shared.forget_old(now)
        return Reservation(
            tenant_id=tenant.tenant_id,
            principal_id=principal.id,
            plan=plan,
            headers=quota.ratelimit_headers(plan.charges, self.shared.view(plan.charges)),
            ceiling=ceiling,
            lease=lease,
        )

    async def settle(self, reservation: Reservation, usage: Usage, cost_usd: float) -> None:
        await self._finish(reservation, pricing.charged_amount(usage, cost_usd))

    async def release(self, reservation: Reservation) -> None:
        await self._finish(reservation, Amount())

    def headers(self, reservation: Reservation | None) -> dict[str, str]:
        return dict(reservation.headers) if reservation is not None else {}

    def headers_for(self, principal: Principal) -> dict[str, str]:
        """The headers of a response without a reservation (refusals, count_tokens, /v1/models): limits
        from what this container holds, counters from what it knows; no store call. A principal whose
        tenant is not at hand gets the reset times alone."""
        known = self.tenancy.cached(principal)
        if known.record is None or known.tenant is None:
            tenant_limits = own = Limits()
        else:
            tenant_limits, own = known.tenant.limits, policy.principal_limits(known.tenant, known.record)
        plan = quota.plan(principal.tenant_id, principal.id, tenant_limits, own, Amount(), self.clock())
        return quota.ratelimit_headers(plan.charges, self.shared.view(plan.charges))

    async def usage_report(self, principal: Principal) -> dict[str, Any]:
        """The caller's tenant (and, when it has its own limits, the caller): used and left per window.
        `used` is what the window items hold, less what this container's own leases hold unused; other
        containers' leases count as used until they are given back (docs/tenancy.md, GET /v1/usage)."""
        record, tenant = await self.tenancy.loaded(principal)
        now = self.clock()
        scopes = [("tenant", quota.tenant_pk(tenant.tenant_id), tenant.limits)]
        own = policy.principal_limits(tenant, record)
        if not own.empty:
            scopes.append(("principal", quota.principal_pk(tenant.tenant_id, principal.id), own))
        windows_now = [quota.window_at(name, now) for name in quota.WINDOWS]
        pools = [pool_pk(scopes[0][1], n) for n in range(POOLS)] if self.policy.pools else []
        keys = [(pk, w.sk) for _, pk, _ in scopes for w in windows_now] + [
            (pk, w.sk) for pk in pools for w in windows_now
        ]
        found = await self.store.read(keys)
        self.shared.known.update(found)
        report: dict[str, Any] = {"tenant_id": tenant.tenant_id}
        for scope, pk, limits in scopes:
            charges = [WindowCharge(scope, pk, w) for w in windows_now]
            items = {
                c.sk: self.shared.view([c])[(c.pk, c.sk)]
                for c in charges
                if any((p, c.sk) in found for p in [pk, *pools])
            }
            windows = quota.usage_windows(limits, now, items)
            if scope == "tenant":
                report["windows"] = windows
            else:
                report["principal"] = {"principal_id": principal.id, "windows": windows}
        return report

    async def close(self) -> None:
        """The container stops: give back every lease it holds that no request is using."""
        await self.leases.close()

    # -- a request's own hold ----------------------------------------------------------------------------

    async def _hold(self, state: KeyState, plan: QuotaPlan, *, switch: bool) -> Lease | None:
        """The request's own hold: its amount on its window items, in one write; refused when a window
        cannot take it, after reaping other containers' unused leases once. With `switch`, None when the
        key turned hot while this request waited for its turn."""
        shared = self.shared
        amount = plan.amount
        reaped = drained = False
        refusing = plan.charges[0]  # the window that refused last, for the 429 when every attempt is spent
        for attempt in range(4):
            now = self.clock()
            if attempt == 0 and (now < state.probe_until or self.hot.is_hot(state, now)):
                # Refused lately, or a hot key near its limit (else it would lease): a read, which no
                # transaction blocks and which costs a tenth of a refused write, says whether it can fit.
                full = await self._full(plan)
                if full is not None:
                    refusing = full
                    pooled = await self.pools.hold(state, plan, drain=not drained)
                    if isinstance(pooled, Lease):
                        return pooled
                    drained = drained or pooled
                    if not pooled and not reaped:
                        reaped = True
                        if not await self.leases.reap(state, plan, full):
                            raise self._refused(state, plan, full, now)
                    continue
            grant = shared.request_hold(plan, plan.charges, now)
            try:
                # One hold of a key at a time per container: a container never races itself on its items.
                async with shared.lock(f"hold:{grant.key}"):
                    if switch and self.hot.leasing(state, self.clock()) and self.hot.plenty(plan):
                        return None  # the key turned hot while this request waited: it draws from a lease
                    contended = (await self.store.acquire(grant)).contended
                self.counts["holds"] += 1
            except ServiceUnavailableError:
                await shared.abandon(grant)
                raise
            except WindowRefused as refused:
                charge = refusing = plan.charges[refused.index]
                if refused.counters is not None:
                    shared.known[(charge.pk, charge.sk)] = refused.counters
                pooled = await self.pools.hold(state, plan, drain=not drained)
                if isinstance(pooled, Lease):
                    return pooled
                if pooled:
                    drained = True
                    continue  # the pools gave back what they held: the window item may take it now
                if not reaped:
                    reaped = True
                    if await self.leases.reap(state, plan, charge):
                        drained = False  # what was reaped went back to the pools
                        continue
                raise self._refused(state, plan, charge, now) from None
            except QuotaContentionError:
                self.hot.contended(state, now)
                raise
            if contended:
                self.hot.contended(state, now)
            hold = Lease(grant)
            hold.take(keys_of(plan.charges), amount)
            state.holds.add(hold)
            shared.add_known(grant.keys, grant.amounts)
            return hold
        raise self._refused(state, plan, refusing, self.clock())

    async def _full(self, plan: QuotaPlan) -> WindowCharge | None:
        """The first limited window item that the plan's amount does not fit, as read now."""
        limited = [c for c in plan.charges if c.limits]
        found = await self.store.read([(c.pk, c.sk) for c in limited])
        self.counts["probes"] += 1
        self.shared.known.update(found)
        for charge in limited:
            used = found.get((charge.pk, charge.sk), {})
            if any(int(used.get(c, 0)) > headroom for c, headroom in charge.headroom(plan.amount).items()):
                return charge
        return None

    def _refused(self, state: KeyState, plan: QuotaPlan, charge: WindowCharge, now: float) -> RateLimitError:
        state.refused[(charge.pk, charge.sk)] = (
            min(charge.window.resets_at.timestamp(), now + self.policy.refused_seconds),
            plan.amount,
        )
        state.probe_until = now + self.policy.scarce_seconds
        return self._refusal(plan, charge)

    def _refusal(self, plan: QuotaPlan, charge: WindowCharge) -> RateLimitError:
        message = quota.refusal_message(charge)
        used = self.shared.view(plan.charges)
        # The refusing window is spent as far as the caller is concerned.
        used[(charge.pk, charge.sk)] = {**used[(charge.pk, charge.sk)], **charge.limits}
        return RateLimitError(
            message,
            retry_after=charge.window.seconds_to_reset(plan.now),
            headers=quota.ratelimit_headers(plan.charges, used),
        )

    # -- the end of a request ----------------------------------------------------------------------------

    async def _finish(self, reservation: Reservation, charged: Amount) -> None:
        if reservation.done:
            return
        reservation.done = True
        lease: Lease | None = reservation.lease
        if lease is None:
            return
        now = self.clock()
        keys = keys_of(reservation.plan.charges)
        delta = charged - reservation.amount
        state = self.shared.key_state(lease.key)
        state.sample(charged)
        if lease.kind == HOLD:
            lease.settle(keys, delta)
            state.holds.discard(lease)
            if delta:  # charged what it reserved: the hold stands as it is, no write
                async with self.shared.lock(f"hold:{lease.key}"):
                    await self.leases.give_back(lease)
                if charged.within(reservation.amount):
                    state.forget_refusals(keys)
        else:
            returned = bool(delta) and charged.within(reservation.amount)
            await self.leases.settle(state, lease, keys, delta, returned=returned)
        await self.hot.mark(state)
        await self.leases.end_leases(now)
