"""Circuit breakers: the state machine, sharing off the request path, and the DynamoDB store."""

from __future__ import annotations

import asyncio

import pytest
from gateway.domain.background import Background
from gateway.domain.breaker import Breakers, BreakerState

pytestmark = pytest.mark.anyio
KEY = "bedrock#us-east-1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class MemoryStore:
    def __init__(self, delay: float = 0.0) -> None:
        self.items: dict[str, BreakerState] = {}
        self.delay = delay
        self.loads = 0

    async def load(self, keys: list[str]) -> dict[str, BreakerState]:
        self.loads += 1
        await asyncio.sleep(self.delay)
        return {k: self.items[k] for k in keys if k in self.items}

    async def save(self, key: str, state: BreakerState) -> None:
        self.items[key] = state


def breakers(clock: Clock, store=None, spawn=None) -> Breakers:
    return Breakers(
        failure_threshold=3, open_seconds=30, store=store, spawn=spawn, clock=clock, refresh_seconds=5
    )


def test_opens_after_threshold_and_half_opens_after_cool_down() -> None:
    clock = Clock()
    b = breakers(clock)
    b.record_failure(KEY)
    b.record_failure(KEY)
    assert b.status(KEY) == "closed" and b.allows(KEY)
    b.record_failure(KEY)
    assert b.status(KEY) == "open" and not b.allows(KEY)

    clock.now += 31
    assert b.status(KEY) == "half_open" and b.allows(KEY)
    b.record_failure(KEY)  # the trial failed: open again
    assert b.status(KEY) == "open"
    clock.now += 31
    b.record_success(KEY)
    assert b.status(KEY) == "closed"


def test_success_resets_the_failure_count() -> None:
    b = breakers(Clock())
    b.record_failure(KEY)
    b.record_failure(KEY)
    b.record_success(KEY)
    b.record_failure(KEY)
    b.record_failure(KEY)
    assert b.status(KEY) == "closed"


async def test_transitions_are_shared_between_containers() -> None:
    clock, store, background = Clock(), MemoryStore(), Background()
    first = breakers(clock, store, background.spawn)
    second = breakers(clock, store, background.spawn)
    for _ in range(3):
        first.record_failure(KEY)
    await background.drain()
    assert store.items[KEY].state == "open"

    second.maybe_refresh([KEY])
    await background.drain()
    assert second.status(KEY) == "open"

    clock.now += 31
    first.record_success(KEY)
    await background.drain()
    second._last_refresh = float("-inf")  # the next refresh is due
    second.maybe_refresh([KEY])
    await background.drain()
    assert second.status(KEY) == "closed"


async def test_refresh_never_blocks_and_is_rate_limited() -> None:
    store, background = MemoryStore(delay=0.2), Background()
    b = breakers(Clock(), store, background.spawn)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(50):
        b.maybe_refresh([KEY])
    assert loop.time() - started < 0.05  # the slow store did not delay the callers
    await background.drain()
    assert store.loads == 1


async def test_an_older_shared_state_does_not_replace_a_newer_local_one() -> None:
    clock = Clock()
    b = breakers(clock)
    for _ in range(3):
        b.record_failure(KEY)
    b.merge({KEY: BreakerState("closed", 0.0, updated_at=clock.now - 100)})
    assert b.status(KEY) == "open"


def test_dynamo_store_round_trip_and_newer_wins() -> None:
    import boto3
    from gateway.adapters.breaker_store import DynamoBreakerStore
    from moto import mock_aws

    from tests.unit.runtime_fakes import settings

    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="tenants",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        store = DynamoBreakerStore(settings(), client=ddb)
        newer = BreakerState("open", opened_until=2030.0, updated_at=2000.0)
        asyncio.run(store.save(KEY, newer))
        asyncio.run(store.save(KEY, BreakerState("closed", 0.0, updated_at=1500.0)))  # late, older: ignored

        loaded = asyncio.run(store.load([KEY, "vertex#us-east5"]))

        assert loaded == {KEY: BreakerState("open", 2030.0, 2000.0)}
        item = ddb.get_item(TableName="tenants", Key={"pk": {"S": "BREAKER#" + KEY}, "sk": {"S": "STATE"}})[
            "Item"
        ]
        assert item["state"]["S"] == "open"
