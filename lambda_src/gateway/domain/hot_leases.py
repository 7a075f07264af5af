"""This container's leases of hot keys: drawing from a lease (a commit first when the draw passes what the
lease committed), renewing it, settling into it, giving it back, and reaping what other containers' leases
hold unused. Whether a key's requests lease at all is hot_keys.py's decision.

The bookkeeping and sizing are leases.py's, without I/O; this has the store write what they decide, each
write exactly once. A lease comes from the container's pool (tenant_pools.py) when the policy has pools.
Design and bounds: docs/tenancy.md ("Hot tenants") and docs/decisions/quota-hot-tenants.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from gateway.domain import quota
from gateway.domain.errors import QuotaContentionError, ServiceUnavailableError
from gateway.domain.hot_keys import HotKeys
from gateway.domain.leases import ZERO, KeyState, Lease
from gateway.domain.metering_state import MeteringState, key_of, keys_of, scope_pks
from gateway.domain.ports import HoldGone, WindowRefused
from gateway.domain.tenant_pools import TenantPools, via_pool
from gateway.models.quota import LEASE, Amount, HoldGrant, HoldReturn, QuotaPlan, UsageKey, WindowCharge
from gateway.models.tenancy import Limits
from gateway.models.usage_items import POOLS, hold_home, hold_partitions, pool_pk

log = logging.getLogger(__name__)


class HotLeases:
    def __init__(self, shared: MeteringState, hot: HotKeys, pools: TenantPools) -> None:
        self.shared = shared
        self.hot = hot
        self.pools = pools

    # -- drawing from a lease ----------------------------------------------------------------------------

    async def from_lease(
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
        keys = keys_of(plan.charges)
        async with self.shared.lock(key_of(plan)):
            now = self.shared.clock()
            lease = state.lease
            if lease is None or not lease.serves(keys, plan.amount, now):
                if not renew:
                    return None
                try:
                    lease = await self._renew(state, plan, who, tenant_limits, own)
                except WindowRefused:
                    state.scarce_until = now + self.shared.policy.scarce_seconds
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
        shared, policy = self.shared, self.shared.policy
        now = shared.clock()
        end = now + policy.seconds
        windows = quota.charges_over(*who, tenant_limits, own, now, end)
        pool = self.pools.home() if policy.pools else None
        charges, route = via_pool(windows, pool)
        old = state.lease
        exhausted = old is not None and now < old.grant.ends_at
        state.lease_requests = policy.next_requests(state.lease_requests, exhausted, state.request_rate(now))
        amounts = policy.lease_amounts(
            windows,
            plan.amount,
            state.per_request or plan.amount,
            state.lease_requests,
            state.concurrency(),
            now,
            end,
        )
        first = {route.get(k, k) for k in keys_of(plan.charges)}
        committed = tuple(
            policy.commit_target(a, plan.amount if (c.pk, c.sk) in first else ZERO)
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
            lease_id = shared.new_id()
            grant = HoldGrant(
                id=lease_id,
                kind=LEASE,
                home=hold_home(scope_pks(windows), LEASE, lease_id, end),
                key=key_of(plan),
                charges=charges,
                amounts=amounts,
                committed=committed,
                ends_at=end,
                expires_at=int(end + policy.retention),
                owner=shared.owner,
            )
            back = returning.give_back() if returning is not None else None
            try:
                contended = (await shared.store.acquire(grant, back)).contended
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
                        await self.pools.refill(pool, plan, windows, charges, amounts)
                        continue
                    except WindowRefused:
                        pass
                if returning is not None:  # the old lease was not given back either: give it back alone
                    try:
                        await self.give_back(returning)
                    except Exception:
                        log.warning("giving back a lease failed", exc_info=True)
                raise
            except QuotaContentionError:
                self.hot.contended(state, now)
                if returning is not None:
                    state.lease = returning
                    returning.closed = False
                raise
            except ServiceUnavailableError:
                await shared.abandon(grant)
                if returning is not None:
                    try:
                        await self.give_back(returning)
                    except Exception:
                        log.warning("giving back a lease failed", exc_info=True)
                raise
            shared.counts["leases"] += 1
            if back is not None and returning is not None:
                returning.returned = True
                shared.add_known(back.keys, back.deltas)
            if contended:
                self.hot.contended(state, now)
            lease = Lease(grant, route)
            state.lease = lease
            shared.add_known(grant.keys, grant.amounts)
            return lease
        raise AssertionError("unreachable")

    async def _commit(self, lease: Lease) -> None:
        commit = lease.next_commit(self.shared.policy)
        await self.shared.store.commit(commit)
        self.shared.counts["commits"] += 1
        lease.committed_to(commit)
        if commit.extra:
            self.shared.add_known(commit.keys, commit.extra)

    # -- the end of a request, and of a lease ------------------------------------------------------------

    async def settle(
        self, state: KeyState, lease: Lease, keys: Sequence[UsageKey], delta: Amount, *, returned: bool
    ) -> None:
        """A request drawn from `lease` ended, charged `delta` more than it reserved (`returned`: it gave
        budget back): in memory, but for a lease reaped meanwhile or a charge beyond its commitment."""
        async with self.shared.lock(lease.key):
            lease.settle(keys, delta)
            if returned:
                state.forget_refusals(keys)
            if lease.gone:
                # Reaped while this request was in flight: the reaper left its reservation charged.
                await self._adjust(lease.key, lease.charges_for(keys), [delta] * len(keys))
            elif lease.uncommitted(keys):  # charged beyond its commitment (more than was reserved)
                try:
                    await self._commit(lease)
                except HoldGone:
                    await self._lost(lease)
            if lease.closed and lease.in_flight == 0 and lease.live:
                await self.give_back(lease)
            if lease in state.draining and lease.in_flight == 0:
                state.draining.remove(lease)

    async def give_back(self, lease: Lease) -> None:
        """Give back a lease, or a request's own hold (settled or released)."""
        shared = self.shared
        back = lease.give_back()
        lease.returned = True
        shared.counts["give_backs"] += 1
        try:
            written = await shared.store.give_back(back)
        except QuotaContentionError:
            self.hot.contended(shared.key_state(lease.key), shared.clock())
            raise
        if written.applied:
            shared.add_known(back.keys, back.deltas)
        elif lease.kind == LEASE:
            await self._lost(lease)
        else:
            lease.gone = True
        if written.contended:
            self.hot.contended(shared.key_state(lease.key), shared.clock())

    async def _locked_give_back(self, key: str, lease: Lease) -> None:
        async with self.shared.lock(key):
            if lease.live and lease.in_flight == 0:
                await self.give_back(lease)
            state = self.shared.keys.get(key)
            if state is not None:
                if state.lease is lease:
                    state.lease = None
                if lease in state.draining:
                    state.draining.remove(lease)

    async def _lost(self, lease: Lease) -> None:
        """The lease was reaped: the reaper gave back all it had not committed and left the committed part
        charged. Give back (or charge) the difference between that and what its requests used: a request
        in flight is committed at its reservation, and settles later with `_adjust`."""
        if lease.gone:
            return
        lease.gone = True
        self.shared.counts["lost"] += 1
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
        shared = self.shared
        grant = shared.ended_hold(key.split("|"), key, [c for c, _ in pairs], [d for _, d in pairs], shared.clock())
        await shared.store.acquire(grant)
        shared.counts["adjustments"] += 1
        shared.add_known(grant.keys, grant.amounts)

    async def end_leases(self, now: float) -> None:
        """Give back leases that have ended and that no request uses, at the end of a request: a container
        that goes on serving other keys does not keep budget it no longer draws from."""
        for key, state in list(self.shared.keys.items()):
            lease = state.lease
            if lease is not None and now >= lease.grant.ends_at and lease.in_flight == 0 and lease.live:
                try:
                    await self._locked_give_back(key, lease)
                except Exception:  # it ended: a later request, the container's stop or a reaper gives it back
                    log.warning("giving back an ended lease failed", exc_info=True)

    async def close(self) -> None:
        """The container stops: give back every lease it holds that no request is using."""
        backs = []
        for key, state in self.shared.keys.items():
            for lease in [state.lease, *state.draining]:
                if lease is not None and lease.live and lease.in_flight == 0:
                    backs.append(self._locked_give_back(key, lease))
        for result in await asyncio.gather(*backs, return_exceptions=True):
            if isinstance(result, BaseException):
                log.warning("giving back a lease failed: %r", result)

    # -- other containers' leases ------------------------------------------------------------------------

    async def reap(self, state: KeyState, plan: QuotaPlan, charge: WindowCharge) -> bool:
        """Give back what other containers' leases hold on `charge` and have not committed to use: a
        container frozen or gone with a lease keeps no budget from a tenant that needs it."""
        shared = self.shared
        now = shared.clock()
        if not shared.policy.enabled or now - state.last_reap < shared.policy.reap_every:
            return False
        state.last_reap = now
        # Its budget is on this item, or on one of its pools' items for the same window.
        family = {charge.pk} | ({pool_pk(charge.pk, n) for n in range(POOLS)} if charge.scope == "tenant" else set())
        mine = {lease.id for s in shared.keys.values() for lease in s.leases()}
        records = await shared.store.holds(hold_partitions(scope_pks(plan.charges)))
        candidates = []
        for record in records:
            if record.key != key_of(plan) or record.id in mine or record.kind != LEASE:
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
        for _, record in candidates[: shared.policy.max_reaps]:
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
            if (await shared.store.give_back(back)).applied:
                shared.add_known(back.keys, back.deltas)
                shared.counts["reaped"] += 1
                reaped = True
        return reaped
