"""Quota on the usage store (steps 3 and 7): price, plan and reserve; settle or release; report.

The reservation is priced and planned here, once per request. What it is taken from is decided here too
(leases.py): its own hold (one transaction now, one when the request ends), or this container's lease of
the key's windows (memory, and now and then a commit). The store only writes what this decides, each
write exactly once (docs/tenancy.md, "Exactly once" and "Hot tenants").

The rate-limit headers need the window counters, which a transaction does not return; reading them would
add a round trip to every request. So this container keeps its own view of them: what its own grants and
returns added, corrected by what refusals and usage reports read, less what its own leases hold unused.
Exact for a single container, optimistic (an upper bound on `remaining`) with several. Refusals never
depend on it: the store's conditions decide.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from gateway.domain import policy, pricing, quota
from gateway.domain.catalog import Catalog
from gateway.domain.errors import PolicyLimitError, QuotaContentionError, RateLimitError, ServiceUnavailableError
from gateway.domain.leases import ZERO, KeyState, Lease, LeasePolicy
from gateway.domain.ports import HoldGone, QuotaStore, WindowRefused
from gateway.domain.tenancy import TenancyService
from gateway.models.exchange import MessagesRequest, PolicyDecision, Principal, Usage
from gateway.models.quota import (
    HOLD,
    LEASE,
    Amount,
    Counters,
    HoldGrant,
    HoldReturn,
    QuotaPlan,
    Reservation,
    UsageKey,
    WindowCharge,
)
from gateway.models.tenancy import Limits
from gateway.models.usage_items import POOLS, hold_home, hold_partitions, pool_pk

log = logging.getLogger(__name__)


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
        self.store = store
        self.tenancy = tenancy
        self.catalog = catalog
        self.clock = clock
        self.policy = leases or LeasePolicy()
        self.owner = owner or uuid.uuid4().hex[:12]
        self._new_id = new_id or (lambda: uuid.uuid4().hex)
        self._known: dict[UsageKey, Counters] = {}
        self._keys: dict[str, KeyState] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # What this container wrote, by kind (for the benchmark and the tests; no I/O).
        self.counts: Counter[str] = Counter()

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
        key = _key(plan)
        state = self._keys.setdefault(key, KeyState())
        state.last_used = now
        state.note_start(now, 60.0)
        state.tenant_id = tenant.tenant_id
        state.tenant_hot_until = tenant.quota_hot_until
        refused = state.refused_at(_keys(plan.charges), plan.amount, now)
        if refused is not None:  # refused a moment ago and nothing given back since: no store call
            self.counts["refused_locally"] += 1
            raise self._refusal(plan, next(c for c in plan.charges if (c.pk, c.sk) == refused))
        who = (tenant.tenant_id, principal.id)
        lease: Lease | None = None
        leased = self._leasing(state, now) and self._plenty(plan)
        if leased or state.lease is not None:  # scarce: what this container's lease still has, no renewal
            lease = await self._from_lease(state, plan, who, tenant.limits, own, renew=leased)
        if lease is None:
            lease = await self._hold(state, plan, switch=not leased)
        if lease is None:
            lease = await self._from_lease(state, plan, who, tenant.limits, own, renew=True)
        if lease is None:
            lease = await self._hold(state, plan, switch=False)
        assert lease is not None
        state.note_in_flight(now, self.policy.seconds)
        self._forget_old(now)
        return Reservation(
            tenant_id=tenant.tenant_id,
            principal_id=principal.id,
            plan=plan,
            headers=quota.ratelimit_headers(plan.charges, self._view(plan.charges)),
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
        return quota.ratelimit_headers(plan.charges, self._view(plan.charges))

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
        self._known.update(found)
        report: dict[str, Any] = {"tenant_id": tenant.tenant_id}
        for scope, pk, limits in scopes:
            charges = [WindowCharge(scope, pk, w) for w in windows_now]
            items = {
                c.sk: self._view([c])[(c.pk, c.sk)] for c in charges if any((p, c.sk) in found for p in [pk, *pools])
            }
            windows = quota.usage_windows(limits, now, items)
            if scope == "tenant":
                report["windows"] = windows
            else:
                report["principal"] = {"principal_id": principal.id, "windows": windows}
        return report

    async def close(self) -> None:
        """The container stops: give back every lease it holds that no request is using."""
        backs = []
        for key, state in self._keys.items():
            for lease in [state.lease, *state.draining]:
                if lease is not None and lease.live and lease.in_flight == 0:
                    backs.append(self._locked_give_back(key, lease))
        for result in await asyncio.gather(*backs, return_exceptions=True):
            if isinstance(result, BaseException):
                log.warning("giving back a lease failed: %r", result)

    # -- holds -------------------------------------------------------------------------------------------

    async def _hold(self, state: KeyState, plan: QuotaPlan, *, switch: bool) -> Lease | None:
        """The request's own hold: its amount on its window items, in one write; refused when a window
        cannot take it, after reaping other containers' unused leases once. With `switch`, None when the
        key turned hot while this request waited for its turn."""
        amount = plan.amount
        reaped = drained = False
        for attempt in range(4):
            now = self.clock()
            if attempt == 0 and (now < state.probe_until or self._hot(state, now)):
                # Refused lately, or a hot key near its limit (else it would lease): a read, which no
                # transaction blocks and which costs a tenth of a refused write, says whether it can fit.
                full = await self._full(plan)
                if full is not None:
                    pooled = await self._pool_hold(state, plan, drain=not drained)
                    if isinstance(pooled, Lease):
                        return pooled
                    drained = drained or pooled
                    if not pooled and not reaped:
                        reaped = True
                        if not await self._reap(state, plan, full):
                            raise self._refused(state, plan, full, now)
                    continue
            hold_id = self._new_id()
            ends_at = now + self.policy.hold_seconds
            grant = HoldGrant(
                id=hold_id,
                kind=HOLD,
                home=hold_home(_scope_pks(plan.charges), HOLD, hold_id, ends_at),
                key=_key(plan),
                charges=plan.charges,
                amounts=(amount,) * len(plan.charges),
                committed=(amount,) * len(plan.charges),
                ends_at=ends_at,
                expires_at=int(ends_at + self.policy.hold_retention),
                owner=self.owner,
            )
            try:
                # One hold of a key at a time per container: a container never races itself on its items.
                async with self._lock(f"hold:{grant.key}"):
                    if switch and self._leasing(state, self.clock()) and self._plenty(plan):
                        return None  # the key turned hot while this request waited: it draws from a lease
                    contended = (await self.store.acquire(grant)).contended
                self.counts["holds"] += 1
            except ServiceUnavailableError:
                await self._abandon(grant)
                raise
            except WindowRefused as refused:
                charge = plan.charges[refused.index]
                if refused.counters is not None:
                    self._known[(charge.pk, charge.sk)] = refused.counters
                pooled = await self._pool_hold(state, plan, drain=not drained)
                if isinstance(pooled, Lease):
                    return pooled
                if pooled:
                    drained = True
                    continue  # the pools gave back what they held: the window item may take it now
                if not reaped:
                    reaped = True
                    if await self._reap(state, plan, charge):
                        drained = False  # what was reaped went back to the pools
                        continue
                raise self._refused(state, plan, charge, now) from None
            except QuotaContentionError:
                self._contended(state, now)
                raise
            if contended:
                self._contended(state, now)
            hold = Lease(grant)
            hold.take(_keys(plan.charges), amount)
            state.holds.add(hold)
            self._add_known(grant.keys, grant.amounts)
            return hold
        raise self._refused(state, plan, plan.charges[0], self.clock())

    def _refused(self, state: KeyState, plan: QuotaPlan, charge: WindowCharge, now: float) -> RateLimitError:
        state.refused[(charge.pk, charge.sk)] = (
            min(charge.window.resets_at.timestamp(), now + self.policy.refused_seconds),
            plan.amount,
        )
        state.probe_until = now + self.policy.scarce_seconds
        return self._refusal(plan, charge)

    async def _full(self, plan: QuotaPlan) -> WindowCharge | None:
        """The first limited window item that the plan's amount does not fit, as read now."""
        limited = [c for c in plan.charges if c.limits]
        found = await self.store.read([(c.pk, c.sk) for c in limited])
        self.counts["probes"] += 1
        self._known.update(found)
        for charge in limited:
            used = found.get((charge.pk, charge.sk), {})
            if any(int(used.get(c, 0)) > headroom for c, headroom in charge.headroom(plan.amount).items()):
                return charge
        return None

    async def _reap(self, state: KeyState, plan: QuotaPlan, charge: WindowCharge) -> bool:
        """Give back what other containers' leases hold on `charge` and have not committed to use: a
        container frozen or gone with a lease keeps no budget from a tenant that needs it."""
        now = self.clock()
        if not self.policy.enabled or now - state.last_reap < self.policy.reap_every:
            return False
        state.last_reap = now
        # Its budget is on this item, or on one of its pools' items for the same window.
        family = {charge.pk} | ({pool_pk(charge.pk, n) for n in range(POOLS)} if charge.scope == "tenant" else set())
        mine = {lease.id for s in self._keys.values() for lease in s.leases()}
        records = await self.store.holds(hold_partitions(_scope_pks(plan.charges)))
        candidates = []
        for record in records:
            if record.key != _key(plan) or record.id in mine or record.kind != LEASE:
                continue
            at = [i for i, (pk, sk) in enumerate(record.keys) if pk in family and sk == charge.sk]
            if not at:
                continue
            free = (record.granted[at[0]] - record.committed[at[0]]).ceil(ZERO)
            if free:
                candidates.append((tuple(free.as_dict().values()), record))
        candidates.sort(key=lambda c: c[0], reverse=True)
        reaped = False
        freed = ZERO
        for _, record in candidates[: self.policy.max_reaps]:
            if plan.amount.within(freed):
                break  # enough for this request; the rest stays with its holders
            i = next(i for i, (pk, sk) in enumerate(record.keys) if pk in family and sk == charge.sk)
            freed = freed + (record.granted[i] - record.committed[i]).ceil(ZERO)
            back = HoldReturn(
                record.id,
                record.home,
                record.seq,
                record.keys,
                tuple(c - g for c, g in zip(record.committed, record.granted, strict=True)),
                outcome="reaped",
            )
            if (await self.store.give_back(back)).applied:
                self._add_known(back.keys, back.deltas)
                self.counts["reaped"] += 1
                reaped = True
        return reaped

    # -- leases ------------------------------------------------------------------------------------------

    def _hot(self, state: KeyState, now: float) -> bool:
        return self.policy.enabled and now < max(state.hot_until, state.tenant_hot_until)

    def _leasing(self, state: KeyState, now: float) -> bool:
        return self._hot(state, now) and now >= state.scarce_until

    def _plenty(self, plan: QuotaPlan) -> bool:
        """Whether every limit the plan meets has room for `plenty` of its reservations, as far as this
        container knows."""
        view = self._view(plan.charges)
        for charge in plan.charges:
            used = view[(charge.pk, charge.sk)]
            for counter, limit in charge.limits.items():
                if limit - used.get(counter, 0) < self.policy.plenty * getattr(plan.amount, counter):
                    return False
        return True

    def _contended(self, state: KeyState, now: float) -> None:
        self.counts["contended"] += 1
        if self.policy.enabled:
            state.hot_until = now + self.policy.hot_seconds
            # Containers that start now learn it with the tenant they load, and lease from their first request.
            if state.tenant_id and state.tenant_hot_until < now + self.policy.hot_seconds / 2:
                state.mark_due = True

    async def _mark_hot(self, state: KeyState) -> None:
        if not state.mark_due:
            return
        state.mark_due = False
        until = self.clock() + self.policy.hot_seconds
        state.tenant_hot_until = until
        try:
            await self.store.mark_hot(state.tenant_id, until, unless_after=until - self.policy.hot_seconds / 2)
            self.counts["marked_hot"] += 1
        except Exception:  # advisory: containers learn it from their own contention anyway
            log.warning("marking the tenant's quota hot failed", exc_info=True)

    async def _from_lease(
        self,
        state: KeyState,
        plan: QuotaPlan,
        who: tuple[str, str],
        tenant_limits: Limits,
        own: Limits,
        *,
        renew: bool,
    ) -> Lease | None:
        """Draw the request's amount from this container's lease of the key, renewing it when it cannot
        serve; None when no lease can be had (the key is scarce: the request takes a hold)."""
        keys = _keys(plan.charges)
        async with self._lock(_key(plan)):
            now = self.clock()
            lease = state.lease
            if lease is None or not lease.serves(keys, plan.amount, now):
                if not renew:
                    return None
                try:
                    lease = await self._renew(state, plan, who, tenant_limits, own)
                except WindowRefused:
                    state.scarce_until = now + self.policy.scarce_seconds
                    return None
                if not lease.serves(keys, plan.amount, now):
                    return None
            lease.take(keys, plan.amount)
            if lease.uncommitted(keys):
                try:
                    await self._commit(lease)
                except HoldGone:
                    lease.settle(keys, -plan.amount)
                    state.lease = None
                    await self._lost(lease)
                    return None
            return lease

    async def _renew(
        self, state: KeyState, plan: QuotaPlan, who: tuple[str, str], tenant_limits: Limits, own: Limits
    ) -> Lease:
        """A new lease of the key over the next `seconds`; the old one, if no request uses it any more,
        given back in the same write."""
        now = self.clock()
        end = now + self.policy.seconds
        windows = quota.charges_over(*who, tenant_limits, own, now, end)
        pool = self._home_pool() if self.policy.pools else None
        charges, route = _via_pool(windows, pool)
        old = state.lease
        exhausted = old is not None and now < old.grant.ends_at
        state.lease_requests = self.policy.next_requests(state.lease_requests, exhausted, state.request_rate(now))
        amounts = self.policy.lease_amounts(
            windows,
            plan.amount,
            state.per_request or plan.amount,
            state.lease_requests,
            state.concurrency(),
            now,
            end,
        )
        first = {route.get(k, k) for k in _keys(plan.charges)}
        committed = tuple(
            self.policy.commit_target(a, plan.amount if (c.pk, c.sk) in first else ZERO)
            for c, a in zip(charges, amounts, strict=True)
        )
        state.lease = None
        returning = None
        if old is not None:
            old.closed = True
            if old.in_flight == 0 and old.live:
                returning = old
            elif old.live:
                state.draining.append(old)
        refilled = False
        for attempt in range(3):
            lease_id = self._new_id()
            grant = HoldGrant(
                id=lease_id,
                kind=LEASE,
                home=hold_home(_scope_pks(windows), LEASE, lease_id, end),
                key=_key(plan),
                charges=charges,
                amounts=amounts,
                committed=committed,
                ends_at=end,
                expires_at=int(end + self.policy.retention),
                owner=self.owner,
            )
            back = returning.give_back() if returning is not None else None
            try:
                contended = (await self.store.acquire(grant, back)).contended
            except HoldGone:
                assert returning is not None
                await self._lost(returning)
                returning = None
                if attempt < 2:
                    continue
                raise
            except WindowRefused as refused:
                if charges[refused.index].pool and not refilled and pool is not None:
                    refilled = True  # the pool is short: it takes more from the window items, then again
                    try:
                        await self._refill(pool, plan, windows, charges, amounts)
                        continue
                    except WindowRefused:
                        pass
                if returning is not None:  # the old lease was not given back either: give it back alone
                    try:
                        await self._give_back(returning)
                    except Exception:
                        log.warning("giving back a lease failed", exc_info=True)
                raise
            except QuotaContentionError:
                self._contended(state, now)
                if returning is not None:
                    state.lease = returning
                    returning.closed = False
                raise
            except ServiceUnavailableError:
                await self._abandon(grant)
                if returning is not None:
                    try:
                        await self._give_back(returning)
                    except Exception:
                        log.warning("giving back a lease failed", exc_info=True)
                raise
            self.counts["leases"] += 1
            if back is not None and returning is not None:
                returning.returned = True
                self._add_known(back.keys, back.deltas)
            if contended:
                self._contended(state, now)
            lease = Lease(grant, route)
            state.lease = lease
            self._add_known(grant.keys, grant.amounts)
            return lease
        raise AssertionError("unreachable")

    async def _abandon(self, grant: HoldGrant) -> None:
        """A grant whose outcome stayed unknown: give it back if it happened (its state item's condition
        makes this a no-op if it did not), so that it does not stay charged with no request behind it."""
        back = HoldReturn(grant.id, grant.home, 0, grant.keys, tuple(-a for a in grant.amounts))
        try:
            await self.store.give_back(back)
        except Exception:  # still unreachable: it stays charged, counters above the true usage
            log.warning("could not give back a grant whose outcome is unknown", exc_info=True)

    def _home_pool(self) -> int:
        """This container's pool: its leases come from it (containers spread over the pools)."""
        return int.from_bytes(hashlib.sha256(self.owner.encode()).digest()[:4], "big") % POOLS

    async def _refill(
        self,
        pool: int,
        plan: QuotaPlan,
        windows: Sequence[WindowCharge],
        charges: Sequence[WindowCharge],
        amounts: Sequence[Amount],
    ) -> None:
        """The pool takes budget from the window items (within their limits) for the lease it could not
        grant: `refill_leases` of it at a time, or, if that does not fit, just that lease."""
        pairs = [(w, c, a) for w, c, a in zip(windows, charges, amounts, strict=True) if c.pool]
        for size in ("refill", "lease"):
            now = self.clock()
            # Every counter moves (the window item stays at or above what was used); only the limited ones
            # bind a pool's takes.
            chunks = tuple(self.policy.refill_amount(w, a) if size == "refill" else a for w, _, a in pairs)
            refill_id = self._new_id()
            grant = HoldGrant(
                id=refill_id,
                kind=HOLD,
                home=hold_home([pairs[0][0].pk], HOLD, refill_id, now),
                key=f"pool{pool}|{_key(plan)}",
                charges=tuple(w for w, _, _ in pairs),
                amounts=chunks,
                committed=chunks,
                ends_at=now,
                expires_at=int(now + self.policy.hold_retention),
                owner=self.owner,
                credits=tuple((c, -chunk) for (_, c, _), chunk in zip(pairs, chunks, strict=True)),
            )
            try:
                await self.store.acquire(grant)
            except WindowRefused:
                if size == "lease":
                    raise
                continue
            self.counts["refills"] += 1
            self._add_known(grant.keys, chunks)
            self._add_known([(c.pk, c.sk) for _, c, _ in pairs], [-chunk for chunk in chunks])
            return

    async def _pool_hold(self, state: KeyState, plan: QuotaPlan, *, drain: bool) -> Lease | bool:
        """Near the limit the window items may be spent while pools still hold some of it: the request's
        own hold, from a pool that holds enough for it (one read finds which); or, when none holds enough
        alone but together they would (`drain`), True once they have given it all back to the window items.
        False: the pools hold too little."""
        if not self.policy.pools or not (state.hot_until or state.tenant_hot_until):
            return False
        tenant = [c for c in plan.charges if c.scope == "tenant"]
        keys = [(pool_pk(c.pk, n), c.sk) for n in range(POOLS) for c in tenant]
        found = await self.store.read(keys)
        self.counts["pool_reads"] += 1
        self._known.update(found)
        amount = plan.amount
        home = self._home_pool()  # containers start at their own pool, so that they do not all meet at one
        holding = [
            n
            for n in ((home + i) % POOLS for i in range(POOLS))
            if all(_holds(found.get((pool_pk(c.pk, n), c.sk), {}), c, amount) for c in tenant)
        ]
        for n in holding:
            charges, route = _via_pool(plan.charges, n)
            now = self.clock()
            hold_id = self._new_id()
            ends_at = now + self.policy.hold_seconds
            grant = HoldGrant(
                id=hold_id,
                kind=HOLD,
                home=hold_home(_scope_pks(plan.charges), HOLD, hold_id, ends_at),
                key=_key(plan),
                charges=charges,
                amounts=(amount,) * len(charges),
                committed=(amount,) * len(charges),
                ends_at=ends_at,
                expires_at=int(ends_at + self.policy.hold_retention),
                owner=self.owner,
            )
            try:
                async with self._lock(f"hold:{grant.key}"):
                    await self.store.acquire(grant, patient=False)
            except (WindowRefused, QuotaContentionError):
                continue  # another container took it first, or is taking some: the next pool
            self.counts["pool_holds"] += 1
            hold = Lease(grant, route)
            hold.take(_keys(plan.charges), amount)
            state.holds.add(hold)
            self._add_known(grant.keys, grant.amounts)
            return hold
        held = {
            (i, n): _bound(c, (-Amount.of(found.get((pool_pk(c.pk, n), c.sk), {}))).ceil(ZERO))
            for i, c in enumerate(tenant)
            for n in range(POOLS)
        }
        enough = all(
            _bound(c, amount).within(sum((held[(i, n)] for n in range(POOLS)), ZERO)) for i, c in enumerate(tenant)
        )
        if not drain or not enough:
            return False
        return await self._drain(plan, [(tenant[i], n, a) for (i, n), a in held.items() if a])

    async def _drain(self, plan: QuotaPlan, held: list[tuple[WindowCharge, int, Amount]]) -> bool:
        """Move what the pools hold of these window items back to them, in one write (each pool must still
        hold what was read: a pool that leased some out meanwhile fails it, and nothing moves)."""
        now = self.clock()
        drain_id = self._new_id()
        pools = [
            (WindowCharge(c.scope, pool_pk(c.pk, n), c.window, dict.fromkeys(c.limits, 0), pool=True), amount)
            for c, n, amount in held
        ]
        grant = HoldGrant(
            id=drain_id,
            kind=HOLD,
            home=hold_home([plan.charges[0].pk], HOLD, drain_id, now),
            key=f"drain|{_key(plan)}",
            charges=tuple(c for c, _ in pools),
            amounts=tuple(a for _, a in pools),
            committed=tuple(a for _, a in pools),
            ends_at=now,
            expires_at=int(now + self.policy.hold_retention),
            owner=self.owner,
            credits=tuple((WindowCharge(c.scope, c.pk, c.window), -amount) for c, _, amount in held),
        )
        try:
            await self.store.acquire(grant, patient=False)
        except (WindowRefused, QuotaContentionError):
            return False
        self.counts["drains"] += 1
        self._add_known(grant.keys, grant.amounts)
        self._add_known([(c.pk, c.sk) for c, _, _ in held], [-a for _, _, a in held])
        return True

    async def _commit(self, lease: Lease) -> None:
        commit = lease.next_commit(self.policy)
        await self.store.commit(commit)
        self.counts["commits"] += 1
        lease.committed_to(commit)
        if commit.extra:
            self._add_known(commit.keys, commit.extra)

    async def _give_back(self, lease: Lease) -> None:
        back = lease.give_back()
        lease.returned = True
        self.counts["give_backs"] += 1
        try:
            written = await self.store.give_back(back)
        except QuotaContentionError:
            self._contended(self._keys.setdefault(lease.key, KeyState()), self.clock())
            raise
        if written.applied:
            self._add_known(back.keys, back.deltas)
        elif lease.kind == LEASE:
            await self._lost(lease)
        else:
            lease.gone = True
        if written.contended:
            self._contended(self._keys.setdefault(lease.key, KeyState()), self.clock())

    async def _locked_give_back(self, key: str, lease: Lease) -> None:
        async with self._lock(key):
            if lease.live and lease.in_flight == 0:
                await self._give_back(lease)
            state = self._keys.get(key)
            if state is not None:
                if state.lease is lease:
                    state.lease = None
                if lease in state.draining:
                    state.draining.remove(lease)

    # -- the end of a request ----------------------------------------------------------------------------

    async def _finish(self, reservation: Reservation, charged: Amount) -> None:
        if reservation.done:
            return
        reservation.done = True
        lease: Lease | None = reservation.lease
        if lease is None:
            return
        now = self.clock()
        keys = _keys(reservation.plan.charges)
        delta = charged - reservation.amount
        state = self._keys.setdefault(lease.key, KeyState())
        state.sample(charged)
        if lease.kind == HOLD:
            lease.settle(keys, delta)
            state.holds.discard(lease)
            if delta:  # charged what it reserved: the hold stands as it is, no write
                async with self._lock(f"hold:{lease.key}"):
                    await self._give_back(lease)
                if charged.within(reservation.amount):
                    self._gave_back(state, keys)
            await self._mark_hot(state)
            await self._end_leases(now)
            return
        async with self._lock(lease.key):
            lease.settle(keys, delta)
            if delta and charged.within(reservation.amount):
                self._gave_back(state, keys)
            if lease.gone:
                # Reaped while this request was in flight: the reaper left its reservation charged.
                await self._adjust(lease.key, lease.charges_for(keys), [delta] * len(keys))
            elif lease.uncommitted(keys):  # charged beyond its commitment (more than was reserved)
                try:
                    await self._commit(lease)
                except HoldGone:
                    await self._lost(lease)
            if lease.closed and lease.in_flight == 0 and lease.live:
                await self._give_back(lease)
            if lease in state.draining and lease.in_flight == 0:
                state.draining.remove(lease)
        await self._mark_hot(state)
        await self._end_leases(now)

    def _gave_back(self, state: KeyState, keys: Sequence[UsageKey]) -> None:
        """A settlement returned budget: a local refusal on these items no longer stands."""
        for k in keys:
            state.refused.pop(k, None)

    async def _lost(self, lease: Lease) -> None:
        """The lease was reaped: the reaper gave back all it had not committed and left the committed part
        charged. Give back (or charge) the difference between that and what its requests used: a request
        in flight is committed at its reservation, and settles later with `_adjust`."""
        if lease.gone:
            return
        lease.gone = True
        self.counts["lost"] += 1
        keys = lease.grant.keys
        try:
            await self._adjust(lease.key, lease.grant.charges, [lease.used[k] - lease.committed[k] for k in keys])
        except Exception:
            log.warning("settling a reaped lease failed; its windows stay charged as committed", exc_info=True)

    async def _adjust(self, key: str, charges: Sequence[WindowCharge], deltas: Sequence[Amount]) -> None:
        """Add each delta to its window item whatever the limits (usage that already happened, or a
        reservation's unused part given back), exactly once: a hold of its own that is never returned."""
        pairs = [(WindowCharge(c.scope, c.pk, c.window, {}), d) for c, d in zip(charges, deltas, strict=True) if d]
        if not pairs:
            return
        now = self.clock()
        hold_id = self._new_id()
        grant = HoldGrant(
            id=hold_id,
            kind=HOLD,
            home=hold_home(key.split("|"), HOLD, hold_id, now),
            key=key,
            charges=tuple(c for c, _ in pairs),
            amounts=tuple(d for _, d in pairs),
            committed=tuple(d for _, d in pairs),
            ends_at=now,
            expires_at=int(now + self.policy.hold_retention),
            owner=self.owner,
        )
        await self.store.acquire(grant)
        self.counts["adjustments"] += 1
        self._add_known(grant.keys, grant.amounts)

    async def _end_leases(self, now: float) -> None:
        """Give back leases that have ended and that no request uses, at the end of a request: a container
        that goes on serving other keys does not keep budget it no longer draws from."""
        for key, state in list(self._keys.items()):
            lease = state.lease
            if lease is not None and now >= lease.grant.ends_at and lease.in_flight == 0 and lease.live:
                try:
                    await self._locked_give_back(key, lease)
                except Exception:  # it ended: a later request, the container's stop or a reaper gives it back
                    log.warning("giving back an ended lease failed", exc_info=True)

    # -- this container's view of the counters -----------------------------------------------------------

    def _add_known(self, keys: Iterable[UsageKey], amounts: Iterable[Amount]) -> None:
        for k, amount in zip(keys, amounts, strict=True):
            self._known[k] = (Amount.of(self._known.get(k, {})) + amount).as_dict()

    def _slack(self, key: UsageKey) -> Amount:
        total = ZERO
        for state in self._keys.values():
            for lease in [state.lease, *state.draining]:
                if lease is not None:
                    total = total + lease.slack(key)
        return total

    def _view(self, charges: Sequence[WindowCharge]) -> dict[UsageKey, Counters]:
        """Each window item's counters as this container knows them (with its pools' items, which hold
        the part of it not leased out), less what this container's own leases hold unused."""
        out: dict[UsageKey, Counters] = {}
        leasing = any(state.lease is not None or state.draining for state in self._keys.values())
        for charge in charges:
            k = (charge.pk, charge.sk)
            total = Amount.of(self._known.get(k, {})) - self._slack(k)
            if charge.scope == "tenant":
                for n in range(POOLS):
                    pool = (pool_pk(charge.pk, n), charge.sk)
                    known = self._known.get(pool)
                    if known is None and not leasing:  # adds nothing: no counters known, no lease's slack
                        continue
                    total = total + Amount.of(known or {}) - self._slack(pool)
            out[k] = total.ceil(ZERO).as_dict()
        return out

    def _refusal(self, plan: QuotaPlan, charge: WindowCharge) -> RateLimitError:
        message = quota.refusal_message(charge)
        used = self._view(plan.charges)
        # The refusing window is spent as far as the caller is concerned.
        used[(charge.pk, charge.sk)] = {**used[(charge.pk, charge.sk)], **charge.limits}
        return RateLimitError(
            message,
            retry_after=charge.window.seconds_to_reset(plan.now),
            headers=quota.ratelimit_headers(plan.charges, used),
        )

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _forget_old(self, now: float) -> None:
        """Drop remembered counters of windows that have ended, and keys idle with nothing held (bounded
        memory in a long-lived container)."""
        if len(self._known) >= 512:
            current = {w.sk for name in quota.WINDOWS for w in quota.windows_over(name, now, now + self.policy.seconds)}
            for key in [k for k in self._known if k[1] not in current]:
                del self._known[key]
        if len(self._keys) >= 256:
            for key, state in list(self._keys.items()):
                if not state.leases() and now - state.last_used > self.policy.hot_seconds:
                    del self._keys[key]
                    self._locks.pop(key, None)


def _keys(charges: Iterable[WindowCharge]) -> tuple[UsageKey, ...]:
    return tuple((c.pk, c.sk) for c in charges)


def _scope_pks(charges: Iterable[WindowCharge]) -> list[str]:
    return list(dict.fromkeys(c.pk for c in charges))


def _key(plan: QuotaPlan) -> str:
    return "|".join(_scope_pks(plan.charges))


def _via_pool(
    charges: Sequence[WindowCharge], pool: int | None
) -> tuple[tuple[WindowCharge, ...], dict[UsageKey, UsageKey]]:
    """The charges with the tenant's window items replaced by pool `pool`'s items (None: unchanged), and
    the route from each replaced item to its pool's."""
    if pool is None:
        return tuple(charges), {}
    out, route = [], {}
    for charge in charges:
        if charge.scope != "tenant" or charge.pool:
            out.append(charge)
            continue
        pooled = WindowCharge(
            charge.scope, pool_pk(charge.pk, pool), charge.window, dict.fromkeys(charge.limits, 0), pool=True
        )
        out.append(pooled)
        route[(charge.pk, charge.sk)] = (pooled.pk, pooled.sk)
    return tuple(out), route


def _bound(charge: WindowCharge, amount: Amount) -> Amount:
    """The counters of `amount` that a limit of the charge bounds (pools hold budget only for those)."""
    return Amount.of({c: v for c, v in amount.as_dict().items() if c in charge.limits})


def _holds(pool: Mapping[str, Any], charge: WindowCharge, amount: Amount) -> bool:
    """Whether a pool's item holds `amount` of every counter the charge's limits bound."""
    return all(-int(pool.get(c, 0) or 0) >= getattr(amount, c) for c in charge.limits)
