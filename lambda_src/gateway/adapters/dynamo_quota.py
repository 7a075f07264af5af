"""The usage table as a QuotaStore: holds and leases written as single transactions, each exactly once.

What to write comes from the domain (metering.py, hot_leases.py, tenant_pools.py, leases.py); this module only
writes and reads it.

- acquire: one TransactWriteItems that adds the grant to each window item (conditional: every limited
  counter stays within its limit, or the item is new, created with its TTL), creates the hold's state item
  (conditional: it does not exist yet), and, for a renewal, gives the old lease back (conditional: it is
  still active at the sequence number its holder knows).
- give_back: one TransactWriteItems that adds used - granted to each window item and flips the state item
  (a hold's to `returned`; a lease's is deleted, so that reapers read only live leases), conditional on
  its being active at the known sequence number.
- commit: one conditional UpdateItem of a lease's state item (a transaction when it grows the grant).

Exactly once (docs/tenancy.md, "Exactly once"): every transaction carries a ClientRequestToken derived from
the hold, the operation and the attempt, never left to the SDK. An answer that never came (a read timeout,
a dropped connection, a 5xx) is an unknown outcome: the same transaction is sent again with the same token,
which DynamoDB applies at most once within ten minutes; past that, the state item's condition makes a
repeat fail, which means it already happened. A definite failure (a conflict, throttling) starts a new
attempt with a new token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from gateway.adapters import aws
from gateway.adapters.aws_loop import call
from gateway.adapters.dynamo_codec import from_item
from gateway.domain.errors import QuotaContentionError, ServiceUnavailableError
from gateway.domain.ports import HoldGone, WindowRefused
from gateway.models import tenant_items, usage_items
from gateway.models.quota import (
    ACTIVE,
    LEASE,
    Amount,
    Counters,
    HoldCommit,
    HoldGrant,
    HoldRecord,
    HoldReturn,
    UsageKey,
    WindowCharge,
    Written,
)
from gateway.settings import Settings

log = logging.getLogger(__name__)

_NAMES = {f"#{c}": c for c in usage_items.COUNTERS}
_STATE_NAMES = {"#state": "state", "#seq": "seq"}
# Contention (conflicting transactions, a hot partition's throttling) is retried with jittered backoff
# for this long before the caller gets a 429.
CONTENTION_SECONDS = 3.0
# A settlement or release runs once the caller has its reply, within the finish's 10 s cap: it may wait
# longer, since giving up leaves its reservation charged (above usage, never below) until the window ends.
GIVE_BACK_SECONDS = 8.0
# An unknown outcome is sent again (same token) at most this many times before the call fails.
UNKNOWN_RESENDS = 2
_CONTENTION_REASONS = {
    "TransactionConflict",
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
    "RequestLimitExceeded",
}
_THROTTLED = {
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionConflictException",
}
_UNKNOWN_CODES = {"InternalServerError", "ServiceUnavailable", "InternalFailure", "RequestTimeout"}


class DynamoQuotaStore:
    def __init__(
        self,
        settings: Settings,
        *,
        client: Any = None,
        contention_seconds: float = CONTENTION_SECONDS,
        give_back_seconds: float = GIVE_BACK_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._table = settings.usage_table
        self._tenants = settings.tenants_table
        self._region = settings.region
        self._client = client
        self._contention_seconds = contention_seconds
        self._give_back_seconds = give_back_seconds
        self._monotonic = monotonic

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.dynamodb(self._region)
        return self._client

    # -- writes ------------------------------------------------------------------------------------------

    async def acquire(self, grant: HoldGrant, returning: HoldReturn | None = None, *, patient: bool = True) -> Written:
        deltas: dict[UsageKey, Amount] = {}
        charges: dict[UsageKey, WindowCharge] = {}
        conditional: set[UsageKey] = set()
        for charge, amount in zip(grant.charges, grant.amounts, strict=True):
            deltas[(charge.pk, charge.sk)] = amount
            charges[(charge.pk, charge.sk)] = charge
            conditional.add((charge.pk, charge.sk))
        for charge, amount in grant.credits:
            key = (charge.pk, charge.sk)
            deltas[key] = deltas.get(key, Amount()) + amount
            charges.setdefault(key, charge)
        if returning is not None:
            for key, delta in zip(returning.keys, returning.deltas, strict=True):
                deltas[key] = deltas.get(key, Amount()) + delta
        window_keys = list(deltas)
        items = [
            self._window_update(key, deltas[key], charges.get(key), bound=key in conditional) for key in window_keys
        ]
        items.append({"Put": self._state_put(grant)})
        if returning is not None:
            items.append(self._state_end(returning, "returned", LEASE))
        reasons, contended = await self._transact(items, f"{grant.id}:acquire", patient=patient)
        if reasons is None:
            return Written(True, contended)
        created = reasons[len(window_keys)]
        if created.get("Code") == "ConditionalCheckFailed":
            return Written(True, contended)  # its state item exists: this acquisition already happened
        if returning is not None and reasons[len(window_keys) + 1].get("Code") == "ConditionalCheckFailed":
            raise HoldGone(returning.id)
        for i, reason in enumerate(reasons[: len(window_keys)]):
            if reason.get("Code") == "ConditionalCheckFailed":
                old = reason.get("Item")
                index = grant.keys.index(window_keys[i])
                raise WindowRefused(index, usage_items.counters(from_item(old)) if old else None)
        raise _unavailable(RuntimeError(f"transaction cancelled: {reasons}"))

    async def give_back(self, back: HoldReturn) -> Written:
        items = [
            self._window_update(key, delta, None) for key, delta in zip(back.keys, back.deltas, strict=True) if delta
        ]
        kind = LEASE if back.home[1].startswith(f"{LEASE}#") else "hold"
        items.append(self._state_end(back, back.outcome, kind))
        reasons, contended = await self._transact(
            items, f"{back.id}:{back.outcome}:{back.seq}", budget=self._give_back_seconds
        )
        if reasons is None:
            return Written(True, contended)
        if reasons[-1].get("Code") == "ConditionalCheckFailed":
            # No longer active: given back or reaped already (by this container or another).
            return Written(False, contended)
        raise _unavailable(RuntimeError(f"transaction cancelled: {reasons}"))

    async def commit(self, commit: HoldCommit) -> None:
        update: dict[str, Any] = {
            "TableName": self._table,
            "Key": _key(commit.home),
            "UpdateExpression": "SET committed = :committed, granted = :granted, #seq = :seq",
            "ConditionExpression": "#state = :active AND #seq = :prev",
            "ExpressionAttributeNames": _STATE_NAMES,
            "ExpressionAttributeValues": {
                ":committed": _amounts(commit.committed),
                ":granted": _amounts(commit.granted),
                ":seq": {"N": str(commit.seq)},
                ":prev": {"N": str(commit.seq - 1)},
                ":active": {"S": ACTIVE},
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if commit.extra:  # it grows the grant: the window items take the extra in the same transaction
            items = [
                self._window_update(key, extra, None)
                for key, extra in zip(commit.keys, commit.extra, strict=True)
                if extra
            ]
            items.append({"Update": update})
            reasons, _ = await self._transact(items, f"{commit.id}:commit:{commit.seq}")
            if reasons is None:
                return
            old = reasons[-1].get("Item") if reasons[-1].get("Code") == "ConditionalCheckFailed" else None
            if _applied(old, commit):
                return
            raise HoldGone(commit.id)
        deadline = self._monotonic() + self._contention_seconds
        throttled = 0
        while True:
            try:
                await self._single("update_item", update)
                return
            except _ConditionFailed as failed:
                if _applied(failed.item, commit):
                    return  # an earlier attempt went through; its answer was lost
                raise HoldGone(commit.id) from None
            except _Throttled:
                throttled += 1
                if self._monotonic() >= deadline:
                    raise _contention() from None
            await asyncio.sleep(_backoff(throttled))

    async def mark_hot(self, tenant_id: str, until: float, *, unless_after: float) -> None:
        key = {k: {"S": v} for k, v in tenant_items.quota_hot_key(tenant_id).items()}
        put = {
            "TableName": self._tenants,
            "Item": {**key, "until": {"N": str(int(until))}},
            "ConditionExpression": "attribute_not_exists(#until) OR #until < :after",
            "ExpressionAttributeNames": {"#until": "until"},
            "ExpressionAttributeValues": {":after": {"N": str(int(unless_after))}},
        }
        with contextlib.suppress(_ConditionFailed, _Throttled):  # another container has just marked it, or will
            await self._single("put_item", put)

    # -- reads -------------------------------------------------------------------------------------------

    async def holds(self, partitions: Sequence[str]) -> list[HoldRecord]:
        async def one(pk: str) -> list[HoldRecord]:
            out: list[HoldRecord] = []
            start: dict[str, Any] | None = None
            while True:
                query: dict[str, Any] = {
                    "TableName": self._table,
                    "KeyConditionExpression": "pk = :pk AND begins_with(sk, :kind)",
                    "ExpressionAttributeValues": {":pk": {"S": pk}, ":kind": {"S": f"{LEASE}#"}},
                }
                if start:
                    query["ExclusiveStartKey"] = start
                page = await self._read("query", query)
                for raw in page.get("Items", []):
                    record = _record(from_item(raw))
                    if record.state == ACTIVE:
                        out.append(record)
                start = page.get("LastEvaluatedKey")
                if not start:
                    return out

        found = await asyncio.gather(*(one(pk) for pk in partitions))
        return [record for records in found for record in records]

    async def read(self, keys: Sequence[UsageKey]) -> dict[UsageKey, Counters]:
        out: dict[UsageKey, Counters] = {}
        pending = [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in keys]
        for _ in range(5):
            if not pending:
                break
            request = {self._table: {"Keys": pending, "ConsistentRead": True}}
            got = await self._read("batch_get_item", {"RequestItems": request})
            for raw in got.get("Responses", {}).get(self._table, []):
                item = from_item(raw)
                out[(item["pk"], item["sk"])] = usage_items.counters(item)
            pending = (got.get("UnprocessedKeys") or {}).get(self._table, {}).get("Keys", [])
        return out

    # -- building blocks ---------------------------------------------------------------------------------

    def _window_update(
        self, key: UsageKey, delta: Amount, charge: WindowCharge | None, *, bound: bool = True
    ) -> dict[str, Any]:
        """ADD `delta` to a window item (or a pool's item), within its bounds when `bound` and it takes
        budget: a window item's counter stays within its limit (or the item is new); a pool's stays at most
        zero (a pool's counters are the negative of what it holds: it must hold what is taken)."""
        values: dict[str, Any] = {f":{c}": {"N": str(v)} for c, v in delta.as_dict().items()}
        expires = charge.window.expires_at if charge is not None else None
        update: dict[str, Any] = {
            "TableName": self._table,
            "Key": _key(key),
            "UpdateExpression": "ADD #requests :requests, #tokens :tokens, #usd_micros :usd_micros",
            "ExpressionAttributeNames": dict(_NAMES),
            "ExpressionAttributeValues": values,
        }
        if expires is not None:
            values[":exp"] = {"N": str(expires)}
            update["UpdateExpression"] = (
                f"SET {usage_items.TTL_ATTRIBUTE} = if_not_exists({usage_items.TTL_ATTRIBUTE}, :exp) "
                + update["UpdateExpression"]
            )
        conditions = []
        if charge is not None and bound:
            for counter, limit in charge.limits.items():
                added = getattr(delta, counter)
                if added > 0:  # taking budget: it must still fit
                    values[f":max_{counter}"] = {"N": str(limit - added)}
                    if charge.pool:
                        conditions.append(f"#{counter} <= :max_{counter}")
                    else:
                        conditions.append(f"(attribute_not_exists(#{counter}) OR #{counter} <= :max_{counter})")
        if conditions:
            update["ConditionExpression"] = " AND ".join(conditions)
            update["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        return {"Update": update}

    def _state_put(self, grant: HoldGrant) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "Item": {
                "pk": {"S": grant.home[0]},
                "sk": {"S": grant.home[1]},
                "kind": {"S": grant.kind},
                "state": {"S": ACTIVE},
                "seq": {"N": "0"},
                "key": {"S": grant.key},
                "charges": {"L": [{"S": f"{pk}|{sk}"} for pk, sk in grant.keys]},
                "granted": _amounts(grant.amounts),
                "committed": _amounts(grant.committed),
                "ends_at": {"N": str(int(grant.ends_at))},
                "owner": {"S": grant.owner},
                usage_items.TTL_ATTRIBUTE: {"N": str(grant.expires_at)},
            },
            "ConditionExpression": "attribute_not_exists(pk)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def _state_end(self, back: HoldReturn, outcome: str, kind: str) -> dict[str, Any]:
        condition = {
            "TableName": self._table,
            "Key": _key(back.home),
            "ConditionExpression": "#state = :active AND #seq = :seq",
            "ExpressionAttributeNames": dict(_STATE_NAMES),
            "ExpressionAttributeValues": {":active": {"S": ACTIVE}, ":seq": {"N": str(back.seq)}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if kind == LEASE:  # reapers range-read live leases: an ended one leaves
            return {"Delete": condition}
        condition["UpdateExpression"] = "SET #state = :outcome"
        condition["ExpressionAttributeValues"][":outcome"] = {"S": outcome}
        return {"Update": condition}

    async def _transact(
        self, items: list[dict[str, Any]], seed: str, *, patient: bool = True, budget: float | None = None
    ) -> tuple[list[dict[str, Any]] | None, int]:
        """(None, contended) when the transaction went through, (reasons, contended) when a condition
        failed; contention is retried within `budget` (CONTENTION_SECONDS unless given; not at all unless
        `patient`), then QuotaContentionError."""
        budget = self._contention_seconds if budget is None else budget
        deadline = self._monotonic() + (budget if patient else 0.0)
        attempt = contended = 0
        while True:
            token = _token(f"{seed}:{attempt}")
            try:
                await self._single("transact_write_items", {"TransactItems": items, "ClientRequestToken": token})
                return None, contended
            except _Cancelled as cancelled:
                reasons = cancelled.reasons
                if any(r.get("Code") == "ConditionalCheckFailed" for r in reasons):
                    return reasons, contended
                if not any(r.get("Code") in _CONTENTION_REASONS for r in reasons):
                    raise _unavailable(RuntimeError(f"transaction cancelled: {reasons}")) from None
            except _Throttled:
                pass
            contended += 1
            attempt += 1  # it definitely did not apply: a new attempt, with a new token
            if self._monotonic() >= deadline:
                raise _contention()
            await asyncio.sleep(_backoff(contended))

    async def _single(self, method: str, params: dict[str, Any]) -> Any:
        """One call, sent again as it was (same token) while its outcome is unknown; its definite failures
        raised as _Cancelled, _Throttled or _ConditionFailed."""
        resends = 0
        while True:
            try:
                return await call(self.client, method, **params)
            except Exception as exc:
                code = _code(exc)
                if code == "TransactionCanceledException":
                    raise _Cancelled(_reasons(exc)) from None
                if code == "ConditionalCheckFailedException":
                    item = (getattr(exc, "response", None) or {}).get("Item")
                    raise _ConditionFailed(from_item(item) if item else None) from None
                if code in _THROTTLED:
                    raise _Throttled() from None
                if not _unknown(exc, code) or resends >= UNKNOWN_RESENDS:
                    raise _unavailable(exc) from exc
                resends += 1
                log.warning("DynamoDB write outcome unknown (%s); sending it again", code or type(exc).__name__)
                await asyncio.sleep(_backoff(resends))

    async def _read(self, method: str, params: dict[str, Any]) -> Any:
        for attempt in range(3):
            try:
                return await call(self.client, method, **params)
            except Exception as exc:
                code = _code(exc)
                if attempt == 2 or not (code in _THROTTLED or _unknown(exc, code)):
                    raise _unavailable(exc) from exc
            await asyncio.sleep(_backoff(attempt + 1))
        raise AssertionError("unreachable")


class _Cancelled(Exception):
    def __init__(self, reasons: list[dict[str, Any]]) -> None:
        self.reasons = reasons


class _Throttled(Exception):
    pass


class _ConditionFailed(Exception):
    def __init__(self, item: dict[str, Any] | None) -> None:
        self.item = item


def _key(key: UsageKey) -> dict[str, Any]:
    return {"pk": {"S": key[0]}, "sk": {"S": key[1]}}


def _amounts(amounts: Sequence[Amount]) -> dict[str, Any]:
    return {"L": [{"L": [{"N": str(v)} for v in a.as_dict().values()]} for a in amounts]}


def _amounts_of(values: Sequence[Sequence[int]]) -> tuple[Amount, ...]:
    return tuple(Amount(*(int(v) for v in triple)) for triple in values)


def _record(item: dict[str, Any]) -> HoldRecord:
    return HoldRecord(
        id=item["sk"].rsplit("#", 1)[1],
        kind=item.get("kind", ""),
        home=(item["pk"], item["sk"]),
        key=item.get("key", ""),
        state=item.get("state", ""),
        seq=int(item.get("seq", 0)),
        keys=tuple(tuple(c.split("|", 1)) for c in item.get("charges", [])),  # type: ignore[misc]
        granted=_amounts_of(item.get("granted", [])),
        committed=_amounts_of(item.get("committed", [])),
        ends_at=float(item.get("ends_at", 0)),
        owner=item.get("owner", ""),
    )


def _applied(old: dict[str, Any] | None, commit: HoldCommit) -> bool:
    """Whether a commit whose condition failed had itself been applied by an earlier attempt."""
    if not old or old.get("state") != ACTIVE or int(old.get("seq", -1)) != commit.seq:
        return False
    return _amounts_of(old.get("committed", [])) == commit.committed


def _token(seed: str) -> str:
    # Deterministic per hold, operation and attempt; DynamoDB takes at most 36 characters.
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


def _backoff(n: int) -> float:
    return random.uniform(0.5, 1.0) * min(0.25, 0.005 * (2**n))


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str((response.get("Error") or {}).get("Code") or "")


def _reasons(exc: BaseException) -> list[dict[str, Any]]:
    response = getattr(exc, "response", None)
    return list((response or {}).get("CancellationReasons") or []) if isinstance(response, dict) else []


def _unknown(exc: BaseException, code: str) -> bool:
    """An answer that never came, or a server error: the write may or may not have happened."""
    if code in _UNKNOWN_CODES or code == "TransactionInProgressException":
        return True
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return True
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return isinstance(status, int) and status >= 500


def _contention() -> QuotaContentionError:
    return QuotaContentionError("too many concurrent requests for your quota; retry shortly", retry_after=1)


def _unavailable(exc: BaseException) -> ServiceUnavailableError:
    # Fail closed: without a reservation there is no metered call.
    return ServiceUnavailableError(f"the quota store is unavailable ({type(exc).__name__}); nothing was called")
