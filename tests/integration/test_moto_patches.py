"""The local stack's moto tells the truth under load (gatewayctl/local/moto_patches.py): every acknowledged
Kinesis put is kept, a cancelled transaction changes nothing, and moto keeps no copy per transaction.
Against the worker's moto server, which the stack has patched."""

from __future__ import annotations

import gc
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from botocore.exceptions import ClientError

PUTS = 2_000
THREADS = 32


@contextmanager
def frequent_thread_switches() -> Iterator[None]:
    """Switch threads every 10 µs (Python's default is 5 ms), so an unlocked read-modify-write in moto
    is interrupted often enough for a lost put to show in 2,000 (about 80 were lost without the lock)."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def test_every_acknowledged_kinesis_put_is_read_back(backing_stack) -> None:
    # Given a stream in the stack's moto
    kinesis = backing_stack.client("kinesis")
    stream = f"puts-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})
    acknowledged: dict[str, tuple[str, str]] = {}
    lock = threading.Lock()

    def put(n: int) -> None:
        answer = kinesis.put_record(StreamName=stream, Data=f"record-{n}".encode(), PartitionKey=f"tenant-{n % 7}")
        with lock:
            acknowledged[f"record-{n}"] = (answer["ShardId"], answer["SequenceNumber"])

    # When 32 threads put 2,000 records
    with frequent_thread_switches(), ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(put, range(PUTS)))

    # Then every acknowledged record is in the stream, at the position it was acknowledged with
    stored: dict[str, tuple[str, str]] = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            if not page["Records"]:
                break
            for record in page["Records"]:
                stored[record["Data"].decode()] = (shard["ShardId"], record["SequenceNumber"])
            iterator = page.get("NextShardIterator")
    assert len(acknowledged) == PUTS
    assert sorted(set(acknowledged) - set(stored)) == []
    assert stored == acknowledged
    kinesis.delete_stream(StreamName=stream)


@pytest.fixture
def table(backing_stack) -> Iterator[str]:
    ddb = backing_stack.client("dynamodb")
    name = f"tx-{uuid.uuid4().hex[:8]}"
    ddb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in ("pk", "sk")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )
    yield name
    ddb.delete_table(TableName=name)


def add(table: str, pk: str, n: int, *, at_most: int | None = None) -> dict:
    update = {
        "TableName": table,
        "Key": {"pk": {"S": pk}, "sk": {"S": "minute"}},
        "UpdateExpression": "ADD requests :n",
        "ExpressionAttributeValues": {":n": {"N": str(n)}},
    }
    if at_most is not None:
        update["ConditionExpression"] = "attribute_not_exists(requests) OR requests <= :max"
        update["ExpressionAttributeValues"][":max"] = {"N": str(at_most)}
        update["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    return {"Update": update}


def requests_of(ddb, table: str, pk: str) -> int | None:
    item = ddb.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": "minute"}}, ConsistentRead=True)
    return int(item["Item"]["requests"]["N"]) if "Item" in item else None


def test_a_cancelled_transaction_leaves_every_item_as_it_was(backing_stack, table) -> None:
    ddb = backing_stack.client("dynamodb")
    ddb.transact_write_items(TransactItems=[add(table, "old", 5), add(table, "full", 10)])

    # When a transaction updates an item, creates one, puts one, and then fails a condition
    with pytest.raises(ClientError) as cancelled:
        ddb.transact_write_items(
            TransactItems=[
                add(table, "old", 1),
                add(table, "new", 1),
                {"Put": {"TableName": table, "Item": {"pk": {"S": "put"}, "sk": {"S": "minute"}}}},
                add(table, "full", 1, at_most=9),
            ]
        )

    # Then it is cancelled with the refusing item's old image, and nothing it touched changed
    reasons = cancelled.value.response["CancellationReasons"]
    assert [r["Code"] for r in reasons] == ["None", "None", "None", "ConditionalCheckFailed"]
    assert reasons[3]["Item"]["requests"] == {"N": "10"}
    assert requests_of(ddb, table, "old") == 5
    assert requests_of(ddb, table, "full") == 10
    assert requests_of(ddb, table, "new") is None
    assert "Item" not in ddb.get_item(TableName=table, Key={"pk": {"S": "put"}, "sk": {"S": "minute"}})
    # And the next transaction applies in full
    ddb.transact_write_items(TransactItems=[add(table, "old", 1), add(table, "new", 1)])
    assert (requests_of(ddb, table, "old"), requests_of(ddb, table, "new")) == (6, 1)


def test_a_transaction_naming_one_item_twice_changes_nothing(backing_stack, table) -> None:
    ddb = backing_stack.client("dynamodb")
    ddb.transact_write_items(TransactItems=[add(table, "old", 5)])
    with pytest.raises(ClientError) as refused:
        ddb.transact_write_items(TransactItems=[add(table, "new", 1), add(table, "old", 1), add(table, "old", 2)])
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert (requests_of(ddb, table, "old"), requests_of(ddb, table, "new")) == (5, None)


def test_moto_keeps_no_copy_per_transaction(backing_stack, table) -> None:
    """moto registered every model object it made, and a transaction deep-copied its whole table: each
    transaction on a table of 300 items kept 300 item copies (about 0.9 MB a transaction in the stack)."""
    from moto.dynamodb.models.dynamo_type import Item

    ddb = backing_stack.client("dynamodb")
    for n in range(0, 300, 25):
        ddb.transact_write_items(TransactItems=[add(table, f"filler-{m}", 1) for m in range(n, n + 25)])

    def live_items() -> int:
        gc.collect()
        return sum(isinstance(o, Item) for o in gc.get_objects())

    before = live_items()
    for _ in range(100):
        ddb.transact_write_items(TransactItems=[add(table, "hot", 1), add(table, "filler-0", 1)])
    grown = live_items() - before

    assert requests_of(ddb, table, "hot") == 100
    assert grown <= 10, f"{grown} moto items more after 100 transactions on 2 items (1 new)"
