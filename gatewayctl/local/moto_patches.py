"""Where moto differs from AWS in a way that would make the local stack lie, and the patch for it."""

from __future__ import annotations

_lock = None
_kinesis_lock = None
_memory_bounded = False


def serialize_kinesis() -> None:
    """Make the in-process moto server apply Kinesis requests one at a time, as a shard orders its puts.

    moto's `Shard.put_record` reads the last sequence number and stores at the next one without a lock:
    two concurrent puts can take the same number, and the later overwrites the earlier, which was
    already acknowledged (about 0.4% of puts from 32 threads). An audit record acknowledged and then
    lost would make the local trail lie. Also makes finding the last sequence number O(1) (moto lists
    every key on each put). Idempotent; process-wide.
    """
    global _kinesis_lock
    if _kinesis_lock is not None:
        return
    import threading

    from moto.kinesis.models import Shard
    from moto.kinesis.responses import KinesisResponse

    _kinesis_lock = threading.RLock()
    unlocked = KinesisResponse.call_action

    def call_action(self):
        with _kinesis_lock:
            return unlocked(self)

    def get_max_sequence_number(self) -> int:
        return next(reversed(self.records), 0) if self.records else 0

    KinesisResponse.call_action = call_action
    Shard.get_max_sequence_number = get_max_sequence_number


def bound_memory() -> None:
    """Keep the in-process moto server's memory proportional to what it stores, not to what it was asked.

    Two things made it grow by about 0.9 MB per DynamoDB transaction (the local stack reached 8.9 GB):
    - every moto model object registers itself in a class-level list (for moto's dashboard), so nothing
      moto ever creates is freed, copies included;
    - TransactWriteItems deep-copies every table it touches, whole, so it can roll back: with the list
      above, each transaction kept a copy of the usage table, and the copies grew with the table.
    Here models are no longer registered, and a transaction copies only the items it touches (restored
    if it fails, as the whole-table copy was). Idempotent; process-wide. Needs DynamoDB serialized
    (`serialize_dynamodb`): the copy and the restore assume no other request runs in between.
    """
    global _memory_bounded
    if _memory_bounded:
        return
    _memory_bounded = True
    _stop_tracking_instances()
    _roll_back_items_not_tables()


def _stop_tracking_instances() -> None:
    from moto.core.common_models import BaseModel
    from moto.core.model_instances import reset_model_data

    def __new__(cls, *args, **kwargs):
        return super(BaseModel, cls).__new__(cls)

    BaseModel.__new__ = staticmethod(__new__)
    reset_model_data()  # what was registered before now


def _roll_back_items_not_tables() -> None:
    import copy
    import threading
    import types

    from moto.dynamodb import models as dynamodb_models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    per_item = threading.local()

    def deepcopy(value, memo=None):
        # The backend's whole-table copy becomes the table itself (so its "rollback" is a no-op) while
        # the items it touches are copied and restored below.
        if isinstance(value, Table) and getattr(per_item, "active", False):
            return value
        return copy.deepcopy(value, memo)

    shim = types.SimpleNamespace(**{name: getattr(copy, name) for name in ("copy", "Error")}, deepcopy=deepcopy)
    dynamodb_models.copy = shim
    unpatched = DynamoDBBackend.transact_write_items

    def touched_items(backend, transact_items):
        """{(table, hash, range): a copy of the item as it is, or None}; None if it cannot tell."""
        found = {}
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            table = backend.tables.get(op.get("TableName"))
            if table is None:
                continue
            if table.stream_shard is not None:
                return None  # a stream records each write: restore the whole table as moto does
            key = op["Item"] if "Item" in op else op.get("Key") or {}
            if table.hash_key_attr not in key or (table.range_key_attr and table.range_key_attr not in key):
                return None
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
            item = table.get_item(hash_key, range_key)
            found[(table, hash_key, range_key)] = copy.deepcopy(item) if item is not None else None
        return found

    def restore(found) -> None:
        for (table, hash_key, range_key), item in found.items():
            if range_key is None:
                if item is None:
                    table.items.pop(hash_key, None)
                else:
                    table.items[hash_key] = item
                continue
            bucket = table.items.get(hash_key)
            if item is not None:
                table.items[hash_key][range_key] = item
            elif bucket is not None:
                bucket.pop(range_key, None)
                if not bucket:
                    del table.items[hash_key]

    def transact_write_items(self, transact_items):
        try:
            found = touched_items(self, transact_items)
        except Exception:  # malformed: moto's own validation answers it
            found = None
        if found is None:
            return unpatched(self, transact_items)
        per_item.active = True
        try:
            return unpatched(self, transact_items)
        except BaseException:
            restore(found)
            raise
        finally:
            per_item.active = False

    DynamoDBBackend.transact_write_items = transact_write_items


def serialize_dynamodb() -> None:
    """Make the in-process moto server apply DynamoDB requests one at a time, as DynamoDB is atomic per item.

    moto's DynamoDB backend takes no lock: under load, two concurrent `ADD`s (or a transaction and an
    `ADD`) on one item can interleave their read-modify-write and lose an update, which real DynamoDB
    never does. Concurrency tests would then measure moto, not the gateway. Idempotent; process-wide.
    It also makes moto honour ClientRequestToken (below): both are what the local stack's DynamoDB needs.
    """
    honour_client_request_tokens()
    global _lock
    if _lock is not None:
        return
    import threading

    from moto.dynamodb.responses import DynamoHandler

    _lock = threading.RLock()
    unlocked = DynamoHandler.call_action

    def call_action(self):
        with _lock:
            return unlocked(self)

    DynamoHandler.call_action = call_action


# -- DynamoDB: ClientRequestToken ------------------------------------------------------------------------
#
# moto ignores TransactWriteItems' ClientRequestToken and applies every call, so a retried transaction
# whose first answer was lost is applied twice locally where DynamoDB applies it once. DynamoDB's rules
# (API reference, TransactWriteItems, ClientRequestToken; developer guide, "Amazon DynamoDB Transactions:
# How it works", Idempotency): a repeat with the same token within 10 minutes of the first request's
# completion succeeds without making any changes; the same token with other parameters in that window is
# answered IdempotentParameterMismatchException; after 10 minutes the token is new again.
# https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-apis-txwriteitems-idempotency

TOKEN_WINDOW_SECONDS = 600.0
token_clock = None  # a callable returning seconds; None: time.monotonic (tests move it)
_tokens: dict | None = None


def honour_client_request_tokens() -> None:
    """Make the in-process moto server apply a TransactWriteItems once per ClientRequestToken, as DynamoDB
    does. Idempotent; process-wide. Only successful transactions are remembered: a cancelled one made no
    change, and its token may be sent again (the gateway starts a new attempt with a new token anyway)."""
    global _tokens
    if _tokens is not None:
        return
    import json
    import threading
    import time

    from moto.core.exceptions import JsonRESTError
    from moto.dynamodb.responses import DynamoHandler

    class IdempotentParameterMismatch(JsonRESTError):
        def __init__(self) -> None:
            super().__init__(
                "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
                "A request with this client token was already made with other parameters",
            )

    _tokens = {}
    lock = threading.Lock()
    unpatched = DynamoHandler.transact_write_items

    def transact_write_items(self):
        body = getattr(self, "body", None) or {}
        token = body.get("ClientRequestToken")
        if not token:
            return unpatched(self)
        clock = token_clock or time.monotonic
        params = json.dumps({k: v for k, v in body.items() if k != "ClientRequestToken"}, sort_keys=True, default=str)
        key = (self.current_account, self.region, token)
        with lock:
            now = clock()
            for stale in [k for k, (_, _, done) in _tokens.items() if now - done > TOKEN_WINDOW_SECONDS]:
                del _tokens[stale]
            seen = _tokens.get(key)
            if seen is not None:
                if seen[0] != params:
                    raise IdempotentParameterMismatch()
                return seen[1]
            result = unpatched(self)
            _tokens[key] = (params, result, clock())
            return result

    DynamoHandler.transact_write_items = transact_write_items


def forget_client_request_tokens() -> None:
    """Forget every remembered token, as if ten minutes had passed (tests)."""
    if _tokens is not None:
        _tokens.clear()
