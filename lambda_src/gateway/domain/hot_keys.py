"""When a key's requests draw from leases rather than take holds: while the key is hot (its items met
contention, here or, through the tenant's QUOTA#HOT mark, in any container) and its limits have plenty of
room. Marking the tenant hot is this container's part of telling the others (docs/tenancy.md, "Hot
tenants").
"""

from __future__ import annotations

import logging

from gateway.domain.leases import KeyState
from gateway.domain.metering_state import MeteringState
from gateway.models.quota import QuotaPlan

log = logging.getLogger(__name__)


class HotKeys:
    def __init__(self, shared: MeteringState) -> None:
        self.shared = shared

    def is_hot(self, state: KeyState, now: float) -> bool:
        return self.shared.policy.enabled and now < max(state.hot_until, state.tenant_hot_until)

    def leasing(self, state: KeyState, now: float) -> bool:
        return self.is_hot(state, now) and now >= state.scarce_until

    def plenty(self, plan: QuotaPlan) -> bool:
        """Whether every limit the plan meets has room for `plenty` of its reservations, as far as this
        container knows."""
        view = self.shared.view(plan.charges)
        for charge in plan.charges:
            used = view[(charge.pk, charge.sk)]
            for counter, limit in charge.limits.items():
                if limit - used.get(counter, 0) < self.shared.policy.plenty * getattr(plan.amount, counter):
                    return False
        return True

    def contended(self, state: KeyState, now: float) -> None:
        policy = self.shared.policy
        self.shared.counts["contended"] += 1
        if policy.enabled:
            state.hot_until = now + policy.hot_seconds
            # Containers that start now learn it with the tenant they load, and lease from their first request.
            if state.tenant_id and state.tenant_hot_until < now + policy.hot_seconds / 2:
                state.mark_due = True

    async def mark(self, state: KeyState) -> None:
        """Mark the tenant hot, when this container met contention and the mark it knows is getting old."""
        if not state.mark_due:
            return
        state.mark_due = False
        shared = self.shared
        until = shared.clock() + shared.policy.hot_seconds
        state.tenant_hot_until = until
        try:
            await shared.store.mark_hot(state.tenant_id, until, unless_after=until - shared.policy.hot_seconds / 2)
            shared.counts["marked_hot"] += 1
        except Exception:  # advisory: containers learn it from their own contention anyway
            log.warning("marking the tenant's quota hot failed", exc_info=True)
