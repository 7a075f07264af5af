"""Quotas through the app, over HTTP with the anthropic SDK: concurrency with zero overspend, exact
settlement, release on upstream failure, 429s with retry-after, rate-limit headers."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import anthropic
import pytest
from gateway.domain import quota
from gateway.domain.catalog import load_catalog

from tests.integration.test_tenancy_support import serialize_moto_dynamodb

pytestmark = pytest.mark.filterwarnings("ignore:The model:DeprecationWarning")
HELLO = [{"role": "user", "content": "Hello"}]
MODEL = "claude-haiku-4-5"


def counters(target, tenant_id: str, window: str, now: float | None = None) -> dict[str, int]:
    sk = quota.window_at(window, time.time() if now is None else now).sk
    item = (
        target.client("dynamodb")
        .get_item(
            TableName=target.outputs["UsageTableName"],
            Key={"pk": {"S": quota.tenant_pk(tenant_id)}, "sk": {"S": sk}},
            ConsistentRead=True,
        )
        .get("Item", {})
    )
    return {k: int(v["N"]) for k, v in item.items() if k in quota.COUNTERS}


def eventually(read, expected, timeout: float = 15.0):
    """Settlement runs after the response: poll until the counters reach `expected` (or give up)."""
    deadline = time.monotonic() + timeout
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    return value


def away_from_minute_end(margin: float = 20.0) -> None:
    """A per-minute budget test must not straddle a window boundary (a new window is a new budget)."""
    seconds = datetime.now(UTC).second + datetime.now(UTC).microsecond / 1e6
    if seconds > 60 - margin:
        time.sleep(60 - seconds + 0.2)


def test_200_concurrent_requests_against_a_budget_of_50(local_stack, target, make_tenant, make_user):
    serialize_moto_dynamodb()  # the moto server runs in this process (see the function's docstring)
    tenant_id = make_tenant(limits={"requests_per_minute": 50}, prefix="conc")
    user = make_user(tenant_id, ["basic_user"])
    away_from_minute_end()
    started = time.time()

    async def run() -> list:
        async with anthropic.AsyncAnthropic(
            base_url=local_stack.endpoint, auth_token=user.token, max_retries=0, timeout=60
        ) as client:

            async def one(i: int):
                try:
                    raw = await client.messages.with_raw_response.create(
                        model=MODEL,
                        max_tokens=20 + i % 30,
                        messages=[{"role": "user", "content": "Hi " * (i % 9 + 1)}],
                    )
                    return raw, await raw.parse()
                except anthropic.RateLimitError as exc:
                    return exc

            return await asyncio.gather(*(one(i) for i in range(200)))

    results = asyncio.run(run())
    served = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, anthropic.RateLimitError)]
    assert len(served) + len(refused) == 200
    assert len(served) == 50, [exc.body for exc in refused[:3]]  # zero overspend, and no free slot refused
    for exc in refused:
        assert exc.body["error"]["type"] == "rate_limit_error"
        assert 1 <= int(exc.response.headers["retry-after"]) <= 60
        assert exc.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    for raw, _ in served:
        assert raw.headers["anthropic-ratelimit-requests-limit"] == "50"

    messages = [message for _, message in served]
    entry = load_catalog().lookup(MODEL)
    catalog = load_catalog()
    expected = {
        "requests": 50,
        "tokens": sum(m.usage.input_tokens + m.usage.output_tokens for m in messages),
        "usd_micros": sum(
            quota.usd_micros(
                entry.cost_usd(
                    "us",
                    "bedrock",
                    input_tokens=m.usage.input_tokens,
                    output_tokens=m.usage.output_tokens,
                    geo_uplift=catalog.geo_uplift,
                )
            )
            for m in messages
        ),
    }
    assert eventually(lambda: counters(target, tenant_id, "minute", started), expected) == expected
    assert counters(target, tenant_id, "day", started) == expected


def test_upstream_failure_releases_the_reservation(
    local_stack, target, faults, make_tenant, make_user, gateway_client
):
    tenant_id = make_tenant(limits={"requests_per_minute": 100}, prefix="rel")
    user = make_user(tenant_id, ["basic_user"])
    client = gateway_client(user.token)
    served = client.messages.create(model=MODEL, max_tokens=32, messages=HELLO)
    after_one = {
        "requests": 1,
        "tokens": served.usage.input_tokens + served.usage.output_tokens,
    }
    faults.set_fault("us-east-1", "error", status=400, count=1)  # the request is at fault: no failover
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=MODEL, max_tokens=32, messages=HELLO)

    def read():
        c = counters(target, tenant_id, "minute")
        return {"requests": c.get("requests"), "tokens": c.get("tokens")}

    assert eventually(read, after_one) == after_one


def test_streamed_responses_are_settled_to_their_real_usage(
    local_stack, target, make_tenant, make_user, gateway_client
):
    tenant_id = make_tenant(limits={"tokens_per_day": 1_000_000}, prefix="stream")
    user = make_user(tenant_id, ["basic_user"])
    with gateway_client(user.token).messages.stream(model=MODEL, max_tokens=200, messages=HELLO) as stream:
        final = stream.get_final_message()
        headers = stream.response.headers
    assert headers["anthropic-ratelimit-tokens-limit"] == "1000000"
    expected = final.usage.input_tokens + final.usage.output_tokens
    assert eventually(lambda: counters(target, tenant_id, "day").get("tokens"), expected) == expected


def test_usd_budget_refuses_with_429_and_retry_after_until_month_end(
    local_stack, target, make_tenant, make_user, gateway_client
):
    tenant_id = make_tenant(limits={"usd_per_month": 0.01}, prefix="usd")
    user = make_user(tenant_id, ["power_user"])
    # A request that could cost more than the whole budget can never fit: a 400 naming the limit.
    # (haiku at $5/M output with the regional uplift: 4096 max_tokens reserve ~2.3 cents; the budget is 1 cent)
    with pytest.raises(anthropic.BadRequestError) as never:
        gateway_client(user.token).messages.create(model=MODEL, max_tokens=4096, messages=HELLO)
    assert "month limit on spend" in never.value.body["error"]["message"]
    assert counters(target, tenant_id, "month") == {}
    # With most of the month's budget spent, one that fits an empty month is refused until the month ends.
    spend(target, tenant_id, "month", usd_micros=9_500)
    with pytest.raises(anthropic.RateLimitError) as refused:
        gateway_client(user.token).messages.create(model=MODEL, max_tokens=256, messages=HELLO)
    month_end = quota.window_at("month", time.time()).resets_at.timestamp()
    assert abs(int(refused.value.response.headers["retry-after"]) - (month_end - time.time())) < 60
    assert "month" in refused.value.body["error"]["message"]
    assert counters(target, tenant_id, "month")["usd_micros"] == 9_500
    assert gateway_client(user.token).messages.create(model=MODEL, max_tokens=32, messages=HELLO)


def spend(target, tenant_id: str, window: str, **counters_: int) -> None:
    """Usage the tenant already had in the current window (as an earlier settlement would leave it)."""
    sk = quota.window_at(window, time.time()).sk
    item = {"pk": {"S": quota.tenant_pk(tenant_id)}, "sk": {"S": sk}}
    item.update({k: {"N": str(v)} for k, v in counters_.items()})
    target.client("dynamodb").put_item(TableName=target.output("UsageTableName"), Item=item)


def test_usage_endpoint_reports_used_and_remaining(local_stack, make_tenant, make_user, gateway_client):
    import httpx

    tenant_id = make_tenant(limits={"requests_per_minute": 10, "tokens_per_day": 50_000}, prefix="use")
    user = make_user(tenant_id, ["viewer"])
    writer = make_user(tenant_id, ["basic_user"])
    gateway_client(writer.token).messages.create(model=MODEL, max_tokens=16, messages=HELLO)
    report = httpx.get(
        f"{local_stack.endpoint}/v1/usage", headers={"authorization": f"Bearer {user.token}"}
    ).json()
    minute, day, month = report["windows"]
    assert report["tenant_id"] == tenant_id
    assert minute["requests"]["limit"] == 10 and minute["requests"]["used"] == 1
    assert minute["requests"]["remaining"] == 9
    assert day["tokens"]["limit"] == 50_000 and day["tokens"]["remaining"] == 50_000 - day["tokens"]["used"]
    assert month["usd"]["limit"] is None


def test_principal_limits_apply_to_each_principal_separately(
    local_stack, make_tenant, make_user, gateway_client
):
    tenant_id = make_tenant(
        limits={"requests_per_minute": 100}, principal_limits={"requests_per_minute": 1}, prefix="per"
    )
    first, second = make_user(tenant_id, ["basic_user"]), make_user(tenant_id, ["basic_user"])
    away_from_minute_end(5)
    gateway_client(first.token).messages.create(model=MODEL, max_tokens=16, messages=HELLO)
    with pytest.raises(anthropic.RateLimitError) as refused:
        gateway_client(first.token).messages.create(model=MODEL, max_tokens=16, messages=HELLO)
    assert "for you" in refused.value.body["error"]["message"]
    assert gateway_client(second.token).messages.create(model=MODEL, max_tokens=16, messages=HELLO)
