"""A model of DynamoDB's behaviour under load, as a fake of the botocore client operations the quota store
uses, so that contention is measured and not hidden (the local stack's moto applies one request at a
time and never conflicts, throttles or takes time).

Each rule and where AWS states it:

- Items and expressions: conditional Put, Update, Delete, ConditionCheck; update expressions SET (with
  if_not_exists, + and -), ADD and REMOVE; condition and key-condition expressions with comparisons,
  BETWEEN, attribute_exists, attribute_not_exists and begins_with; ReturnValues and
  ReturnValuesOnConditionCheckFailure. (API reference: UpdateItem, TransactWriteItems, Query;
  developer guide, "Expressions".)
- Transactions are all or nothing; a transaction that meets an item that another transaction is still
  writing is cancelled with TransactionCanceledException, reason TransactionConflict for that item; a
  PutItem, UpdateItem or DeleteItem on such an item fails with TransactionConflictException; a GetItem
  succeeds. ("Amazon DynamoDB Transactions: How it works", Transaction conflict handling,
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-conflict-handling)
  How long a transaction keeps its items is not published: the model keeps them for the transaction's
  latency times `hold_fraction` (DynamoDB's coordinator prepares every item, then commits them: Idziorek
  et al., "Distributed Transactions at Scale in Amazon DynamoDB", USENIX ATC 2023).
- Capacity: a write unit is one write of up to 1 KB, a read unit one strongly consistent read of up to
  4 KB (two eventually consistent); a transaction performs two writes of every item, prepare and commit
  (transaction-apis.html, Capacity management). Each partition serves at most 1,000 write units and
  3,000 read units per second ("Best practices for designing and using partition keys effectively",
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html);
  the model puts every item of one partition key on one partition (adaptive capacity may split a hot key
  across partitions later; the model takes the worse case) with a one-second burst.
- Past that, on an on-demand table: ThrottlingException for a single-item request ("Error handling with
  DynamoDB", ThrottlingException, https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html),
  and a cancelled transaction with reason ThrottlingError for the throttled items (API reference,
  TransactWriteItems, CancellationReasons, https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html).
  A conditional write that fails still consumes its write units.
- Idempotency: a TransactWriteItems with a ClientRequestToken already used successfully within 10 minutes
  succeeds without making changes, or fails with IdempotentParameterMismatchException if its other
  parameters differ; while the first is still running, TransactionInProgressException (API reference,
  TransactWriteItems, ClientRequestToken and Errors).
- Latency: lognormal around a few milliseconds ("single-digit millisecond" is DynamoDB's own description
  of its latency, https://aws.amazon.com/dynamodb/); transactions take about twice a single write (two
  round trips to the items). The medians and spread are parameters, not measurements.

Not modelled: the SDK's own retries of throttling (the adapter retries contention itself, past where
botocore stops), pagination limits, global secondary indexes, eventual consistency (reads see the latest
write).
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

Item = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Latency:
    """Lognormal: `median` seconds, `sigma` the spread of its logarithm."""

    median: float
    sigma: float = 0.35

    def sample(self, rng: random.Random) -> float:
        return self.median * math.exp(self.sigma * rng.gauss(0.0, 1.0))


@dataclass(frozen=True)
class ModelConfig:
    partition_wcu: float = 1000.0
    partition_rcu: float = 3000.0
    burst_seconds: float = 1.0
    write: Latency = Latency(0.004)
    transaction: Latency = Latency(0.008)
    read: Latency = Latency(0.003)
    conflicts: bool = True
    hold_fraction: float = 1.0
    token_window: float = 600.0
    seed: int = 1


@dataclass
class _Bucket:
    rate: float
    capacity: float
    tokens: float
    at: float

    def take(self, amount: float, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + self.rate * max(0.0, now - self.at))
        self.at = now
        if self.tokens + 1e-9 < amount:
            return False
        self.tokens -= amount
        return True


@dataclass
class Stats:
    calls: Counter[str] = field(default_factory=Counter)
    conflicts: int = 0  # transactions cancelled, and single writes refused, for a transaction in progress
    throttled: int = 0
    condition_failures: int = 0
    token_repeats: int = 0
    wcu: Counter[str] = field(default_factory=Counter)  # per partition key
    rcu: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        hottest = self.wcu.most_common(1)
        return {
            "calls": dict(self.calls),
            "conflicts": self.conflicts,
            "throttled": self.throttled,
            "condition_failures": self.condition_failures,
            "token_repeats": self.token_repeats,
            "wcu_total": round(sum(self.wcu.values()), 1),
            "hottest_partition_wcu": round(hottest[0][1], 1) if hottest else 0,
        }


class DynamoModel:
    """Tables keyed by `pk` and `sk`. `clock` gives the time (a virtual-time loop's, or time.monotonic);
    with `sleep`, each call waits its latency in the calling thread; without it, the caller takes the
    latency of the last call with `take_delay()` (virtual_time.VirtualTimeLoop does)."""

    def __init__(
        self,
        config: ModelConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.config = config or ModelConfig()
        self.clock = clock
        self._sleep = sleep
        self._rng = random.Random(self.config.seed)
        self.tables: dict[str, dict[str, dict[str, Item]]] = defaultdict(lambda: defaultdict(dict))
        self._pending: dict[tuple[str, str, str], float] = {}
        self._writes: dict[tuple[str, str], _Bucket] = {}
        self._reads: dict[tuple[str, str], _Bucket] = {}
        self._tokens: dict[str, tuple[str, float]] = {}
        self._delay = 0.0
        self._lock = threading.RLock()
        self.stats = Stats()

    # -- what the virtual-time loop and the tests read ---------------------------------------------

    def take_delay(self) -> float:
        delay, self._delay = self._delay, 0.0
        return delay

    def item(self, table: str, pk: str, sk: str) -> Item | None:
        return self.tables[table].get(pk, {}).get(sk)

    def items(self, table: str) -> list[Item]:
        return [item for partition in self.tables[table].values() for item in partition.values()]

    # -- operations --------------------------------------------------------------------------------

    def transact_write_items(
        self, *, TransactItems: list[dict[str, Any]], ClientRequestToken: str | None = None, **_: Any
    ) -> dict[str, Any]:  # noqa: N803, E501
        with self._lock:
            now, latency = self._begin("TransactWriteItems", self.config.transaction)
            try:
                return self._transact(now, latency, TransactItems, ClientRequestToken)
            finally:
                self._end(latency)

    def update_item(self, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            now, latency = self._begin("UpdateItem", self.config.write)
            try:
                return self._single_write("UpdateItem", now, kwargs)
            finally:
                self._end(latency)

    def put_item(self, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            now, latency = self._begin("PutItem", self.config.write)
            try:
                return self._single_write("PutItem", now, kwargs)
            finally:
                self._end(latency)

    def delete_item(self, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            now, latency = self._begin("DeleteItem", self.config.write)
            try:
                return self._single_write("DeleteItem", now, kwargs)
            finally:
                self._end(latency)

    def get_item(self, *, TableName: str, Key: Item, ConsistentRead: bool = False, **_: Any) -> dict[str, Any]:  # noqa: N803
        with self._lock:
            now, latency = self._begin("GetItem", self.config.read)
            try:
                pk, sk = _key(Key)
                item = self.tables[TableName].get(pk, {}).get(sk)
                self._read_units(TableName, pk, _size(item or {}), ConsistentRead, now, "GetItem")
                return {"Item": _copy(item)} if item is not None else {}
            finally:
                self._end(latency)

    def batch_get_item(self, *, RequestItems: dict[str, Any], **_: Any) -> dict[str, Any]:  # noqa: N803
        with self._lock:
            now, latency = self._begin("BatchGetItem", self.config.read)
            try:
                responses: dict[str, list[Item]] = {}
                unprocessed: dict[str, Any] = {}
                for table, request in RequestItems.items():
                    for key in request["Keys"]:
                        pk, sk = _key(key)
                        item = self.tables[table].get(pk, {}).get(sk)
                        try:
                            self._read_units(
                                table, pk, _size(item or {}), request.get("ConsistentRead", False), now, ""
                            )
                        except ClientError:
                            unprocessed.setdefault(table, {**request, "Keys": []})["Keys"].append(key)
                            continue
                        if item is not None:
                            responses.setdefault(table, []).append(_copy(item))
                return {"Responses": responses, "UnprocessedKeys": unprocessed}
            finally:
                self._end(latency)

    def query(
        self,
        *,
        TableName: str,  # noqa: N803
        KeyConditionExpression: str,  # noqa: N803
        ExpressionAttributeValues: Item | None = None,  # noqa: N803
        ExpressionAttributeNames: dict[str, str] | None = None,  # noqa: N803
        FilterExpression: str | None = None,  # noqa: N803
        ConsistentRead: bool = False,  # noqa: N803
        ExclusiveStartKey: Item | None = None,  # noqa: N803
        **_: Any,
    ) -> dict[str, Any]:
        with self._lock:
            now, latency = self._begin("Query", self.config.read)
            try:
                names, values = ExpressionAttributeNames or {}, ExpressionAttributeValues or {}
                key_condition = parse_condition(KeyConditionExpression)
                pk = _partition_of(key_condition, names, values)
                partition = self.tables[TableName].get(pk, {})
                matched = [
                    partition[sk] for sk in sorted(partition) if evaluate(key_condition, partition[sk], names, values)
                ]
                self._read_units(TableName, pk, sum(_size(i) for i in matched), ConsistentRead, now, "Query")
                if FilterExpression:
                    condition = parse_condition(FilterExpression)
                    matched = [i for i in matched if evaluate(condition, i, names, values)]
                return {"Items": [_copy(i) for i in matched], "Count": len(matched)}
            finally:
                self._end(latency)

    # -- the rules ---------------------------------------------------------------------------------

    def _begin(self, operation: str, latency: Latency) -> tuple[float, float]:
        self.stats.calls[operation] += 1
        return self.clock(), latency.sample(self._rng)

    def _end(self, latency: float) -> None:
        if self._sleep is not None:
            self._sleep(latency)
        else:
            self._delay = latency

    def _bucket(self, buckets: dict[tuple[str, str], _Bucket], table: str, pk: str, rate: float, now: float) -> _Bucket:
        bucket = buckets.get((table, pk))
        if bucket is None:
            capacity = rate * self.config.burst_seconds
            bucket = buckets[(table, pk)] = _Bucket(rate, capacity, capacity, now)
        return bucket

    def _read_units(self, table: str, pk: str, size: int, consistent: bool, now: float, operation: str) -> None:
        units = max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)
        if not self._bucket(self._reads, table, pk, self.config.partition_rcu, now).take(units, now):
            self.stats.throttled += 1
            raise _error(
                "ThrottlingException", "Throughput exceeds the current capacity of your table or index.", operation
            )
        self.stats.rcu[pk] += units

    def _take_writes(self, table: str, units: Mapping[str, float], now: float) -> list[str]:
        """Take the write units from each partition, all or none; the partitions that lacked them."""
        buckets = {pk: self._bucket(self._writes, table, pk, self.config.partition_wcu, now) for pk in units}
        short = []
        for pk, bucket in buckets.items():
            bucket.tokens = min(bucket.capacity, bucket.tokens + bucket.rate * max(0.0, now - bucket.at))
            bucket.at = now
            if bucket.tokens + 1e-9 < units[pk]:
                short.append(pk)
        if not short:
            for pk, bucket in buckets.items():
                bucket.tokens -= units[pk]
                self.stats.wcu[pk] += units[pk]
        return short

    def _busy(self, table: str, pk: str, sk: str, now: float) -> bool:
        until = self._pending.get((table, pk, sk))
        if until is None:
            return False
        if until <= now:
            del self._pending[(table, pk, sk)]
            return False
        return True

    def _transact(self, now: float, latency: float, actions: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
        operation = "TransactWriteItems"
        params = json.dumps(actions, sort_keys=True)
        if token is not None:
            seen = self._tokens.get(token)
            if seen is not None and now - seen[1] <= self.config.token_window:
                if seen[0] != params:
                    raise _error("IdempotentParameterMismatchException", "other parameters with this token", operation)
                if now < seen[1]:
                    raise _error(
                        "TransactionInProgressException", "a transaction with this token is running", operation
                    )
                self.stats.token_repeats += 1
                return {}
        targets = []
        for action in actions:
            ((kind, body),) = action.items()
            table = body["TableName"]
            key = _key(body["Item"]) if kind == "Put" else _key(body["Key"])
            targets.append((kind, body, table, key))
        if len({(t, k) for _, _, t, k in targets}) != len(targets):
            raise _error(
                "ValidationException", "Transaction request cannot include multiple operations on one item", operation
            )
        if self.config.conflicts:
            busy = [self._busy(table, pk, sk, now) for _, _, table, (pk, sk) in targets]
            if any(busy):
                self.stats.conflicts += 1
                raise _cancelled([{"Code": "TransactionConflict"} if b else {"Code": "None"} for b in busy])
        # Write units: two per KB of every item written (prepare and commit), its larger size before or after.
        afters: list[Item | None] = []
        units: dict[str, float] = defaultdict(float)
        for kind, body, table, (pk, sk) in targets:
            before = self.tables[table].get(pk, {}).get(sk)
            after = _after(kind, body, before)
            afters.append(after)
            units[pk] += 2 * max(1, math.ceil(max(_size(before or {}), _size(after or {})) / 1024))
        short = self._take_writes(targets[0][2], units, now) if targets else []
        if short:
            self.stats.throttled += 1
            raise _cancelled(
                [{"Code": "ThrottlingError"} if pk in short else {"Code": "None"} for _, _, _, (pk, _) in targets]
            )
        reasons, failed = [], False
        for _kind, body, table, (pk, sk) in targets:
            before = self.tables[table].get(pk, {}).get(sk)
            if _condition_holds(body, before):
                reasons.append({"Code": "None"})
                continue
            failed = True
            reason: dict[str, Any] = {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"}
            if body.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and before is not None:
                reason["Item"] = _copy(before)
            reasons.append(reason)
        if failed:
            self.stats.condition_failures += 1
            raise _cancelled(reasons)
        for (kind, _, table, (pk, sk)), after in zip(targets, afters, strict=True):
            if kind == "ConditionCheck":
                continue
            self._store(table, pk, sk, after)
            self._pending[(table, pk, sk)] = now + latency * self.config.hold_fraction
        if token is not None:
            self._tokens[token] = (params, now + latency)
            if len(self._tokens) > 100_000:
                self._tokens = {t: v for t, v in self._tokens.items() if now - v[1] <= self.config.token_window}
        return {}

    def _single_write(self, operation: str, now: float, body: dict[str, Any]) -> dict[str, Any]:
        table = body["TableName"]
        kind = {"UpdateItem": "Update", "PutItem": "Put", "DeleteItem": "Delete"}[operation]
        pk, sk = _key(body["Item"]) if kind == "Put" else _key(body["Key"])
        if self.config.conflicts and self._busy(table, pk, sk, now):
            self.stats.conflicts += 1
            raise _error("TransactionConflictException", "Transaction is ongoing for the item", operation)
        before = self.tables[table].get(pk, {}).get(sk)
        after = _after(kind, body, before)
        units = max(1, math.ceil(max(_size(before or {}), _size(after or {})) / 1024))
        if self._take_writes(table, {pk: units}, now):
            self.stats.throttled += 1
            raise _error(
                "ThrottlingException", "Throughput exceeds the current capacity of your table or index.", operation
            )
        if not _condition_holds(body, before):
            self.stats.condition_failures += 1
            extra: dict[str, Any] = {}
            if body.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and before is not None:
                extra["Item"] = _copy(before)
            raise _error("ConditionalCheckFailedException", "The conditional request failed", operation, **extra)
        self._store(table, pk, sk, after)
        returned = body.get("ReturnValues", "NONE")
        if returned == "ALL_NEW" and after is not None:
            return {"Attributes": _copy(after)}
        if returned == "ALL_OLD" and before is not None:
            return {"Attributes": _copy(before)}
        if returned == "UPDATED_NEW" and after is not None:
            return {"Attributes": {k: v for k, v in after.items() if (before or {}).get(k) != v}}
        return {}

    def _store(self, table: str, pk: str, sk: str, item: Item | None) -> None:
        partition = self.tables[table][pk]
        if item is None:
            partition.pop(sk, None)
        else:
            partition[sk] = item


# -- items ---------------------------------------------------------------------------------------------


def _key(key: Item) -> tuple[str, str]:
    return key["pk"]["S"], key["sk"]["S"]


def _copy(item: Item) -> Item:
    return json.loads(json.dumps(item))


def _size(item: Mapping[str, Any]) -> int:
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: Mapping[str, Any]) -> int:
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "N":
        return (len(raw.lstrip("-").replace(".", "").lstrip("0")) + 1) // 2 + 1
    if kind == "L":
        return 3 + sum(_value_size(v) + 1 for v in raw)
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(v) + 1 for k, v in raw.items())
    return 1


def _after(kind: str, body: Mapping[str, Any], before: Item | None) -> Item | None:
    if kind == "Put":
        return _copy(body["Item"])
    if kind == "Delete":
        return None
    if kind == "ConditionCheck":
        return before
    key = body["Key"]
    item: Item = _copy(before) if before is not None else _copy(key)
    apply_update(
        item,
        body["UpdateExpression"],
        body.get("ExpressionAttributeNames") or {},
        body.get("ExpressionAttributeValues") or {},
    )
    return item


def _condition_holds(body: Mapping[str, Any], before: Item | None) -> bool:
    expression = body.get("ConditionExpression")
    if not expression:
        return True
    return evaluate(
        parse_condition(expression),
        before or {},
        body.get("ExpressionAttributeNames") or {},
        body.get("ExpressionAttributeValues") or {},
    )


def _error(code: str, message: str, operation: str, **extra: Any) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}, **extra}, operation
    )


def _cancelled(reasons: list[dict[str, Any]]) -> ClientError:
    codes = ", ".join(r["Code"] for r in reasons)
    return _error(
        "TransactionCanceledException",
        f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
        "TransactWriteItems",
        CancellationReasons=reasons,
    )


# -- expressions ---------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(<>|<=|>=|=|<|>|\(|\)|,|\+|-)|([#:]?[A-Za-z_][A-Za-z0-9_]*))")
_KEYWORDS = {"AND", "OR", "NOT", "BETWEEN", "SET", "ADD", "REMOVE", "DELETE"}
_parsed: dict[str, Any] = {}


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"cannot parse {text[pos:]!r} in {text!r}")
        token = match.group(1) or match.group(2)
        out.append(token.upper() if token.upper() in _KEYWORDS else token)
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise ValueError(f"expected {expected or 'a token'}, found {token!r} in {' '.join(self.tokens)!r}")
        self.i += 1
        return token

    # conditions
    def condition(self) -> Any:
        left = self.conjunction()
        while self.peek() == "OR":
            self.take()
            left = ("or", left, self.conjunction())
        return left

    def conjunction(self) -> Any:
        left = self.negation()
        while self.peek() == "AND":
            self.take()
            left = ("and", left, self.negation())
        return left

    def negation(self) -> Any:
        if self.peek() == "NOT":
            self.take()
            return ("not", self.negation())
        return self.primary()

    def primary(self) -> Any:
        if self.peek() == "(":
            self.take("(")
            inner = self.condition()
            self.take(")")
            return inner
        token = self.peek()
        if token in ("attribute_exists", "attribute_not_exists", "begins_with"):
            self.take()
            self.take("(")
            args = [self.operand()]
            while self.peek() == ",":
                self.take()
                args.append(self.operand())
            self.take(")")
            return ("fn", token, args)
        left = self.operand()
        if self.peek() == "BETWEEN":
            self.take()
            low = self.operand()
            self.take("AND")
            return ("between", left, low, self.operand())
        op = self.take()
        if op not in ("=", "<>", "<", "<=", ">", ">="):
            raise ValueError(f"unexpected {op!r}")
        return ("cmp", op, left, self.operand())

    def operand(self) -> Any:
        token = self.take()
        if token == "if_not_exists":
            self.take("(")
            path = self.operand()
            self.take(",")
            default = self.operand()
            self.take(")")
            return ("if_not_exists", path, default)
        if token.startswith(":"):
            return ("value", token)
        return ("path", token)

    # updates
    def update(self) -> list[tuple[str, Any, Any]]:
        actions: list[tuple[str, Any, Any]] = []
        while self.peek() is not None:
            clause = self.take()
            while True:
                if clause == "SET":
                    path = self.operand()
                    self.take("=")
                    value = self.operand()
                    if self.peek() in ("+", "-"):
                        value = (self.take(), value, self.operand())
                    actions.append(("SET", path, value))
                elif clause == "ADD":
                    actions.append(("ADD", self.operand(), self.operand()))
                elif clause == "REMOVE":
                    actions.append(("REMOVE", self.operand(), None))
                else:
                    raise ValueError(f"unsupported update clause {clause!r}")
                if self.peek() != ",":
                    break
                self.take(",")
        return actions


def parse_condition(text: str) -> Any:
    parsed = _parsed.get(text)
    if parsed is None:
        parser = _Parser(text)
        parsed = _parsed[text] = parser.condition()
        if parser.peek() is not None:
            raise ValueError(f"trailing tokens in {text!r}")
    return parsed


def _name(path: Any, names: Mapping[str, str]) -> str:
    token = path[1]
    return names[token] if token.startswith("#") else token


def _resolve(operand: Any, item: Mapping[str, Any], names: Mapping[str, str], values: Mapping[str, Any]) -> Any:
    kind = operand[0]
    if kind == "value":
        return values[operand[1]]
    if kind == "path":
        return item.get(_name(operand, names))
    if kind == "if_not_exists":
        found = item.get(_name(operand[1], names))
        return found if found is not None else _resolve(operand[2], item, names, values)
    op, left, right = operand
    a, b = _number(_resolve(left, item, names, values)), _number(_resolve(right, item, names, values))
    return {"N": _format(a + b if op == "+" else a - b)}


def _comparable(value: Any) -> Any:
    ((kind, raw),) = value.items()
    return Decimal(raw) if kind == "N" else raw


def evaluate(node: Any, item: Mapping[str, Any], names: Mapping[str, str], values: Mapping[str, Any]) -> bool:
    kind = node[0]
    if kind == "and":
        return evaluate(node[1], item, names, values) and evaluate(node[2], item, names, values)
    if kind == "or":
        return evaluate(node[1], item, names, values) or evaluate(node[2], item, names, values)
    if kind == "not":
        return not evaluate(node[1], item, names, values)
    if kind == "fn":
        name, args = node[1], node[2]
        if name == "attribute_exists":
            return _name(args[0], names) in item
        if name == "attribute_not_exists":
            return _name(args[0], names) not in item
        found, prefix = _resolve(args[0], item, names, values), _resolve(args[1], item, names, values)
        return found is not None and "S" in found and found["S"].startswith(prefix["S"])
    if kind == "between":
        x, low, high = (_resolve(n, item, names, values) for n in node[1:])
        if x is None or low is None or high is None:
            return False
        return _comparable(low) <= _comparable(x) <= _comparable(high)
    op, left, right = node[1], _resolve(node[2], item, names, values), _resolve(node[3], item, names, values)
    if left is None or right is None or next(iter(left)) != next(iter(right)):
        return op == "<>" and not (left is None and right is None)
    a, b = _comparable(left), _comparable(right)
    return {"=": a == b, "<>": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def apply_update(item: Item, expression: str, names: Mapping[str, str], values: Mapping[str, Any]) -> None:
    actions = _parsed.get("update:" + expression)
    if actions is None:
        actions = _parsed["update:" + expression] = _Parser(expression).update()
    original = dict(item)
    for action, path, value in actions:
        name = _name(path, names)
        if action == "SET":
            item[name] = _resolve(value, original, names, values)
        elif action == "ADD":
            added = _resolve(value, original, names, values)
            current = original.get(name)
            item[name] = {"N": _format((_number(current) if current else Decimal(0)) + _number(added))}
        else:
            item.pop(name, None)


def _number(value: Any) -> Decimal:
    return Decimal(value["N"])


def _format(number: Decimal) -> str:
    return str(int(number)) if number == number.to_integral_value() else str(number.normalize())


def _partition_of(condition: Any, names: Mapping[str, str], values: Mapping[str, Any]) -> str:
    if condition[0] == "and":
        for side in condition[1:]:
            try:
                return _partition_of(side, names, values)
            except ValueError:
                continue
    if (
        condition[0] == "cmp"
        and condition[1] == "="
        and condition[2][0] == "path"
        and _name(condition[2], names) == "pk"
    ):
        return values[condition[3][1]]["S"]
    raise ValueError("a key condition needs pk = :value")
