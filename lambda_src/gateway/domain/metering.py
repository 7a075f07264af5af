"""Quota on the usage store (steps 3 and 7): price, plan and reserve; settle or release; report.

The reservation is priced and planned here, once per request, and the store writes the plan as one
transaction of conditional updates (each counter + reservation <= limit). Settlement adds the
difference between the real usage and the reservation, release adds back the whole reservation.

The rate-limit headers need the counters after the reservation, which a successful transaction does
not return; reading them would add a round trip to every request. So this container remembers the
counters that settlements and refusals return, adds its own reservations on top, and reports that:
exact for a single container, an upper bound on `remaining` with several. Refusals never depend on
it: the store's conditions decide.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from gateway.domain import policy, pricing, quota
from gateway.domain.catalog import Catalog
from gateway.domain.errors import PolicyLimitError, RateLimitError
from gateway.domain.ports import QuotaStore, WindowRefused
from gateway.domain.tenancy import TenancyService
from gateway.models.exchange import MessagesRequest, PolicyDecision, Principal, Usage
from gateway.models.quota import Amount, Counters, QuotaPlan, Reservation, UsageKey, WindowCharge
from gateway.models.tenancy import Limits

log = logging.getLogger(__name__)


class QuotaService:
    def __init__(
        self,
        store: QuotaStore,
        tenancy: TenancyService,
        catalog: Catalog,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.tenancy = tenancy
        self.catalog = catalog
        self.clock = clock
        self._known: dict[UsageKey, Counters] = {}

    async def reserve(self, principal: Principal, decision: PolicyDecision, request: MessagesRequest) -> Reservation:
        record, tenant = await self.tenancy.loaded(principal)
        ceiling = pricing.ceiling(self.catalog, decision, request)
        now = self.clock()
        plan = quota.plan(
            tenant.tenant_id,
            principal.id,
            tenant.limits,
            policy.principal_limits(tenant, record),
            pricing.reservation_amount(*ceiling),
            now,
        )
        too_big = quota.precheck(plan)
        if too_big is not None:  # no amount of waiting makes it fit: the request is at fault
            raise PolicyLimitError(
                f"this request can never fit a limit: it may use {plan.amount.tokens} tokens and "
                f"${plan.amount.usd_micros / quota.MICROS:.6f} (input at most, plus max_tokens), and "
                f"{quota.refusal_message(too_big).removeprefix('rate limit reached: ').split(';')[0]} is lower; "
                "send less input or a smaller max_tokens"
            )
        try:
            await self.store.reserve(plan)
        except WindowRefused as refused:
            charge = plan.charges[refused.index]
            if refused.counters is not None:
                self._known[(charge.pk, charge.sk)] = refused.counters
            raise self._refusal(plan, charge) from None
        for charge in plan.charges:
            counters = self._known.setdefault((charge.pk, charge.sk), {})
            for name, value in plan.amount.as_dict().items():
                counters[name] = counters.get(name, 0) + value
        self._forget_old(now)
        return Reservation(
            tenant_id=tenant.tenant_id,
            principal_id=principal.id,
            plan=plan,
            headers=quota.ratelimit_headers(plan.charges, self._known),
            ceiling=ceiling,
        )

    async def settle(self, reservation: Reservation, usage: Usage, cost_usd: float) -> None:
        await self._adjust(reservation, pricing.charged_amount(usage, cost_usd) - reservation.amount)

    async def release(self, reservation: Reservation) -> None:
        await self._adjust(reservation, -reservation.amount)

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
        return quota.ratelimit_headers(plan.charges, self._known)

    async def usage_report(self, principal: Principal) -> dict[str, Any]:
        """The caller's tenant (and, when it has its own limits, the caller): used and left per window."""
        record, tenant = await self.tenancy.loaded(principal)
        now = self.clock()
        scopes = [("tenant", quota.tenant_pk(tenant.tenant_id), tenant.limits)]
        own = policy.principal_limits(tenant, record)
        if not own.empty:
            scopes.append(("principal", quota.principal_pk(tenant.tenant_id, principal.id), own))
        sks = [quota.window_at(name, now).sk for name in quota.WINDOWS]
        found = await self.store.read([(pk, sk) for _, pk, _ in scopes for sk in sks])
        report: dict[str, Any] = {"tenant_id": tenant.tenant_id}
        for scope, pk, limits in scopes:
            items = {sk: counters for (item_pk, sk), counters in found.items() if item_pk == pk}
            windows = quota.usage_windows(limits, now, items)
            if scope == "tenant":
                report["windows"] = windows
            else:
                report["principal"] = {"principal_id": principal.id, "windows": windows}
        return report

    async def _adjust(self, reservation: Reservation, delta: Amount) -> None:
        if reservation.done:
            return
        reservation.done = True
        if not any(delta.as_dict().values()):
            return
        self._known.update(await self.store.adjust(reservation.plan.charges, delta))

    def _refusal(self, plan: QuotaPlan, charge: WindowCharge) -> RateLimitError:
        message = quota.refusal_message(charge)
        used = {(c.pk, c.sk): self._known.get((c.pk, c.sk), {}) for c in plan.charges}
        # The refusing window is spent as far as the caller is concerned.
        used[(charge.pk, charge.sk)] = {**used[(charge.pk, charge.sk)], **charge.limits}
        return RateLimitError(
            message,
            retry_after=charge.window.seconds_to_reset(plan.now),
            headers=quota.ratelimit_headers(plan.charges, used),
        )

    def _forget_old(self, now: float) -> None:
        """Drop remembered counters of windows that have ended (bounded memory in a long-lived container)."""
        if len(self._known) < 512:
            return
        current = {quota.window_at(name, now).sk for name in quota.WINDOWS}
        for key in [k for k in self._known if k[1] not in current]:
            del self._known[key]
