"""Breakers shared across containers through the tenants table, on the local stack (moto DynamoDB)."""

from __future__ import annotations

import asyncio
import time

import pytest

pytestmark = pytest.mark.integration
MODEL = "claude-haiku-4-5"
HELLO = [{"role": "user", "content": "hello"}]


def _breaker_item(stack, key: str) -> dict | None:
    table = stack.outputs["TenantsTableName"]
    response = stack.client("dynamodb").get_item(
        TableName=table, Key={"pk": {"S": f"BREAKER#{key}"}, "sk": {"S": "STATE"}}, ConsistentRead=True
    )
    return response.get("Item")


def test_an_opened_breaker_is_written_to_the_tenants_table(
    make_tenant, make_user, gateway_client, faults
) -> None:
    user = make_user(make_tenant("us"))
    faults.set_fault("us-east-1", "throttle")  # until cleared
    threshold = faults.app.state.settings.breaker_failure_threshold
    with gateway_client(user.token) as client:
        for _ in range(threshold):
            client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)

    deadline = time.monotonic() + 5  # the write is fire-and-forget: it lands just after the reply
    item = _breaker_item(faults, "bedrock#us-east-1")
    while item is None and time.monotonic() < deadline:
        time.sleep(0.05)
        item = _breaker_item(faults, "bedrock#us-east-1")
    assert item is not None and item["state"]["S"] == "open"
    assert float(item["opened_until"]["N"]) > time.time()


def test_a_breaker_opened_by_another_container_is_honoured(
    make_tenant, make_user, gateway_client, faults
) -> None:
    """Another container's transition reaches this one through the background refresh, not a request."""
    from gateway.adapters.breaker_store import DynamoBreakerStore
    from gateway.domain.breaker import BreakerState

    store = DynamoBreakerStore(faults.app.state.settings, client=faults.client("dynamodb"))
    now = time.time()
    asyncio.run(store.save("bedrock#us-east-1", BreakerState("open", now + 60, now + 0.001)))
    breakers = faults.app.state.breakers
    breakers._last_refresh = float("-inf")  # a refresh is due (they happen at most every few seconds)
    user = make_user(make_tenant("us"))
    with gateway_client(user.token) as client:
        client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)  # triggers the refresh
        deadline = time.monotonic() + 5
        while breakers.status("bedrock#us-east-1") != "open" and time.monotonic() < deadline:
            time.sleep(0.05)
        faults.reset_counts()
        client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)

    counts = faults.request_counts()
    assert counts.get("us-east-1", {}).get("total", 0) == 0
    assert counts["us-west-2"]["total"] == 1
