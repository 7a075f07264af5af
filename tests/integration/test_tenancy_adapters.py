"""Tenancy and quota over the DynamoDB stores against a moto server over HTTP (no app): caching, round trips,
atomic reservations under concurrency, settlement, release, crashes, refusals."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import pytest
from gateway.app import dynamo_services
from gateway.domain import quota
from gateway.domain.catalog import load_catalog
from gateway.domain.errors import PermissionDeniedError, PolicyLimitError, RateLimitError, ServiceUnavailableError
from gateway.domain.pseudonym import pseudonym
from gateway.models.exchange import CallerIdentity, MessagesRequest, Usage

from gatewayctl import admin
from tests.integration import test_tenancy_support as support

moto_url, moto_tables = support.moto_url, support.moto_tables  # fixtures
pytestmark = pytest.mark.anyio

CATALOG = load_catalog()
NOW = datetime(2026, 11, 23, 3, 40, 10, tzinfo=UTC).timestamp()


def identity(principal_id: str, kind: str = "user") -> CallerIdentity:
    return CallerIdentity(
        principal_id=principal_id, kind=kind, client_id="app", scopes=frozenset(), claims={}
    )


def request(model="claude-haiku-4-5", *, max_tokens=100, input_tokens=20) -> MessagesRequest:
    return MessagesRequest(
        model=model,
        max_tokens=max_tokens,
        stream=False,
        uses_tools=False,
        has_images=False,
        estimated_input_tokens=input_tokens,
        body={"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]},
        body_sha256="0" * 64,
    )


class Calls:
    """Counts the DynamoDB operations a botocore client sends (a hook on the client's own events)."""

    def __init__(self, client) -> None:
        self.ops: Counter[str] = Counter()
        client.meta.events.register("before-call.dynamodb", self._seen)

    def _seen(self, model, **_kwargs) -> None:
        self.ops[model.name] += 1

    def reset(self) -> None:
        self.ops.clear()


def adapters(t, clock=lambda: NOW):
    return dynamo_services(t.settings, CATALOG, client=t.ddb, clock=clock)


def stored(t, pk: str, sk: str) -> dict[str, int]:
    item = (
        t.client("dynamodb")
        .get_item(
            TableName=t.settings.usage_table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        )
        .get("Item", {})
    )
    return {k: int(v["N"]) for k, v in item.items() if "N" in v}


def minute_sk() -> str:
    return quota.window_at("minute", NOW).sk


async def test_resolve_returns_the_principal_with_its_pseudonym(moto_tables):
    admin.create_tenant(moto_tables.target, "acme")
    admin.add_principal(moto_tables.target, "acme", "sub-1", ["basic_user"])
    tenancy, _ = adapters(moto_tables)
    principal = await tenancy.resolve(identity("sub-1"))
    secret = moto_tables.client("dynamodb").get_item(
        TableName=moto_tables.settings.tenants_table,
        Key={"pk": {"S": "PRINCIPAL#sub-1"}, "sk": {"S": "PRINCIPAL"}},
    )["Item"]["pseudonym_secret"]["S"]
    assert principal.tenant_id == "acme" and principal.roles == ("basic_user",)
    assert principal.pseudonym == pseudonym(secret, "sub-1")


async def test_unknown_suspended_and_mismatched_principals_are_refused(moto_tables):
    target = moto_tables.target
    admin.create_tenant(target, "acme")
    admin.create_tenant(target, "frozen")
    admin.add_principal(target, "frozen", "sub-f", ["admin"])
    admin.suspend_tenant(target, "frozen")
    admin.add_principal(target, "acme", "client-1", ["admin"], kind="client")
    tenancy, _ = adapters(moto_tables)
    with pytest.raises(PermissionDeniedError):
        await tenancy.resolve(identity("nobody"))
    with pytest.raises(PermissionDeniedError, match="suspended"):
        await tenancy.resolve(identity("sub-f"))
    with pytest.raises(PermissionDeniedError):  # a user token cannot pose as a machine client's principal
        await tenancy.resolve(identity("client-1", kind="user"))
    assert (await tenancy.resolve(identity("client-1", kind="client"))).id == "client-1"
    # unknown ids are not cached: registering the principal works at once
    admin.add_principal(target, "acme", "nobody", ["viewer"])
    assert (await tenancy.resolve(identity("nobody"))).tenant_id == "acme"


async def test_warm_request_costs_one_write_and_no_read(moto_tables):
    admin.create_tenant(moto_tables.target, "acme", limits={"requests_per_minute": 100})
    admin.add_principal(moto_tables.target, "acme", "sub-1", ["basic_user"])
    tenancy, quota_ = adapters(moto_tables)
    calls = Calls(moto_tables.ddb)

    async def one_request():
        principal = await tenancy.resolve(identity("sub-1"))
        decision = await tenancy.authorize(principal, request())
        return await quota_.reserve(principal, decision, request())

    await one_request()  # cold: one GetItem (principal) and one Query (tenant + its roles)
    assert calls.ops == Counter({"GetItem": 1, "Query": 1, "TransactWriteItems": 1})
    calls.reset()
    await one_request()
    assert calls.ops == Counter({"TransactWriteItems": 1})


async def test_concurrent_cold_lookups_share_one_read(moto_tables):
    admin.create_tenant(moto_tables.target, "acme")
    admin.add_principal(moto_tables.target, "acme", "sub-1", ["basic_user"])
    tenancy, _ = adapters(moto_tables)
    calls = Calls(moto_tables.ddb)
    await asyncio.gather(*(tenancy.resolve(identity("sub-1")) for _ in range(20)))
    assert calls.ops == Counter({"GetItem": 1, "Query": 1})


async def test_reserve_settle_release_arithmetic_and_ttl(moto_tables):
    admin.create_tenant(moto_tables.target, "acme", limits={"tokens_per_minute": 10_000, "usd_per_month": 5})
    admin.add_principal(moto_tables.target, "acme", "sub-1", ["basic_user"])
    tenancy, quota_ = adapters(moto_tables)
    principal = await tenancy.resolve(identity("sub-1"))
    decision = await tenancy.authorize(principal, request())

    reservation = await quota_.reserve(principal, decision, request(max_tokens=100, input_tokens=20))
    reserved_usd = quota.usd_micros(
        decision.entry.cost_usd(
            "us", "bedrock", input_tokens=20, output_tokens=100, geo_uplift=CATALOG.geo_uplift
        )
    )
    assert stored(moto_tables, "USAGE#acme", minute_sk()) == {
        "requests": 1,
        "tokens": 120,
        "usd_micros": reserved_usd,
        "expires_at": quota.window_at("minute", NOW).expires_at,
    }
    headers = quota_.headers(reservation)
    assert headers["anthropic-ratelimit-tokens-remaining"] == str(10_000 - 120)

    await quota_.settle(
        reservation, Usage(input_tokens=18, output_tokens=7, cache_read_input_tokens=50), 0.000053
    )
    for window in quota.WINDOWS:
        counters = stored(moto_tables, "USAGE#acme", quota.window_at(window, NOW).sk)
        assert (counters["requests"], counters["tokens"], counters["usd_micros"]) == (1, 25, 53)
    await quota_.settle(reservation, Usage(input_tokens=1000, output_tokens=1000), 1.0)  # twice: no effect
    assert stored(moto_tables, "USAGE#acme", minute_sk())["tokens"] == 25

    second = await quota_.reserve(principal, decision, request())
    await quota_.release(second)  # the upstream failed: the reservation is rolled back entirely
    counters = stored(moto_tables, "USAGE#acme", minute_sk())
    assert (counters["requests"], counters["tokens"], counters["usd_micros"]) == (1, 25, 53)


async def test_remaining_requests_count_down_across_settlements(moto_tables):
    # Settlement adds 0 to `requests`; the counters this container knows must keep it anyway.
    admin.create_tenant(moto_tables.target, "acme", limits={"requests_per_minute": 5})
    admin.add_principal(moto_tables.target, "acme", "sub-1", ["basic_user"])
    tenancy, quota_ = adapters(moto_tables)
    principal = await tenancy.resolve(identity("sub-1"))
    decision = await tenancy.authorize(principal, request())
    remaining = []
    for _ in range(3):
        reservation = await quota_.reserve(principal, decision, request())
        remaining.append(quota_.headers(reservation)["anthropic-ratelimit-requests-remaining"])
        await quota_.settle(reservation, Usage(input_tokens=10, output_tokens=5), 0.00001)
    assert remaining == ["4", "3", "2"]


async def test_refusal_is_atomic_across_windows_and_carries_retry_after(moto_tables):
    # the tenant could take it; the principal's own minute limit cannot: nothing is charged anywhere
    admin.create_tenant(
        moto_tables.target,
        "acme",
        limits={"tokens_per_day": 100_000},
        principal_limits={"requests_per_minute": 1},
    )
    admin.add_principal(moto_tables.target, "acme", "sub-1", ["basic_user"])
    tenancy, quota_ = adapters(moto_tables)
    principal = await tenancy.resolve(identity("sub-1"))
    decision = await tenancy.authorize(principal, request())
    await quota_.reserve(principal, decision, request())
    before = stored(moto_tables, "USAGE#acme", quota.window_at("day", NOW).sk)
    with pytest.raises(RateLimitError) as refused:
        await quota_.reserve(principal, decision, request())
    assert refused.value.headers["retry-after"] == "50"  # 03:40:10 -> 03:41:00
    assert refused.value.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert stored(moto_tables, "USAGE#acme", quota.window_at("day", NOW).sk) == before


async def test_a_request_larger_than_the_limit_is_refused_without_a_write(moto_tables):
    admin.create_tenant(moto_tables.target, "acme", limits={"tokens_per_minute": 50})
    admin.add_principal(moto_tables.target, "acme", "sub-1", ["basic_user"])
    tenancy, quota_ = adapters(moto_tables)
    principal = await tenancy.resolve(identity("sub-1"))
    decision = await tenancy.authorize(principal, request())
    calls = Calls(moto_tables.ddb)
    with pytest.raises(PolicyLimitError, match="never fit") as refused:  # a 400: waiting will not help
        await quota_.reserve(principal, decision, request(max_tokens=100))
    assert refused.value.status == 400 and "minute limit on tokens" in refused.value.message
    assert calls.ops == Counter()


async def test_200_concurrent_reservations_against_a_budget_of_50(moto_tables):
    support.serialize_moto_dynamodb()
    admin.create_tenant(moto_tables.target, "acme", limits={"requests_per_minute": 50})
    admin.add_principal(moto_tables.target, "acme", "sub-1", ["basic_user"])
    tenancy, quota_ = adapters(moto_tables)
    principal = await tenancy.resolve(identity("sub-1"))
    decision = await tenancy.authorize(principal, request())

    async def one(i: int):
        try:
            reservation = await quota_.reserve(principal, decision, request(max_tokens=100 + i))
        except RateLimitError:
            return None
        real = Usage(input_tokens=5 + i % 7, output_tokens=1 + i % 13)
        await quota_.settle(reservation, real, 0.0)
        return real

    results = await asyncio.gather(*(one(i) for i in range(200)))
    served = [r for r in results if r is not None]
    assert len(served) == 50  # exactly the budget: never more, and a free slot is never refused
    counters = stored(moto_tables, "USAGE#acme", minute_sk())
    assert counters["requests"] == 50
    assert counters["tokens"] == sum(u.input_tokens + u.output_tokens for u in served)


async def test_a_crash_between_reservation_and_settlement_leaves_counters_over_never_under(moto_tables):
    admin.create_tenant(moto_tables.target, "acme")
    admin.add_principal(moto_tables.target, "acme", "sub-1", ["basic_user"])
    tenancy, quota_ = adapters(moto_tables)
    principal = await tenancy.resolve(identity("sub-1"))
    decision = await tenancy.authorize(principal, request())
    settled = await quota_.reserve(principal, decision, request(max_tokens=100, input_tokens=20))
    await quota_.settle(settled, Usage(input_tokens=20, output_tokens=30), 0.0001)
    await quota_.reserve(principal, decision, request(max_tokens=100, input_tokens=20))
    # the process dies here: the second request may have been served in full (up to max_tokens)
    del quota_, tenancy
    counters = stored(moto_tables, "USAGE#acme", minute_sk())
    true_usage_upper_bound = 50 + (20 + 100)
    assert counters["tokens"] == true_usage_upper_bound
    assert counters["requests"] == 2


async def test_usage_report_shows_only_the_callers_tenant(moto_tables):
    target = moto_tables.target
    admin.create_tenant(
        target, "acme", limits={"requests_per_minute": 9}, principal_limits={"tokens_per_day": 1000}
    )
    admin.create_tenant(target, "other", limits={"requests_per_minute": 99})
    admin.add_principal(target, "acme", "sub-a", ["viewer"])
    admin.add_principal(target, "other", "sub-o", ["basic_user"])
    tenancy, quota_ = adapters(moto_tables)
    other = await tenancy.resolve(identity("sub-o"))
    await quota_.reserve(other, await tenancy.authorize(other, request()), request())

    report = await quota_.usage_report(await tenancy.resolve(identity("sub-a")))
    assert report["tenant_id"] == "acme"
    minute = report["windows"][0]
    assert minute["requests"] == {"used": 0, "limit": 9, "remaining": 9}
    assert report["principal"]["windows"][1]["tokens"]["limit"] == 1000
    other_report = await quota_.usage_report(other)
    assert other_report["windows"][0]["requests"]["used"] == 1 and "principal" not in other_report


async def test_dynamodb_unreachable_fails_closed(moto_tables):
    import socket

    from tests.integration.test_tenancy_support import _botocore_client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    client = _botocore_client(dead)
    tenancy, _ = dynamo_services(moto_tables.settings, CATALOG, client=client)
    with pytest.raises(ServiceUnavailableError):
        await tenancy.resolve(identity("sub-1"))


class Conflicting:
    """The moto client, except that the first `n` reservation transactions and the first `n` settlement
    transactions are rejected as DynamoDB rejects them while another transaction holds the item."""

    def __init__(self, client, n: int) -> None:
        self._client, self.left = client, {"transact_write_items": n, "settlement": n}

    def __getattr__(self, name):
        return getattr(self._client, name)

    def _maybe_conflict(self, op: str, kwargs) -> None:
        from botocore.exceptions import ClientError

        if op == "transact_write_items" and not any("Put" in item for item in kwargs["TransactItems"]):
            op = "settlement"
        if self.left[op] > 0:
            self.left[op] -= 1
            if op in ("transact_write_items", "settlement"):
                reasons = [{"Code": "TransactionConflict"} for _ in kwargs["TransactItems"]]
                raise ClientError(
                    {"Error": {"Code": "TransactionCanceledException"}, "CancellationReasons": reasons}, op
                )
            raise ClientError({"Error": {"Code": "TransactionConflictException"}}, op)

    def transact_write_items(self, **kwargs):
        self._maybe_conflict("transact_write_items", kwargs)
        return self._client.transact_write_items(**kwargs)

    def update_item(self, **kwargs):
        self._maybe_conflict("update_item", kwargs)
        return self._client.update_item(**kwargs)


async def test_transaction_conflicts_are_retried_for_reservation_and_settlement(moto_tables):
    admin.create_tenant(moto_tables.target, "acme", limits={"requests_per_minute": 10})
    admin.add_principal(moto_tables.target, "acme", "sub-1", ["basic_user"])
    client = Conflicting(moto_tables.ddb, 2)
    tenancy, quota_ = dynamo_services(moto_tables.settings, CATALOG, client=client, clock=lambda: NOW)
    principal = await tenancy.resolve(identity("sub-1"))
    reservation = await quota_.reserve(principal, await tenancy.authorize(principal, request()), request())
    await quota_.settle(reservation, Usage(input_tokens=3, output_tokens=4), 0.0)
    # Settlement is one transaction now (it was an UpdateItem per window): its conflicts are retried too.
    assert client.left == {"transact_write_items": 0, "settlement": 0}
    assert stored(moto_tables, "USAGE#acme", minute_sk())["tokens"] == 7


async def test_persistent_conflicts_end_in_429_retry_after_1(moto_tables):
    admin.create_tenant(moto_tables.target, "acme")
    admin.add_principal(moto_tables.target, "acme", "sub-1", ["basic_user"])
    client = Conflicting(moto_tables.ddb, 100)
    tenancy, quota_ = dynamo_services(moto_tables.settings, CATALOG, client=client, clock=lambda: NOW)
    principal = await tenancy.resolve(identity("sub-1"))
    with pytest.raises(RateLimitError) as refused:
        await quota_.reserve(principal, await tenancy.authorize(principal, request()), request())
    assert refused.value.headers["retry-after"] == "1"
    assert stored(moto_tables, "USAGE#acme", minute_sk()) == {}


async def test_operator_changes_reach_a_container_within_the_cache_ttl(moto_tables):
    from gateway.adapters.dynamo_tenancy import DynamoTenantStore
    from gateway.domain.tenancy import TenancyService

    target = moto_tables.target
    admin.create_tenant(target, "acme")
    admin.add_principal(target, "acme", "sub-1", ["basic_user"])
    now = [0.0]  # the cache's clock, moved by hand: the test waits on no real time
    store = DynamoTenantStore(moto_tables.settings, client=moto_tables.ddb)
    tenancy = TenancyService(store, CATALOG, ttl_seconds=30, clock=lambda: now[0])
    await tenancy.resolve(identity("sub-1"))
    admin.suspend_tenant(target, "acme")
    admin.set_roles(target, "sub-1", ["viewer"])
    now[0] = 29.9
    assert (await tenancy.resolve(identity("sub-1"))).roles == ("basic_user",)  # cached: no read
    now[0] = 30.1
    with pytest.raises(PermissionDeniedError, match="tenant is suspended"):
        await tenancy.resolve(identity("sub-1"))
    admin.suspend_tenant(target, "acme", suspended=False)
    now[0] = 60.3
    with pytest.raises(PermissionDeniedError, match="creating messages"):  # each request resolves anew
        await tenancy.authorize(await tenancy.resolve(identity("sub-1")), request())


async def test_a_tenant_marked_hot_is_loaded_hot_and_the_mark_is_not_rewritten_while_fresh(moto_tables):
    from gateway.adapters.dynamo_quota import DynamoQuotaStore
    from gateway.adapters.dynamo_tenancy import DynamoTenantStore

    admin.create_tenant(moto_tables.target, "acme", limits={"requests_per_minute": 10})
    store = DynamoQuotaStore(moto_tables.settings, client=moto_tables.ddb)
    tenants = DynamoTenantStore(moto_tables.settings, client=moto_tables.ddb)
    assert (await tenants.tenant("acme")).quota_hot_until == 0.0
    await store.mark_hot("acme", NOW + 120, unless_after=NOW + 60)
    await store.mark_hot("acme", NOW + 130, unless_after=NOW + 70)  # still fresh: left as it is
    assert (await tenants.tenant("acme")).quota_hot_until == NOW + 120
    await store.mark_hot("acme", NOW + 200, unless_after=NOW + 140)  # stale by then: renewed
    tenant = await tenants.tenant("acme")
    assert tenant.quota_hot_until == NOW + 200 and tenant.limits.requests_per_minute == 10
