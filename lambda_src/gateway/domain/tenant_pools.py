"""A hot tenant's pools: budget its pools take from its window items, for this container's leases (a refill),
for a request's own hold near the limit (a pool hold), or back to the window items (a drain).

The tenant has `usage_items.POOLS` pools, items `USAGE#<tenant>#S<n>` with the window items' sks, each
holding (negative) budget it took from the window items within their limits; containers spread over them,
each starting at its own (docs/tenancy.md, "Hot tenants"). A refill or a drain is a hold that ends as it is
taken (MeteringState.ended_hold), so that it takes effect exactly once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.domain.errors import QuotaContentionError
from gateway.domain.leases import ZERO, KeyState, Lease
from gateway.domain.metering_state import MeteringState, key_of, keys_of
from gateway.domain.ports import WindowRefused
from gateway.models.quota import Amount, QuotaPlan, UsageKey, WindowCharge
from gateway.models.usage_items import POOLS, pool_pk


class TenantPools:
    def __init__(self, shared: MeteringState) -> None:
        self.shared = shared

    def home(self) -> int:
        """This container's pool: its leases come from it (containers spread over the pools)."""
        return int.from_bytes(hashlib.sha256(self.shared.owner.encode()).digest()[:4], "big") % POOLS

    async def refill(
        self,
        pool: int,
        plan: QuotaPlan,
        windows: Sequence[WindowCharge],
        charges: Sequence[WindowCharge],
        amounts: Sequence[Amount],
    ) -> None:
        """The pool takes budget from the window items (within their limits) for the lease it could not
        grant: `refill_leases` of it at a time, or, if that does not fit, just that lease."""
        shared = self.shared
        pairs = [(w, c, a) for w, c, a in zip(windows, charges, amounts, strict=True) if c.pool]
        for size in ("refill", "lease"):
            now = shared.clock()
            # Every counter moves (the window item stays at or above what was used); only the limited ones
            # bind a pool's takes.
            chunks = tuple(shared.policy.refill_amount(w, a) if size == "refill" else a for w, _, a in pairs)
            grant = shared.ended_hold(
                [pairs[0][0].pk],
                f"pool{pool}|{key_of(plan)}",
                [w for w, _, _ in pairs],
                chunks,
                now,
                credits=tuple((c, -chunk) for (_, c, _), chunk in zip(pairs, chunks, strict=True)),
            )
            try:
                await shared.store.acquire(grant)
            except WindowRefused:
                if size == "lease":
                    raise
                continue
            shared.counts["refills"] += 1
            shared.add_known(grant.keys, chunks)
            shared.add_known([(c.pk, c.sk) for _, c, _ in pairs], [-chunk for chunk in chunks])
            return

    async def hold(self, state: KeyState, plan: QuotaPlan, *, drain: bool) -> Lease | bool:
        """Near the limit the window items may be spent while pools still hold some of it: the request's
        own hold, from a pool that holds enough for it (one read finds which); or, when none holds enough
        alone but together they would (`drain`), True once they have given it all back to the window items.
        False: the pools hold too little."""
        shared = self.shared
        if not shared.policy.pools or not (state.hot_until or state.tenant_hot_until):
            return False
        tenant = [c for c in plan.charges if c.scope == "tenant"]
        keys = [(pool_pk(c.pk, n), c.sk) for n in range(POOLS) for c in tenant]
        found = await shared.store.read(keys)
        shared.counts["pool_reads"] += 1
        shared.known.update(found)
        amount = plan.amount
        home = self.home()  # containers start at their own pool, so that they do not all meet at one
        holding = [
            n
            for n in ((home + i) % POOLS for i in range(POOLS))
            if all(_holds(found.get((pool_pk(c.pk, n), c.sk), {}), c, amount) for c in tenant)
        ]
        for n in holding:
            charges, route = via_pool(plan.charges, n)
            grant = shared.request_hold(plan, charges, shared.clock())
            try:
                async with shared.lock(f"hold:{grant.key}"):
                    await shared.store.acquire(grant, patient=False)
            except (WindowRefused, QuotaContentionError):
                continue  # another container took it first, or is taking some: the next pool
            shared.counts["pool_holds"] += 1
            hold = Lease(grant, route)
            hold.take(keys_of(plan.charges), amount)
            state.holds.add(hold)
            shared.add_known(grant.keys, grant.amounts)
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
        shared = self.shared
        now = shared.clock()
        pools = [
            (WindowCharge(c.scope, pool_pk(c.pk, n), c.window, dict.fromkeys(c.limits, 0), pool=True), amount)
            for c, n, amount in held
        ]
        grant = shared.ended_hold(
            [plan.charges[0].pk],
            f"drain|{key_of(plan)}",
            [c for c, _ in pools],
            [a for _, a in pools],
            now,
            credits=tuple((WindowCharge(c.scope, c.pk, c.window), -amount) for c, _, amount in held),
        )
        try:
            await shared.store.acquire(grant, patient=False)
        except (WindowRefused, QuotaContentionError):
            return False
        shared.counts["drains"] += 1
        shared.add_known(grant.keys, grant.amounts)
        shared.add_known([(c.pk, c.sk) for c, _, _ in held], [-a for _, _, a in held])
        return True


def via_pool(
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
