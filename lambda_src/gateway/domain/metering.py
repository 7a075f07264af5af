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
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
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
from gateway.models.usage_items import hold_home, hold_partitions

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

    # -- the request path ------------------------------------------------------------------------------

    async def reserve(self, principal: Principal, decision: PolicyDecision, request: MessagesRequest) -> Reservation:
        record, tenant = await self.tenancy.loaded(principal)
        ceiling = pricing.ceiling(self.catalog, decision, request)
        now = self.clock()
        own = policy.principal_limits(tenant, record)
        plan = quota.plan(
            tenant.tenant_id, principal.id, tenant.limits, own, pricing.reservation_amount(*ceiling), now
        )
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
        refused = state.refused_at(_keys(plan.charges), plan.amount, now)
        if refused is not None:  # refused a moment ago and nothing given back since: no store call
            raise self._refusal(plan, next(c for c in plan.charges if (c.pk, c.sk) == refused))
        lease: Lease | None = None
        if self._leasing(state, now):
            lease = await self._from_lease(state, plan, (tenant.tenant_id, principal.id), tenant.limits, own)
        if lease is None:
            lease = await self._hold(state, plan)
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
        sks = [quota.window_at(name, now).sk for name in quota.WINDOWS]
        found = await self.store.read([(pk, sk) for _, pk, _ in scopes for sk in sks])
        self._known.update(found)
        report: dict[str, Any] = {"tenant_id": tenant.tenant_id}
        for scope, pk, limits in scopes:
            items = {}
            for (item_pk, sk), counters in found.items():
                if item_pk == pk:
                    items[sk] = (Amount.of(counters) - self._slack((item_pk, sk))).as_dict()
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

    async def _hold(self, state: KeyState, plan: QuotaPlan) -> Lease:
        """The request's own hold: its amount on its window items, in one write; refused when a window
        cannot take it, after reaping other containers' unused leases once."""
        amount = plan.amount
        for attempt in range(2):
            now = self.clock()
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
                contended = await self.store.acquire(grant)
            except ServiceUnavailableError:
                await self._abandon(grant)
                raise
            except WindowRefused as refused:
                charge = plan.charges[refused.index]
                if refused.counters is not None:
                    self._known[(charge.pk, charge.sk)] = refused.counters
                if attempt == 0 and await self._reap(state, plan, charge):
                    continue
                state.refused[(charge.pk, charge.sk)] = (
                    min(charge.window.resets_at.timestamp(), now + self.policy.refused_seconds),
                    amount,
                )
                raise self._refusal(plan, charge) from None
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
        raise AssertionError("unreachable")

    async def _reap(self, state: KeyState, plan: QuotaPlan, charge: WindowCharge) -> bool:
        """Give back what other containers' leases hold on `charge` and have not committed to use: a
        container frozen or gone with a lease keeps no budget from a tenant that needs it."""
        now = self.clock()
        if not self.policy.enabled or now - state.last_reap < self.policy.reap_every:
            return False
        state.last_reap = now
        target = (charge.pk, charge.sk)
        mine = {lease.id for s in self._keys.values() for lease in s.leases()}
        records = await self.store.holds(hold_partitions(_scope_pks(plan.charges)))
        candidates = []
        for record in records:
            if record.key != _key(plan) or record.id in mine or record.kind != LEASE or target not in record.keys:
                continue
            i = record.keys.index(target)
            free = (record.granted[i] - record.committed[i]).ceil(ZERO)
            if free:
                candidates.append((tuple(free.as_dict().values()), record))
        candidates.sort(key=lambda c: c[0], reverse=True)
        reaped = False
        for _, record in candidates[: self.policy.max_reaps]:
            back = HoldReturn(
                record.id,
                record.home,
                record.seq,
                record.keys,
                tuple(c - g for c, g in zip(record.committed, record.granted, strict=True)),
                outcome="reaped",
            )
            if await self.store.give_back(back):
                self._add_known(back.keys, back.deltas)
                reaped = True
        return reaped

    # -- leases ------------------------------------------------------------------------------------------

    def _leasing(self, state: KeyState, now: float) -> bool:
        return self.policy.enabled and now < state.hot_until and now >= state.scarce_until

    def _contended(self, state: KeyState, now: float) -> None:
        if self.policy.enabled:
            state.hot_until = now + self.policy.hot_seconds

    async def _from_lease(
        self, state: KeyState, plan: QuotaPlan, who: tuple[str, str], tenant_limits: Limits, own: Limits
    ) -> Lease | None:
        """Draw the request's amount from this container's lease of the key, renewing it when it cannot
        serve; None when no lease can be had (the key is scarce: the request takes a hold)."""
        keys = _keys(plan.charges)
        async with self._lock(_key(plan)):
            now = self.clock()
            lease = state.lease
            if lease is None or not lease.serves(keys, plan.amount, now):
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
                    lease.gone = True
                    state.lease = None
                    return None
            return lease

    async def _renew(
        self, state: KeyState, plan: QuotaPlan, who: tuple[str, str], tenant_limits: Limits, own: Limits
    ) -> Lease:
        """A new lease of the key over the next `seconds`; the old one, if no request uses it any more,
        given back in the same write."""
        now = self.clock()
        end = now + self.policy.seconds
        charges = quota.charges_over(*who, tenant_limits, own, now, end)
        amounts = self.policy.lease_amounts(
            charges, plan.amount, state.rate(now, self.policy.seconds), state.concurrency(), now, end
        )
        first = set(_keys(plan.charges))
        committed = tuple(
            self.policy.commit_target(a, plan.amount if (c.pk, c.sk) in first else ZERO)
            for c, a in zip(charges, amounts, strict=True)
        )
        old = state.lease
        state.lease = None
        returning = None
        if old is not None:
            old.closed = True
            if old.in_flight == 0 and old.live:
                returning = old
            elif old.live:
                state.draining.append(old)
        for attempt in range(2):
            lease_id = self._new_id()
            grant = HoldGrant(
                id=lease_id,
                kind=LEASE,
                home=hold_home(_scope_pks(charges), LEASE, lease_id, end),
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
                contended = await self.store.acquire(grant, back)
            except HoldGone:
                assert returning is not None
                returning.gone = True
                returning = None
                if attempt == 0:
                    continue
                raise
            except WindowRefused:
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
            if back is not None and returning is not None:
                returning.returned = True
                self._add_known(back.keys, back.deltas)
            if contended:
                self._contended(state, now)
            lease = Lease(grant)
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

    async def _commit(self, lease: Lease) -> None:
        commit = lease.next_commit(self.policy)
        try:
            await self.store.commit(commit)
        except HoldGone:
            lease.gone = True
            raise
        lease.committed_to(commit)
        if commit.extra:
            self._add_known(commit.keys, commit.extra)

    async def _give_back(self, lease: Lease) -> None:
        back = lease.give_back()
        lease.returned = True
        if await self.store.give_back(back):
            self._add_known(back.keys, back.deltas)
        else:
            lease.gone = True

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
        state.sample(now, charged, self.policy.seconds)
        if lease.kind == HOLD:
            lease.settle(keys, delta)
            state.holds.discard(lease)
            if delta:  # charged what it reserved: the hold stands as it is, no write
                await self._give_back(lease)
                if charged.within(reservation.amount):
                    self._gave_back(state, keys)
            await self._end_leases(now)
            return
        async with self._lock(lease.key):
            lease.settle(keys, delta)
            if delta and charged.within(reservation.amount):
                self._gave_back(state, keys)
            if lease.gone:
                extra = delta.ceil(ZERO)
                if extra:  # charged beyond the reservation, and the lease was reaped: charge it directly
                    await self._charge(reservation.plan, extra)
            elif lease.uncommitted(keys):  # charged beyond its commitment (more than was reserved)
                try:
                    await self._commit(lease)
                except HoldGone:
                    extra = delta.ceil(ZERO)
                    if extra:
                        await self._charge(reservation.plan, extra)
            if lease.closed and lease.in_flight == 0 and lease.live:
                await self._give_back(lease)
            if lease in state.draining and lease.in_flight == 0:
                state.draining.remove(lease)
        await self._end_leases(now)

    def _gave_back(self, state: KeyState, keys: Sequence[UsageKey]) -> None:
        """A settlement returned budget: a local refusal on these items no longer stands."""
        for k in keys:
            state.refused.pop(k, None)

    async def _charge(self, plan: QuotaPlan, extra: Amount) -> None:
        """Charge `extra` to the plan's window items whatever the limits: usage that already happened."""
        now = self.clock()
        hold_id = self._new_id()
        charges = tuple(WindowCharge(c.scope, c.pk, c.window, {}) for c in plan.charges)
        grant = HoldGrant(
            id=hold_id,
            kind=HOLD,
            home=hold_home(_scope_pks(charges), HOLD, hold_id, now),
            key=_key(plan),
            charges=charges,
            amounts=(extra,) * len(charges),
            committed=(extra,) * len(charges),
            ends_at=now,
            expires_at=int(now + self.policy.retention),
            owner=self.owner,
        )
        await self.store.acquire(grant)
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
        """Each item's counters as this container knows them, less what its own leases hold unused."""
        out: dict[UsageKey, Counters] = {}
        for charge in charges:
            k = (charge.pk, charge.sk)
            out[k] = (Amount.of(self._known.get(k, {})) - self._slack(k)).ceil(ZERO).as_dict()
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

