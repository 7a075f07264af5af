"""The tenancy suite's concurrency cases again, under the DynamoDB model with its conflicts, throttling and
latency (tests/support/ddb_model.py) on virtual time: zero overspend, no refusal while budget remains,
and stored counters that end exactly at what was used once the containers have given their leases back."""

from __future__ import annotations

import asyncio
import random

import pytest
from gateway.models.tenancy import Limits

from tests.support import virtual_time
from tests.support.ddb_model import DynamoModel, ModelConfig
from tests.support.quota_fleet import Fleet


def run(fleet: Fleet, main):
    result, _ = virtual_time.run(main, delay=fleet.delay)
    return result


def test_200_concurrent_requests_in_one_container_against_a_budget_of_50():
    fleet = Fleet(limits=Limits(requests_per_minute=50, tokens_per_minute=1_000_000))

    async def main():
        service = fleet.container()
        principal = fleet.principal()
        await asyncio.gather(
            *(
                fleet.request(service, principal, max_tokens=100 + i, output_tokens=1 + i % 13, seconds=0.2)
                for i in range(200)
            )
        )
        await fleet.close()

    run(fleet, main())
    assert (fleet.outcomes.served, fleet.outcomes.refused, fleet.outcomes.contention) == (50, 150, 0)
    assert fleet.overspent() == {} and fleet.under_counted() == {} and fleet.exact() == {}
    assert fleet.model.stats.conflicts == 0  # one container never races itself on a key's items


def test_containers_that_meet_conflicts_lease_and_serve_exactly_the_budget():
    # One request at a time per container, as in Lambda: 2,400 requests at 300 a second want a budget of 1,000.
    fleet = Fleet(limits=Limits(requests_per_minute=1000, tokens_per_minute=10_000_000))
    run(fleet, stream(fleet, requests=2400, rate=300, containers=40, seed=11))
    assert fleet.model.stats.conflicts > 0  # the model did make them meet
    assert fleet.counts()["leases"] > 0  # and they went on from leases while the budget was plentiful
    assert fleet.overspent() == {} and fleet.under_counted() == {} and fleet.exact() == {}
    near_the_limit(fleet, limit=1000, offered=2400)


async def stream(fleet: Fleet, *, requests: int, rate: float, containers: int, seed: int, max_tokens: int = 200):
    """Requests arriving at `rate`, each to an idle container (a new one when none is idle), one request
    at a time per container, as Lambda runs them."""
    rng = random.Random(seed)
    principal = fleet.principal()
    idle = [fleet.container() for _ in range(containers)]
    tasks = []

    async def one() -> None:
        service = idle.pop() if idle else fleet.container()
        try:
            output, seconds = rng.randint(1, max_tokens), rng.uniform(0.05, 0.3)
            await fleet.request(service, principal, max_tokens=max_tokens, output_tokens=output, seconds=seconds)
        finally:
            idle.append(service)

    for _ in range(requests):
        tasks.append(asyncio.ensure_future(one()))
        await asyncio.sleep(rng.expovariate(rate))
    await asyncio.gather(*tasks)
    await fleet.close()


def test_principal_limits_hold_for_each_principal_under_conflicts():
    fleet = Fleet(limits=Limits(requests_per_minute=1000), principal_limits=Limits(requests_per_minute=5))

    async def main():
        principals = [fleet.principal(f"sub-{n}") for n in range(4)]
        services = [fleet.container() for _ in range(8)]
        await asyncio.gather(
            *(fleet.request(services[i % 8], principals[i % 4], seconds=0.1) for i in range(80))
        )
        await fleet.close()

    run(fleet, main())
    assert (fleet.outcomes.served, fleet.outcomes.contention + fleet.outcomes.settle_failed) == (20, 0)  # five each
    assert fleet.overspent() == {} and fleet.under_counted() == {} and fleet.exact() == {}


def test_a_stream_over_one_request_containers_serves_the_budget_and_no_more():
    # 600 requests over 3 s want a budget of 300.
    fleet = Fleet(limits=Limits(requests_per_minute=300, tokens_per_minute=2_000_000))
    run(fleet, stream(fleet, requests=600, rate=200, containers=40, seed=7))
    assert fleet.overspent() == {} and fleet.under_counted() == {} and fleet.exact() == {}
    near_the_limit(fleet, limit=300, offered=600)


def near_the_limit(fleet: Fleet, *, limit: int, offered: int) -> None:
    """What docs/tenancy.md ("Hot tenants", near the limit) promises when hundreds of containers, each
    new one starting cold, meet a requests limit: never one request more than the limit; refused while
    budget remained only for what pools and leases still held in the last second (at most 5% of the limit
    here), and 429s for contention on the tenant's items, not the limit, for at most 1% of the requests."""
    assert fleet.outcomes.served <= limit
    assert fleet.outcomes.served >= 0.95 * limit
    assert fleet.outcomes.contention + fleet.outcomes.settle_failed <= 0.01 * offered


def test_a_tokens_budget_is_never_overspent_and_little_of_it_strands():
    # Reservations (input + max_tokens) are far above what requests use: settlements give most of it back.
    fleet = Fleet(limits=Limits(tokens_per_minute=60_000))
    run(fleet, stream(fleet, requests=1000, rate=100, containers=20, seed=3, max_tokens=1000))
    used = fleet.charged[fleet.minute()].tokens
    assert fleet.overspent() == {} and fleet.under_counted() == {} and fleet.exact() == {}
    assert fleet.outcomes.contention == fleet.outcomes.settle_failed == 0
    assert fleet.outcomes.refused > 0
    # Refused only once what is left is below one reservation (1,020 tokens) per container in flight.
    assert 60_000 - used < 1020 * len(fleet.containers)


def test_the_model_conflicts_throttles_and_honours_tokens():
    model = DynamoModel(ModelConfig(partition_wcu=10, burst_seconds=1.0), clock=lambda: 0.0)

    def add(pk: str, token: str, n: int = 1, sk: str = "x"):
        return model.transact_write_items(
            ClientRequestToken=token,
            TransactItems=[
                {
                    "Update": {
                        "TableName": "t",
                        "Key": {"pk": {"S": pk}, "sk": {"S": sk}},
                        "UpdateExpression": "ADD n :n",
                        "ExpressionAttributeValues": {":n": {"N": str(n)}},
                    }
                }
            ],
        )

    from botocore.exceptions import ClientError

    add("a", "t1")
    with pytest.raises(ClientError) as conflict:  # the first still holds the item (same instant)
        add("a", "t2")
    assert conflict.value.response["CancellationReasons"] == [{"Code": "TransactionConflict"}]
    with pytest.raises(ClientError) as running:
        add("a", "t1")
    assert running.value.response["Error"]["Code"] == "TransactionInProgressException"
    with pytest.raises(ClientError) as mismatch:
        add("a", "t1", 2)
    assert mismatch.value.response["Error"]["Code"] == "IdempotentParameterMismatchException"
    for n in range(5):  # 2 write units each (a transaction writes twice), 10 a second on partition b
        add("b", f"b{n}", sk=f"x{n}")
    with pytest.raises(ClientError) as throttled:
        add("b", "b5", sk="x5")
    assert throttled.value.response["CancellationReasons"] == [{"Code": "ThrottlingError"}]
    assert model.item("t", "a", "x")["n"] == {"N": "1"}


def test_containers_of_a_tenant_marked_hot_lease_from_their_first_request():
    fleet = Fleet(limits=Limits(requests_per_minute=100_000))
    mark = {"pk": {"S": "TENANT#acme"}, "sk": {"S": "QUOTA#HOT"}, "until": {"N": str(int(fleet.epoch + 600))}}
    fleet.model.tables["tenants"]["TENANT#acme"]["QUOTA#HOT"] = mark

    async def main():
        principal = fleet.principal()
        await asyncio.gather(*(fleet.request(fleet.container(), principal, seconds=0.1) for _ in range(20)))
        await fleet.close()

    run(fleet, main())
    counts = fleet.counts()
    assert counts.get("holds", 0) == 0 and counts["leases"] == 20 and fleet.outcomes.served == 20
    assert fleet.overspent() == {} and fleet.under_counted() == {} and fleet.exact() == {}
