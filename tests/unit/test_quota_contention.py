"""The DynamoDB quota under contention: settlement retries wait on the event loop (not in the shared
executor's threads), and running out of reservation retries is an `error` 429, not a policy denial."""

from __future__ import annotations

import threading
import time

import pytest
from botocore.exceptions import ClientError
from gateway.app import dynamo_services
from gateway.domain import quota
from gateway.domain.catalog import load_catalog
from gateway.domain.errors import RateLimitError
from gateway.domain.metering import QuotaService
from gateway.models import tenancy as tenancy_model
from gateway.models.exchange import Usage
from gateway.models.quota import Reservation

from tests.unit.runtime_fakes import settings

pytestmark = pytest.mark.anyio


class ConflictingClient:
    """Rejects the first `conflicts` update_items (and every transaction) as DynamoDB does under contention."""

    def __init__(self, conflicts: int) -> None:
        self.conflicts = conflicts
        self.updates = 0

    def update_item(self, **kwargs):
        self.updates += 1
        if self.conflicts > 0:
            self.conflicts -= 1
            raise ClientError({"Error": {"Code": "TransactionConflictException"}}, "UpdateItem")
        return {"Attributes": {"requests": {"N": "1"}, "tokens": {"N": "7"}, "usd_micros": {"N": "0"}}}

    def transact_write_items(self, **kwargs):
        reasons = [{"Code": "TransactionConflict"} for _ in kwargs["TransactItems"]]
        raise ClientError(
            {"Error": {"Code": "TransactionCanceledException"}, "CancellationReasons": reasons}, "TransactWriteItems"
        )


def make(conflicts: int) -> tuple[QuotaService, ConflictingClient, quota.QuotaPlan]:
    client = ConflictingClient(conflicts)
    _, quota_ = dynamo_services(settings(), load_catalog(), client=client, clock=lambda: 1_700_000_000.0)
    no_limits = tenancy_model.Limits()
    plan = quota.plan("t1", "p1", no_limits, no_limits, quota.Amount(1, 100, 10), 1_700_000_000.0)
    return quota_, client, plan


async def test_settlement_conflict_retries_do_not_sleep_in_executor_threads(monkeypatch) -> None:
    slept_in: list[str] = []
    real_sleep = time.sleep

    def recording_sleep(seconds: float) -> None:
        slept_in.append(threading.current_thread().name)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", recording_sleep)
    quota_, client, plan = make(conflicts=4)
    reservation = Reservation("t1", "p1", plan, {}, (Usage(), 0.0))
    await quota_.release(reservation)

    assert client.updates == len(plan.charges) + 4  # every conflict retried until it went through
    assert slept_in == []  # the waits were on the event loop


async def test_running_out_of_reservation_retries_is_a_429_but_not_a_policy_refusal() -> None:
    quota_, _, plan = make(conflicts=0)
    with pytest.raises(RateLimitError) as caught:
        await quota_.store.reserve(plan)

    assert caught.value.status == 429 and caught.value.headers["retry-after"] == "1"
    assert not caught.value.policy_refusal


async def test_contention_is_audited_as_error_not_denied() -> None:
    from gateway.domain.errors import QuotaContentionError

    from tests.unit.test_pipeline import BODY, World

    world = World()

    async def contended(*args):
        raise QuotaContentionError("too many concurrent requests", retry_after=1)

    world.quota.reserve = contended  # type: ignore[method-assign]
    response = await world.post(BODY)

    assert response.status_code == 429
    [outcome] = world.audit.outcomes
    assert (outcome.outcome, outcome.quota_decision) == ("error", "error")
