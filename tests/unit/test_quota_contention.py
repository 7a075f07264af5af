"""The DynamoDB quota under contention: settlement retries wait on the event loop (not in the shared
executor's threads), each a new attempt with a new token, and running out of reservation retries is an
`error` 429, not a policy denial."""

from __future__ import annotations

import threading
import time

import pytest
from botocore.exceptions import ClientError
from gateway.app import dynamo_services
from gateway.domain import quota
from gateway.domain.catalog import load_catalog
from gateway.domain.errors import RateLimitError
from gateway.domain.leases import KeyState
from gateway.domain.metering import QuotaService
from gateway.models import tenancy as tenancy_model
from gateway.models.exchange import Usage
from gateway.models.quota import Reservation

from tests.unit.runtime_fakes import settings

pytestmark = pytest.mark.anyio


class ConflictingClient:
    """Takes a hold's first transaction, then rejects the next `conflicts` transactions (and, with
    `always`, every one) as DynamoDB rejects them while another transaction holds the items."""

    def __init__(self, conflicts: int, *, always: bool = False) -> None:
        self.conflicts = conflicts
        self.always = always
        self.tokens: list[str] = []

    def transact_write_items(self, **kwargs):
        self.tokens.append(kwargs["ClientRequestToken"])
        creates = any("Put" in item for item in kwargs["TransactItems"])
        if self.always or (not creates and self.conflicts > 0):
            self.conflicts -= 1
            reasons = [{"Code": "TransactionConflict"} for _ in kwargs["TransactItems"]]
            raise ClientError(
                {"Error": {"Code": "TransactionCanceledException"}, "CancellationReasons": reasons},
                "TransactWriteItems",
            )
        return {}


def make(client: ConflictingClient, **store_options) -> tuple[QuotaService, quota.QuotaPlan]:
    from gateway.adapters.dynamo_quota import DynamoQuotaStore

    now = 1_700_000_000.0
    _, quota_ = dynamo_services(settings(), load_catalog(), client=client, clock=lambda: now)
    quota_.store = DynamoQuotaStore(settings(), client=client, **store_options)
    no_limits = tenancy_model.Limits()
    plan = quota.plan("t1", "p1", no_limits, no_limits, quota.Amount(1, 100, 10), now)
    return quota_, plan


async def test_settlement_conflict_retries_do_not_sleep_in_executor_threads(monkeypatch) -> None:
    # Settlement is one transaction now (it was three UpdateItems): its conflicts are retried the same way.
    slept_in: list[str] = []
    real_sleep = time.sleep

    def recording_sleep(seconds: float) -> None:
        slept_in.append(threading.current_thread().name)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", recording_sleep)
    client = ConflictingClient(conflicts=4)
    quota_, plan = make(client)
    state = quota_._keys.setdefault("USAGE#t1", KeyState())
    hold = await quota_._hold(state, plan, switch=False)
    reservation = Reservation("t1", "p1", plan, {}, (Usage(), 0.0), lease=hold)
    await quota_.release(reservation)

    assert len(client.tokens) == 1 + 4 + 1  # the hold, four conflicts, the release that went through
    assert len(set(client.tokens[1:])) == 5  # a cancelled attempt did not apply: each retry is a new one
    assert slept_in == []  # the waits were on the event loop


async def test_running_out_of_reservation_retries_is_a_429_but_not_a_policy_refusal() -> None:
    quota_, plan = make(ConflictingClient(0, always=True), contention_seconds=0.05)
    state = quota_._keys.setdefault("USAGE#t1", KeyState())
    with pytest.raises(RateLimitError) as caught:
        await quota_._hold(state, plan, switch=False)

    assert caught.value.status == 429 and caught.value.headers["retry-after"] == "1"
    assert not caught.value.policy_refusal
    assert state.hot_until > 0  # contention makes the key draw from leases from now on


async def test_a_settlement_waits_out_longer_contention_than_a_reservation() -> None:
    # It runs once the caller has its reply: giving up would leave the whole reservation charged.
    ticks = iter(range(1000))  # each look at the clock, a second later
    client = ConflictingClient(conflicts=5)
    quota_, plan = make(client, monotonic=lambda: float(next(ticks)))
    state = quota_._keys.setdefault("USAGE#t1", KeyState())
    hold = await quota_._hold(state, plan, switch=False)
    await quota_.release(Reservation("t1", "p1", plan, {}, (Usage(), 0.0), lease=hold))

    assert len(client.tokens) == 1 + 5 + 1  # the hold, five conflicts over more than 3 s, the release


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


class RefusingStore:
    """Every hold refused by the window at `index`, as a failed condition on that item refuses it."""

    def __init__(self, index: int) -> None:
        self.index = index

    async def acquire(self, grant, returning=None, *, patient=True):
        from gateway.domain.ports import WindowRefused

        raise WindowRefused(self.index, None)


async def test_a_refusal_after_every_attempt_names_the_window_that_refused() -> None:
    quota_, _ = make(ConflictingClient(conflicts=0))
    quota_.store = RefusingStore(index=1)

    async def pools_gave_back(*args, **kwargs) -> bool:
        return True  # the pools gave back what they held: each attempt tries the window item again

    quota_.pools.hold = pools_gave_back
    limits = tenancy_model.Limits(requests_per_minute=100, tokens_per_day=10_000)
    plan = quota.plan("t1", "p1", limits, tenancy_model.Limits(), quota.Amount(1, 100, 10), 1_700_000_000.0)
    state = quota_._keys.setdefault("USAGE#t1", KeyState())
    with pytest.raises(RateLimitError) as refused:
        await quota_._hold(state, plan, switch=False)
    assert plan.charges[1].window.name == "day"
    assert refused.value.message == quota.refusal_message(plan.charges[1])
