"""Quota on DynamoDB (steps 3 and 7): one TransactWriteItems reserves across every window.

Each window item gets `ADD requests, tokens, usd_micros` under the condition that every limited
counter stays within its limit (`counter <= limit - reservation`, or the item is new), and its TTL
on first use. Any failing condition cancels the whole transaction: nothing is charged anywhere, and
the refusing window (from CancellationReasons) gives the 429's retry-after. Settlement adds the
difference between the real usage and the reservation, release adds back the whole reservation; both
are plain ADDs on the items the reservation charged, whatever the clock says by then.

The rate-limit headers need the counters after the reservation, which a successful transaction does
not return; reading them would add a round trip to every request. So this container remembers the
counters that settlements (UpdateItem with UPDATED_NEW) and refusals return, adds its own
reservations on top, and reports that: exact for a single container, an upper bound on `remaining`
with several. Refusals never depend on it: DynamoDB's conditions decide.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.adapters.dynamo_tenancy import Directory, from_item
from gateway.domain import policy, quota
from gateway.domain.catalog import Catalog
from gateway.domain.errors import QuotaContentionError, RateLimitError, ServiceUnavailableError
from gateway.models import tenancy as tenancy_model
from gateway.models.exchange import MessagesRequest, PolicyDecision, Principal, Usage
from gateway.settings import Settings

log = logging.getLogger(__name__)

# Concurrent transactions on the same items can be cancelled with TransactionConflict (no condition
# failed): retry those a few times with jitter before answering 429.
_CONFLICT_RETRIES = 6


@dataclass
class DynamoReservation:
    tenant_id: str
    principal_id: str
    plan: quota.QuotaPlan
    headers: dict[str, str]
    done: bool = False

    @property
    def amount(self) -> quota.Amount:
        return self.plan.amount


class DynamoQuota:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        *,
        client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._clock = clock
        self.directory = Directory.shared(settings, client)
        # (pk, sk) -> counters as this container last knew them (see the module docstring)
        self._known: dict[tuple[str, str], dict[str, int]] = {}

    @property
    def _client(self) -> Any:
        return self.directory.client

    async def reserve(
        self, principal: Principal, decision: PolicyDecision, request: MessagesRequest
    ) -> DynamoReservation:
        record, tenant = await self.directory.pair(principal)
        estimated_cost = decision.entry.cost_usd(
            decision.residency,
            "bedrock",  # Bedrock's geographic profiles are the dearest upstream: an upper bound
            input_tokens=request.estimated_input_tokens,
            output_tokens=request.max_tokens,
            geo_uplift=self._catalog.geo_uplift,
        )
        amount = quota.Amount(
            requests=1,
            tokens=request.estimated_input_tokens + request.max_tokens,
            usd_micros=quota.usd_micros(estimated_cost),
        )
        now = self._clock()
        plan = quota.plan(
            tenant.tenant_id,
            principal.id,
            tenant.limits,
            policy.principal_limits(tenant, record),
            amount,
            now,
        )
        too_big = quota.precheck(plan)
        if too_big is not None:
            raise self._refusal(plan, too_big, alone=True)
        await self._transact(plan)
        for charge in plan.charges:
            counters = self._known.setdefault((charge.pk, charge.sk), {})
            for name, value in amount.as_dict().items():
                counters[name] = counters.get(name, 0) + value
        self._forget_old(now)
        return DynamoReservation(
            tenant_id=tenant.tenant_id,
            principal_id=principal.id,
            plan=plan,
            headers=quota.ratelimit_headers(plan.charges, self._known),
        )

    async def settle(self, reservation: DynamoReservation, usage: Usage, cost_usd: float) -> None:
        real = quota.Amount(
            requests=1,
            tokens=quota.billable_tokens(
                usage.input_tokens, usage.output_tokens, usage.cache_creation_input_tokens
            ),
            usd_micros=quota.usd_micros(cost_usd),
        )
        await self._adjust(reservation, real - reservation.amount)

    async def release(self, reservation: DynamoReservation) -> None:
        await self._adjust(reservation, -reservation.amount)

    def headers(self, reservation: DynamoReservation | None) -> dict[str, str]:
        return dict(reservation.headers) if reservation is not None else {}

    def headers_for(self, principal: Principal) -> dict[str, str]:
        """The headers of a response without a reservation (refusals, count_tokens, /v1/models).

        No DynamoDB call: the limits come from the directory's cache (which resolving the principal
        just filled) and the counters from what this container knows; an uncached tenant gets the
        reset times alone."""
        cached = self.directory.cached_pair(principal)
        if cached is None:
            tenant_limits = own = tenancy_model.Limits()
        else:
            record, tenant = cached
            tenant_limits, own = tenant.limits, policy.principal_limits(tenant, record)
        now = self._clock()
        plan = quota.plan(principal.tenant_id, principal.id, tenant_limits, own, quota.Amount(), now)
        return quota.ratelimit_headers(plan.charges, self._known)

    async def usage_report(self, principal: Principal) -> dict[str, Any]:
        """The caller's tenant (and, when it has its own limits, the caller): used and left per window."""
        record, tenant = await self.directory.pair(principal)
        now = self._clock()
        scopes = [("tenant", quota.tenant_pk(tenant.tenant_id), tenant.limits)]
        own = policy.principal_limits(tenant, record)
        if not own.empty:
            scopes.append(("principal", quota.principal_pk(tenant.tenant_id, principal.id), own))
        sks = [quota.window_at(name, now).sk for name in quota.WINDOWS]
        keys = [{"pk": {"S": pk}, "sk": {"S": sk}} for _, pk, _ in scopes for sk in sks]
        items = await self._call(
            lambda: self._client.batch_get_item(
                RequestItems={self._settings.usage_table: {"Keys": keys, "ConsistentRead": True}}
            )
        )
        found: dict[str, dict[str, dict[str, Any]]] = {}
        for raw in items["Responses"].get(self._settings.usage_table, []):
            item = from_item(raw)
            found.setdefault(item["pk"], {})[item["sk"]] = item
        report: dict[str, Any] = {"tenant_id": tenant.tenant_id}
        for scope, pk, limits in scopes:
            windows = quota.usage_windows(limits, now, found.get(pk, {}))
            if scope == "tenant":
                report["windows"] = windows
            else:
                report["principal"] = {"principal_id": principal.id, "windows": windows}
        return report

    # -- DynamoDB --------------------------------------------------------------------------

    async def _transact(self, plan: quota.QuotaPlan) -> None:
        items = [self._update(charge, plan.amount) for charge in plan.charges]
        for attempt in range(_CONFLICT_RETRIES + 1):
            try:
                await asyncio.to_thread(self._client.transact_write_items, TransactItems=items)
                return
            except Exception as exc:
                reasons = _cancellation_reasons(exc)
                if reasons is None:
                    raise _unavailable(exc) from exc
            refused = [i for i, r in enumerate(reasons) if r.get("Code") == "ConditionalCheckFailed"]
            if refused:
                charge = plan.charges[refused[0]]
                old = reasons[refused[0]].get("Item")
                if old:
                    self._known[(charge.pk, charge.sk)] = _counters(from_item(old))
                raise self._refusal(plan, charge)
            if attempt < _CONFLICT_RETRIES:
                await asyncio.sleep(random.uniform(0.005, 0.02) * (2**attempt))
        raise QuotaContentionError("too many concurrent requests for your quota; retry shortly", retry_after=1)

    def _update(self, charge: quota.WindowCharge, amount: quota.Amount) -> dict[str, Any]:
        names = {f"#{c}": c for c in quota.COUNTERS}
        values: dict[str, Any] = {f":{c}": {"N": str(v)} for c, v in amount.as_dict().items()}
        values[":exp"] = {"N": str(charge.window.expires_at)}
        conditions = []
        for counter, headroom in charge.headroom(amount).items():
            values[f":max_{counter}"] = {"N": str(headroom)}
            conditions.append(f"(attribute_not_exists(#{counter}) OR #{counter} <= :max_{counter})")
        update: dict[str, Any] = {
            "TableName": self._settings.usage_table,
            "Key": {"pk": {"S": charge.pk}, "sk": {"S": charge.sk}},
            "UpdateExpression": "SET expires_at = if_not_exists(expires_at, :exp) "
            "ADD #requests :requests, #tokens :tokens, #usd_micros :usd_micros",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if conditions:
            update["ConditionExpression"] = " AND ".join(conditions)
            update["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        return {"Update": update}

    async def _adjust(self, reservation: DynamoReservation, delta: quota.Amount) -> None:
        """Add `delta` to every item the reservation charged (no condition: settling never refuses)."""
        if reservation.done:
            return
        reservation.done = True
        if not any(delta.as_dict().values()):
            return

        def update(charge: quota.WindowCharge) -> dict[str, Any]:
            return self._client.update_item(
                TableName=self._settings.usage_table,
                Key={"pk": {"S": charge.pk}, "sk": {"S": charge.sk}},
                UpdateExpression="ADD #requests :requests, #tokens :tokens, #usd_micros :usd_micros",
                ExpressionAttributeNames={f"#{c}": c for c in quota.COUNTERS},
                ExpressionAttributeValues={f":{c}": {"N": str(v)} for c, v in delta.as_dict().items()},
                # ALL_NEW: an ADD of 0 may be left out of UPDATED_NEW (moto does), losing a counter.
                ReturnValues="ALL_NEW",
            )

        async def add(charge: quota.WindowCharge) -> dict[str, Any]:
            for attempt in range(_CONFLICT_RETRIES + 1):
                try:
                    return await asyncio.to_thread(update, charge)
                except Exception as exc:
                    # A reservation transaction in flight on the item rejects plain writes; botocore
                    # does not retry that. Wait on the loop, not in the thread: the default executor's
                    # few threads are what the next request's reservation needs.
                    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                    if code != "TransactionConflictException" or attempt == _CONFLICT_RETRIES:
                        raise
                await asyncio.sleep(random.uniform(0.01, 0.05) * (2**attempt))
            raise AssertionError("unreachable")

        results = await asyncio.gather(
            *(add(charge) for charge in reservation.plan.charges), return_exceptions=True
        )
        failed = 0
        for charge, result in zip(reservation.plan.charges, results, strict=True):
            if isinstance(result, BaseException):
                failed += 1
                # Left as reserved: the counter stays above the true usage, never below.
                log.warning("quota adjustment of %s %s failed: %r", charge.pk, charge.sk, result)
                continue
            self._known[(charge.pk, charge.sk)] = _counters(from_item(result.get("Attributes", {})))
        if failed == len(results):
            raise _unavailable(results[0])

    async def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(fn)
        except Exception as exc:
            raise _unavailable(exc) from exc

    def _refusal(
        self, plan: quota.QuotaPlan, charge: quota.WindowCharge, *, alone: bool = False
    ) -> RateLimitError:
        message = quota.refusal_message(charge)
        if alone:
            message = f"this request alone (input + max_tokens) exceeds a limit: {message}"
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


def _counters(item: dict[str, Any]) -> dict[str, int]:
    return {c: int(item.get(c, 0) or 0) for c in quota.COUNTERS}


def _cancellation_reasons(exc: Exception) -> list[dict[str, Any]] | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    if response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return None
    return list(response.get("CancellationReasons") or [])


def _unavailable(exc: BaseException) -> ServiceUnavailableError:
    # Fail closed: without a reservation there is no metered call.
    return ServiceUnavailableError(
        f"the quota store is unavailable ({type(exc).__name__}); nothing was called"
    )
