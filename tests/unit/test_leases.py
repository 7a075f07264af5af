"""Leases and holds as the domain keeps them (gateway.domain.leases): sizing over the buckets a lease spans,
commitments, routing through a pool, and the tenant's hot mark."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.domain import quota
from gateway.domain.leases import KeyState, Lease, LeasePolicy
from gateway.models import tenant_items
from gateway.models.quota import LEASE, Amount, HoldGrant
from gateway.models.tenancy import Limits

NOW = datetime(2026, 11, 23, 3, 40, 45, tzinfo=UTC).timestamp()  # 15 s before the minute ends


def test_a_lease_covers_every_bucket_it_spans_each_by_its_share_within_the_limits():
    policy = LeasePolicy(seconds=120.0, max_share=0.5)
    charges = quota.charges_over("acme", "p", Limits(requests_per_minute=1000), Limits(), NOW, NOW + 120)
    # 03:40 (15 s of it), 03:41 (60 s), 03:42 (45 s), the day, the month
    assert [c.sk for c in charges] == [
        "minute#2026-11-23T03:40",
        "minute#2026-11-23T03:41",
        "minute#2026-11-23T03:42",
        "day#2026-11-23",
        "month#2026-11",
    ]
    one = Amount(1, 100, 10)
    amounts = policy.lease_amounts(charges, one, Amount(1, 50, 5), 240, 1, NOW, NOW + 120)
    # requests: 240 over 120 s, by share, plus one in flight
    assert [a.requests for a in amounts] == [31, 121, 91, 241, 241]
    assert amounts[0].tokens == 30 * 50 + 100 and amounts[3].tokens == 240 * 50 + 100
    # within max_share of a limit: a 1000 requests_per_minute limit caps a minute's grant at 500
    capped = policy.lease_amounts(charges, one, one, 4000, 1, NOW, NOW + 120)
    assert [a.requests for a in capped[:3]] == [500, 500, 500]
    assert capped[3].requests == 4001  # the day has no requests limit


def test_lease_sizes_follow_the_rate_and_double_when_they_run_out_early():
    policy = LeasePolicy(seconds=120.0, first_requests=32, max_requests=4096)
    assert policy.next_requests(0, exhausted=False, rate=0.0) == 32
    assert policy.next_requests(32, exhausted=True, rate=0.1) == 64
    assert policy.next_requests(32, exhausted=False, rate=2.0) == 360  # 1.5 x 2/s x 120 s
    assert policy.next_requests(4000, exhausted=True, rate=0.0) == 4096


def test_a_pool_refill_takes_eight_leases_within_two_percent_of_a_limit():
    policy = LeasePolicy()
    charge = quota.charges_over("acme", "p", Limits(tokens_per_minute=1_000_000), Limits(), NOW, NOW + 1)[0]
    lease = Amount(10, 5_000, 100)
    assert policy.refill_amount(charge, lease) == Amount(80, 20_000, 800)  # tokens capped at 2% of the limit
    big = Amount(1, 30_000, 0)
    assert policy.refill_amount(charge, big).tokens == 30_000  # never less than the lease that asked


def test_a_lease_commits_exactly_what_it_uses_and_gives_back_the_rest():
    charges = quota.charges_over("acme", "p", Limits(requests_per_minute=100), Limits(), NOW, NOW + 10)
    keys = [(c.pk, c.sk) for c in charges]
    granted = Amount(10, 1000, 100)
    grant = HoldGrant(
        id="l1",
        kind=LEASE,
        home=("USAGE#acme#H0", "lease#x#l1"),
        key="USAGE#acme",
        charges=charges,
        amounts=(granted,) * len(charges),
        committed=(Amount(),) * len(charges),
        ends_at=NOW + 10,
        expires_at=0,
    )
    lease = Lease(grant)
    request = Amount(1, 200, 20)
    assert lease.serves(keys, request, NOW)
    lease.take(keys, request)
    assert lease.uncommitted(keys)
    commit = lease.next_commit(LeasePolicy())
    assert commit.seq == 1 and commit.committed[0] == request and not commit.extra
    lease.committed_to(commit)
    lease.settle(keys, Amount(0, -150, -15))  # it used 50 tokens of its 200
    assert not lease.uncommitted(keys) and lease.slack(keys[0]) == Amount(9, 950, 95)
    back = lease.give_back()
    assert back.seq == 1 and back.deltas[0] == Amount(1, 50, 5) - granted
    lease.take(keys, Amount(1, 2000, 20))  # more than the grant: never served from it
    assert not lease.serves(keys, request, NOW)
    assert not lease.serves(keys, Amount(), NOW + 10)  # ended


def test_a_settlement_beyond_the_grant_grows_it_by_the_difference():
    charges = quota.charges_over("acme", "p", Limits(), Limits(), NOW, NOW + 1)
    keys = [(c.pk, c.sk) for c in charges]
    grant = HoldGrant("l2", LEASE, ("h", "s"), "k", charges, (Amount(1, 100, 1),) * 3, (Amount(),) * 3, NOW + 1, 0)
    lease = Lease(grant)
    lease.take(keys, Amount(1, 100, 1))
    lease.settle(keys, Amount(0, 50, 0))  # billed retries: charged more than reserved
    commit = lease.next_commit(LeasePolicy())
    assert commit.extra[0] == Amount(0, 50, 0) and commit.granted[0] == Amount(1, 150, 1)


def test_a_lease_from_a_pool_routes_the_requests_window_items_to_the_pools():
    charges = quota.charges_over("acme", "p", Limits(requests_per_minute=100), Limits(), NOW, NOW + 1)
    keys = [(c.pk, c.sk) for c in charges]
    route = {k: (f"{k[0]}#S3", k[1]) for k in keys}
    pooled = tuple(
        quota.WindowCharge(c.scope, f"{c.pk}#S3", c.window, dict.fromkeys(c.limits, 0), pool=True) for c in charges
    )
    grant = HoldGrant("l3", LEASE, ("h", "s"), "k", pooled, (Amount(5, 500, 50),) * 3, (Amount(),) * 3, NOW + 1, 0)
    lease = Lease(grant, route)
    lease.take(keys, Amount(1, 10, 1))
    assert lease.used[("USAGE#acme#S3", keys[0][1])] == Amount(1, 10, 1)
    assert [c.pk for c in lease.charges_for(keys)] == ["USAGE#acme#S3"] * 3


def test_refusals_are_remembered_for_that_size_and_larger():
    state = KeyState()
    key = ("USAGE#acme", "minute#2026-11-23T03:40")
    state.refused[key] = (NOW + 1, Amount(1, 500, 0))
    assert state.refused_at([key], Amount(1, 600, 0), NOW) == key
    assert state.refused_at([key], Amount(1, 100, 0), NOW) is None  # a smaller one may still fit
    assert state.refused_at([key], Amount(1, 600, 0), NOW + 2) is None


def test_the_tenants_quota_hot_mark_is_read_with_its_partition():
    config = {"pk": "TENANT#acme", "sk": "CONFIG", "tenant_id": "acme"}
    hot = {"pk": "TENANT#acme", "sk": tenant_items.QUOTA_HOT_SK, "until": 1_800_000_000}
    assert tenant_items.tenant_from_items([config]).quota_hot_until == 0.0
    assert tenant_items.tenant_from_items([config, hot]).quota_hot_until == 1_800_000_000.0
    assert tenant_items.quota_hot_key("acme") == {"pk": "TENANT#acme", "sk": "QUOTA#HOT"}


def test_a_container_forgets_the_locks_of_keys_it_no_longer_serves():
    from gateway.domain.metering_state import MeteringState

    policy = LeasePolicy()
    shared = MeteringState(None, clock=lambda: 0.0, policy=policy, owner="c", new_id=lambda: "id")
    for n in range(300):
        key = f"USAGE#t{n}"
        shared.key_state(key)
        shared.lock(key), shared.lock(f"hold:{key}")  # a lease's lock and a hold's
    shared.forget_old(policy.hot_seconds + 1)
    assert shared.keys == {} and shared.locks == {}


def test_a_hot_mark_this_container_wrote_outlives_the_cached_tenant_record():
    state = KeyState()
    state.tenant_hot_until = 1_800_000_120.0  # written by this container a moment ago
    state.loaded_tenant_mark(0.0)  # the cached record, loaded before the mark
    assert state.tenant_hot_until == 1_800_000_120.0
    state.loaded_tenant_mark(1_800_000_300.0)  # another container's later mark, in a fresh record
    assert state.tenant_hot_until == 1_800_000_300.0
