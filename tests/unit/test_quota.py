"""Quota windows and arithmetic (gateway.domain.quota): keys, limits, refusals, headers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from gateway.domain import quota
from gateway.domain.policy import Limits


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_window_keys_resets_and_ttl():
    now = ts("2026-12-31T23:59:30")
    minute, day, month = (quota.window_at(w, now) for w in quota.WINDOWS)
    assert (minute.sk, day.sk, month.sk) == ("minute#2026-12-31T23:59", "day#2026-12-31", "month#2026-12")
    assert minute.resets_at == datetime(2027, 1, 1, tzinfo=UTC) == day.resets_at == month.resets_at
    assert minute.seconds_to_reset(now) == 30
    assert minute.expires_at > minute.resets_at.timestamp()
    assert month.expires_at > day.expires_at > minute.expires_at
    # February: the month window ends on the 1st of March
    assert quota.window_at("month", ts("2028-02-29T12:00:00")).resets_at == datetime(2028, 3, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        quota.window_at("week", now)


def test_seconds_to_reset_is_at_least_one():
    now = ts("2026-11-23T03:40:59.999")
    assert quota.window_at("minute", now).seconds_to_reset(now) == 1


def test_plan_charges_tenant_windows_and_principal_windows_only_with_principal_limits():
    amount = quota.Amount(requests=1, tokens=500, usd_micros=1234)
    now = ts("2026-11-23T03:40:10")
    plan = quota.plan("acme", "sub-1", Limits(requests_per_minute=10), Limits(), amount, now)
    assert [(c.pk, c.sk) for c in plan.charges] == [
        ("USAGE#acme", "minute#2026-11-23T03:40"),
        ("USAGE#acme", "day#2026-11-23"),
        ("USAGE#acme", "month#2026-11"),
    ]
    assert plan.charges[0].limits == {"requests": 10}
    assert plan.charges[1].limits == {} and plan.charges[2].limits == {}

    both = quota.plan(
        "acme",
        "sub-1",
        Limits(tokens_per_minute=1000, tokens_per_day=5000, usd_per_month=2.5),
        Limits(requests_per_minute=3),
        amount,
        now,
    )
    assert len(both.charges) == 6
    assert both.charges[0].limits == {"tokens": 1000}
    assert both.charges[1].limits == {"tokens": 5000}
    assert both.charges[2].limits == {"usd_micros": 2_500_000}
    assert both.charges[3].pk == "USAGE#acme#P#sub-1" and both.charges[3].limits == {"requests": 3}


def test_headroom_and_precheck():
    amount = quota.Amount(requests=1, tokens=600, usd_micros=0)
    plan = quota.plan("a", "p", Limits(tokens_per_minute=1000, requests_per_minute=2), Limits(), amount, 0.0)
    assert plan.charges[0].headroom(amount) == {"requests": 1, "tokens": 400}
    assert quota.precheck(plan) is None
    too_big = quota.plan("a", "p", Limits(tokens_per_minute=599), Limits(), amount, 0.0)
    assert quota.precheck(too_big) is too_big.charges[0]
    zero = quota.plan("a", "p", Limits(requests_per_minute=0), Limits(), amount, 0.0)
    assert quota.precheck(zero) is zero.charges[0]


def test_amount_arithmetic():
    reserved = quota.Amount(1, 1000, 5000)
    real = quota.Amount(1, 300, 1200)
    assert real - reserved == quota.Amount(0, -700, -3800)
    assert -reserved == quota.Amount(-1, -1000, -5000)


def test_usd_micros_rounds_up_and_tokens_exclude_cache_reads():
    assert quota.usd_micros(0.0000011) == 2
    assert quota.usd_micros(1.5) == 1_500_000
    assert quota.usd_micros(0) == 0
    assert quota.billable_tokens(10, 20, 5) == 35


def test_ratelimit_headers_report_the_most_constraining_limit():
    now = ts("2026-11-23T03:40:10")
    amount = quota.Amount(1, 100, 0)
    plan = quota.plan(
        "acme",
        "p",
        Limits(requests_per_minute=10, tokens_per_minute=1000, tokens_per_day=5000),
        Limits(tokens_per_minute=300),
        amount,
        now,
    )
    used = {
        ("USAGE#acme", "minute#2026-11-23T03:40"): {"requests": 4, "tokens": 500},
        ("USAGE#acme", "day#2026-11-23"): {"tokens": 4900},
        ("USAGE#acme#P#p", "minute#2026-11-23T03:40"): {"tokens": 150},
    }
    headers = quota.ratelimit_headers(plan.charges, used)
    assert headers["anthropic-ratelimit-requests-limit"] == "10"
    assert headers["anthropic-ratelimit-requests-remaining"] == "6"
    assert headers["anthropic-ratelimit-requests-reset"] == "2026-11-23T03:41:00Z"
    # day has 100 left, the principal's minute 150, the tenant's minute 500: the day window wins
    assert headers["anthropic-ratelimit-tokens-remaining"] == "100"
    assert headers["anthropic-ratelimit-tokens-limit"] == "5000"
    assert headers["anthropic-ratelimit-tokens-reset"] == "2026-11-24T00:00:00Z"


def test_without_limits_only_the_reset_is_reported():
    # The Anthropic API has no notation for "unlimited": no limit or remaining, but when it resets.
    now = ts("2026-11-23T03:40:10")
    plan = quota.plan("a", "p", Limits(), Limits(), quota.Amount(1, 1, 1), now)
    assert quota.ratelimit_headers(plan.charges, {}) == {
        "anthropic-ratelimit-requests-reset": "2026-11-23T03:41:00Z",
        "anthropic-ratelimit-tokens-reset": "2026-11-23T03:41:00Z",
    }
    requests_only = quota.plan("a", "p", Limits(requests_per_minute=5), Limits(), quota.Amount(1, 1, 1), now)
    headers = quota.ratelimit_headers(requests_only.charges, {})
    assert headers["anthropic-ratelimit-requests-remaining"] == "5"
    assert "anthropic-ratelimit-tokens-remaining" not in headers
    assert headers["anthropic-ratelimit-tokens-reset"] == "2026-11-23T03:41:00Z"


def test_usage_windows_report_used_limit_and_remaining():
    now = ts("2026-11-23T03:40:10")
    rows = quota.usage_windows(
        Limits(requests_per_minute=10, usd_per_month=2.0),
        now,
        {
            "minute#2026-11-23T03:40": {"requests": 3, "tokens": 90},
            "month#2026-11": {"usd_micros": 2_500_000},
        },
    )
    minute, day, month = rows
    assert minute["requests"] == {"used": 3, "limit": 10, "remaining": 7}
    assert minute["tokens"] == {"used": 90, "limit": None, "remaining": None}
    assert day["tokens"]["used"] == 0
    assert month["usd"] == {"used": 2.5, "limit": 2.0, "remaining": 0}
    assert month["resets_at"] == "2026-12-01T00:00:00Z"


def test_refusal_message_names_window_and_scope():
    plan = quota.plan("a", "p", Limits(), Limits(requests_per_minute=1), quota.Amount(1, 1, 1), 0.0)
    message = quota.refusal_message(plan.charges[3])
    assert "minute" in message and "requests" in message and "you" in message


def test_report_headers_pick_the_tightest_window():
    now = ts("2026-11-23T03:40:10")
    report = {
        "windows": quota.usage_windows(
            Limits(requests_per_minute=10, tokens_per_day=1000),
            now,
            {"minute#2026-11-23T03:40": {"requests": 4, "tokens": 100}, "day#2026-11-23": {"tokens": 900}},
        ),
        "principal": {
            "windows": quota.usage_windows(
                Limits(requests_per_minute=5), now, {"minute#2026-11-23T03:40": {"requests": 2}}
            )
        },
    }
    headers = quota.report_headers(report)
    assert headers["anthropic-ratelimit-requests-remaining"] == "3"  # the principal's 5 - 2
    assert headers["anthropic-ratelimit-requests-limit"] == "5"
    assert headers["anthropic-ratelimit-tokens-remaining"] == "100"
    assert headers["anthropic-ratelimit-tokens-reset"] == "2026-11-24T00:00:00Z"
    assert quota.report_headers({"windows": quota.usage_windows(Limits(), now, {})}) == {}


class FakeDynamo:
    """Just enough of a DynamoDB client for DynamoQuota: counts every call."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def get_item(self, **kwargs):
        self.calls.append("get_item")
        return {
            "Item": {
                "pk": {"S": "PRINCIPAL#p1"},
                "sk": {"S": "PRINCIPAL"},
                "principal_id": {"S": "p1"},
                "tenant_id": {"S": "acme"},
                "roles": {"L": [{"S": "admin"}]},
                "pseudonym_secret": {"S": "s" * 32},
            }
        }

    def query(self, **kwargs):
        self.calls.append("query")
        config = {
            "pk": {"S": "TENANT#acme"},
            "sk": {"S": "CONFIG"},
            "tenant_id": {"S": "acme"},
            "limits": {"M": {"requests_per_minute": {"N": "10"}, "tokens_per_minute": {"N": "5000"}}},
        }
        return {"Items": [config]}

    def transact_write_items(self, **kwargs):
        self.calls.append("transact_write_items")
        return {}


@pytest.mark.anyio
async def test_headers_for_a_principal_need_no_dynamodb_call():
    from gateway.app import dynamo_services
    from gateway.domain.catalog import load_catalog
    from gateway.models.exchange import MessagesRequest, PolicyDecision, Principal

    from tests.unit.runtime_fakes import settings

    now = ts("2026-11-23T03:40:10")
    client = FakeDynamo()
    _, dq = dynamo_services(settings(), load_catalog(), client=client, clock=lambda: now)
    principal = Principal(id="p1", tenant_id="acme", roles=("admin",), pseudonym="x")

    # Nothing cached yet: only the reset times, and still no call.
    assert dq.headers_for(principal) == {
        "anthropic-ratelimit-requests-reset": "2026-11-23T03:41:00Z",
        "anthropic-ratelimit-tokens-reset": "2026-11-23T03:41:00Z",
    }
    assert client.calls == []

    entry = load_catalog().lookup("claude-haiku-4-5")
    request = MessagesRequest("claude-haiku-4-5", 100, False, False, False, 20, {}, "0" * 64)
    await dq.reserve(principal, PolicyDecision(entry, "us", {}), request)
    calls = list(client.calls)

    headers = dq.headers_for(principal)
    assert client.calls == calls  # computed from the cache and the counters this container knows
    assert headers["anthropic-ratelimit-requests-limit"] == "10"
    assert headers["anthropic-ratelimit-requests-remaining"] == "9"
    assert headers["anthropic-ratelimit-tokens-remaining"] == str(5000 - 120)
    assert headers["anthropic-ratelimit-tokens-reset"] == "2026-11-23T03:41:00Z"
