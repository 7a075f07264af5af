"""What a container's quota code shares: one object that metering.py (the service and its requests' holds),
hot_leases.py (this container's leases of hot keys) and tenant_pools.py (a hot tenant's pools) each hold,
so that none reaches into another's privates. It has the store they write to, the clock, the lease policy,
this container's state of each key (leases.KeyState), its locks, what it wrote, and its view of the window
counters.

The rate-limit headers need the window counters, which a transaction does not return; reading them would
add a round trip to every request. So this container keeps its own view of them: what its own grants and
returns added, corrected by what refusals and usage reports read, less what its own leases hold unused.
Exact for a single container, optimistic (an upper bound on `remaining`) with several. Refusals never
depend on it: the store's conditions decide.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from gateway.domain import quota
from gateway.domain.leases import ZERO, KeyState, LeasePolicy
from gateway.domain.ports import QuotaStore
from gateway.models.quota import HOLD, Amount, Counters, HoldGrant, HoldReturn, QuotaPlan, UsageKey, WindowCharge
from gateway.models.usage_items import POOLS, hold_home, pool_pk

log = logging.getLogger(__name__)


class MeteringState:
    def __init__(
        self,
        store: QuotaStore,
        *,
        clock: Callable[[], float],
        policy: LeasePolicy,
        owner: str,
        new_id: Callable[[], str],
    ) -> None:
        self.store = store
        self.clock = clock
        self.policy = policy
        self.owner = owner
        self.new_id = new_id
        self.known: dict[UsageKey, Counters] = {}
        self.keys: dict[str, KeyState] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        # What this container wrote, by kind (for the benchmark and the tests; no I/O).
        self.counts: Counter[str] = Counter()

    def key_state(self, key: str) -> KeyState:
        return self.keys.setdefault(key, KeyState())

    def lock(self, key: str) -> asyncio.Lock:
        lock = self.locks.get(key)
        if lock is None:
            lock = self.locks[key] = asyncio.Lock()
        return lock

    # -- grants that every part makes --------------------------------------------------------------------

    def request_hold(self, plan: QuotaPlan, charges: Sequence[WindowCharge], now: float) -> HoldGrant:
        """One request's own hold of its amount on `charges` (its window items, or a pool's in their place)."""
        hold_id = self.new_id()
        ends_at = now + self.policy.hold_seconds
        return HoldGrant(
            id=hold_id,
            kind=HOLD,
            home=hold_home(scope_pks(plan.charges), HOLD, hold_id, ends_at),
            key=key_of(plan),
            charges=tuple(charges),
            amounts=(plan.amount,) * len(charges),
            committed=(plan.amount,) * len(charges),
            ends_at=ends_at,
            expires_at=int(ends_at + self.policy.hold_retention),
            owner=self.owner,
        )

    def ended_hold(
        self,
        scopes: Sequence[str],
        key: str,
        charges: Sequence[WindowCharge],
        amounts: Sequence[Amount],
        now: float,
        credits: tuple[tuple[WindowCharge, Amount], ...] = (),
    ) -> HoldGrant:
        """A hold that ends as it is taken, never given back: how budget moves between items (a pool's
        refill or drain) or usage is added (an adjustment), exactly once."""
        hold_id = self.new_id()
        return HoldGrant(
            id=hold_id,
            kind=HOLD,
            home=hold_home(scopes, HOLD, hold_id, now),
            key=key,
            charges=tuple(charges),
            amounts=tuple(amounts),
            committed=tuple(amounts),
            ends_at=now,
            expires_at=int(now + self.policy.hold_retention),
            owner=self.owner,
            credits=credits,
        )

    async def abandon(self, grant: HoldGrant) -> None:
        """A grant whose outcome stayed unknown: give it back if it happened (its state item's condition
        makes this a no-op if it did not), so that it does not stay charged with no request behind it."""
        back = HoldReturn(grant.id, grant.home, 0, grant.keys, tuple(-a for a in grant.amounts))
        try:
            await self.store.give_back(back)
        except Exception:  # still unreachable: it stays charged, counters above the true usage
            log.warning("could not give back a grant whose outcome is unknown", exc_info=True)

    # -- this container's view of the counters -----------------------------------------------------------

    def add_known(self, keys: Iterable[UsageKey], amounts: Iterable[Amount]) -> None:
        for k, amount in zip(keys, amounts, strict=True):
            self.known[k] = (Amount.of(self.known.get(k, {})) + amount).as_dict()

    def slack(self, key: UsageKey) -> Amount:
        total = ZERO
        for state in self.keys.values():
            for lease in [state.lease, *state.draining]:
                if lease is not None:
                    total = total + lease.slack(key)
        return total

    def view(self, charges: Sequence[WindowCharge]) -> dict[UsageKey, Counters]:
        """Each window item's counters as this container knows them (with its pools' items, which hold
        the part of it not leased out), less what this container's own leases hold unused."""
        out: dict[UsageKey, Counters] = {}
        leasing = any(state.lease is not None or state.draining for state in self.keys.values())
        for charge in charges:
            k = (charge.pk, charge.sk)
            total = Amount.of(self.known.get(k, {})) - self.slack(k)
            if charge.scope == "tenant":
                for n in range(POOLS):
                    pool = (pool_pk(charge.pk, n), charge.sk)
                    known = self.known.get(pool)
                    if known is None and not leasing:  # adds nothing: no counters known, no lease's slack
                        continue
                    total = total + Amount.of(known or {}) - self.slack(pool)
            out[k] = total.ceil(ZERO).as_dict()
        return out

    def forget_old(self, now: float) -> None:
        """Drop remembered counters of windows that have ended, and keys idle with nothing held (bounded
        memory in a long-lived container)."""
        if len(self.known) >= 512:
            current = {w.sk for name in quota.WINDOWS for w in quota.windows_over(name, now, now + self.policy.seconds)}
            for key in [k for k in self.known if k[1] not in current]:
                del self.known[key]
        if len(self.keys) >= 256:
            for key, state in list(self.keys.items()):
                if not state.leases() and now - state.last_used > self.policy.hot_seconds:
                    del self.keys[key]
                    self.locks.pop(key, None)
                    self.locks.pop(f"hold:{key}", None)


def keys_of(charges: Iterable[WindowCharge]) -> tuple[UsageKey, ...]:
    return tuple((c.pk, c.sk) for c in charges)


def scope_pks(charges: Iterable[WindowCharge]) -> list[str]:
    return list(dict.fromkeys(c.pk for c in charges))


def key_of(plan: QuotaPlan) -> str:
    """The key a plan charges: its scopes' pks, joined (leases and holds of one key are interchangeable)."""
    return "|".join(scope_pks(plan.charges))
