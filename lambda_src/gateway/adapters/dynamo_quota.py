"""The usage table as a QuotaStore: a plan's reservation in one TransactWriteItems, adjustments as
UpdateItems, reports with one BatchGetItem. The plan (what to charge, within which bounds) comes from
domain/metering.py; this module only writes and reads it.

Each window item gets `ADD requests, tokens, usd_micros` under the condition that every limited counter
stays within its limit (`counter <= limit - reservation`, or the item is new), and its TTL on first
use. Any failing condition cancels the whole transaction: nothing is charged anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import Any

from gateway.adapters import aws
from gateway.adapters.dynamo_codec import from_item
from gateway.domain.errors import QuotaContentionError, ServiceUnavailableError
from gateway.domain.ports import WindowRefused
from gateway.models import usage_items
from gateway.models.quota import Amount, Counters, QuotaPlan, UsageKey, WindowCharge
from gateway.settings import Settings

log = logging.getLogger(__name__)

# Concurrent transactions on the same items can be cancelled with TransactionConflict (no condition
# failed): retry those a few times with jitter before answering 429.
_CONFLICT_RETRIES = 6
_NAMES = {f"#{c}": c for c in usage_items.COUNTERS}


class DynamoQuotaStore:
    def __init__(self, settings: Settings, *, client: Any = None) -> None:
        self._table = settings.usage_table
        self._region = settings.region
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.dynamodb(self._region)
        return self._client

    async def reserve(self, plan: QuotaPlan) -> None:
        items = [self._update(charge, plan.amount) for charge in plan.charges]
        for attempt in range(_CONFLICT_RETRIES + 1):
            try:
                await asyncio.to_thread(self.client.transact_write_items, TransactItems=items)
                return
            except Exception as exc:
                reasons = _cancellation_reasons(exc)
                if reasons is None:
                    raise _unavailable(exc) from exc
            refused = [i for i, r in enumerate(reasons) if r.get("Code") == "ConditionalCheckFailed"]
            if refused:
                old = reasons[refused[0]].get("Item")
                raise WindowRefused(refused[0], usage_items.counters(from_item(old)) if old else None)
            if attempt < _CONFLICT_RETRIES:
                await asyncio.sleep(random.uniform(0.005, 0.02) * (2**attempt))
        raise QuotaContentionError("too many concurrent requests for your quota; retry shortly", retry_after=1)

    def _update(self, charge: WindowCharge, amount: Amount) -> dict[str, Any]:
        values: dict[str, Any] = {f":{c}": {"N": str(v)} for c, v in amount.as_dict().items()}
        values[":exp"] = {"N": str(charge.window.expires_at)}
        conditions = []
        for counter, headroom in charge.headroom(amount).items():
            values[f":max_{counter}"] = {"N": str(headroom)}
            conditions.append(f"(attribute_not_exists(#{counter}) OR #{counter} <= :max_{counter})")
        update: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"pk": {"S": charge.pk}, "sk": {"S": charge.sk}},
            "UpdateExpression": f"SET {usage_items.TTL_ATTRIBUTE} = if_not_exists({usage_items.TTL_ATTRIBUTE}, :exp) "
            "ADD #requests :requests, #tokens :tokens, #usd_micros :usd_micros",
            "ExpressionAttributeNames": _NAMES,
            "ExpressionAttributeValues": values,
        }
        if conditions:
            update["ConditionExpression"] = " AND ".join(conditions)
            update["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        return {"Update": update}

    async def adjust(self, charges: Sequence[WindowCharge], delta: Amount) -> dict[UsageKey, Counters]:
        def update(charge: WindowCharge) -> dict[str, Any]:
            return self.client.update_item(
                TableName=self._table,
                Key={"pk": {"S": charge.pk}, "sk": {"S": charge.sk}},
                UpdateExpression="ADD #requests :requests, #tokens :tokens, #usd_micros :usd_micros",
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues={f":{c}": {"N": str(v)} for c, v in delta.as_dict().items()},
                # ALL_NEW: an ADD of 0 may be left out of UPDATED_NEW (moto does), losing a counter.
                ReturnValues="ALL_NEW",
            )

        async def add(charge: WindowCharge) -> dict[str, Any]:
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

        results = await asyncio.gather(*(add(charge) for charge in charges), return_exceptions=True)
        after: dict[UsageKey, Counters] = {}
        for charge, result in zip(charges, results, strict=True):
            if isinstance(result, BaseException):
                # Left as reserved: the counter stays above the true usage, never below.
                log.warning("quota adjustment of %s %s failed: %r", charge.pk, charge.sk, result)
                continue
            after[(charge.pk, charge.sk)] = usage_items.counters(from_item(result.get("Attributes", {})))
        if not after and charges:
            raise _unavailable(next(r for r in results if isinstance(r, BaseException)))
        return after

    async def read(self, keys: Sequence[UsageKey]) -> dict[UsageKey, Counters]:
        request = [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in keys]
        try:
            got = await asyncio.to_thread(
                self.client.batch_get_item,
                RequestItems={self._table: {"Keys": request, "ConsistentRead": True}},
            )
        except Exception as exc:
            raise _unavailable(exc) from exc
        out: dict[UsageKey, Counters] = {}
        for raw in got["Responses"].get(self._table, []):
            item = from_item(raw)
            out[(item["pk"], item["sk"])] = usage_items.counters(item)
        return out


def _cancellation_reasons(exc: Exception) -> list[dict[str, Any]] | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    if response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return None
    return list(response.get("CancellationReasons") or [])


def _unavailable(exc: BaseException) -> ServiceUnavailableError:
    # Fail closed: without a reservation there is no metered call.
    return ServiceUnavailableError(f"the quota store is unavailable ({type(exc).__name__}); nothing was called")
