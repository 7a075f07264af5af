"""Quota windows and their arithmetic (steps 3 and 7): keys, limits, reservations, headers.

Pure logic, no I/O. A `plan` lists the window items one request charges; metering.py takes its amount
from a hold, or hot_leases.py from a lease (leases.py), which the store writes as one transaction of
conditional updates (each counter + amount <= limit). The reservation is an upper bound (estimated input +
max_tokens), so counters are never under the true usage, even if the process dies between reservation and
settlement.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.models.quota import Amount, QuotaPlan, Window, WindowCharge
from gateway.models.tenancy import Limits
from gateway.models.usage_items import COUNTERS, principal_pk, tenant_pk

WINDOWS = ("minute", "day", "month")
MICROS = 1_000_000

# Which limit bounds which counter of which window.
LIMITED_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("minute", "requests", "requests_per_minute"),
    ("minute", "tokens", "tokens_per_minute"),
    ("day", "tokens", "tokens_per_day"),
    ("month", "usd_micros", "usd_per_month"),
)


def window_at(name: str, now: float) -> Window:
    t = datetime.fromtimestamp(now, UTC)
    if name == "minute":
        start = t.replace(second=0, microsecond=0)
        return Window(name, start.strftime("%Y-%m-%dT%H:%M"), start, start + timedelta(minutes=1))
    if name == "day":
        start = t.replace(hour=0, minute=0, second=0, microsecond=0)
        return Window(name, start.strftime("%Y-%m-%d"), start, start + timedelta(days=1))
    if name == "month":
        start = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        following = (start + timedelta(days=32)).replace(day=1)
        return Window(name, start.strftime("%Y-%m"), start, following)
    raise ValueError(f"unknown window {name!r}")


def usd_micros(usd: float) -> int:
    """Round up: a reservation or a charge is never below the true cost."""
    return max(0, math.ceil(round(usd * MICROS, 6)))


def billable_tokens(input_tokens: int, output_tokens: int, cache_creation_input_tokens: int = 0) -> int:
    """Tokens that count against token limits; cache reads are excluded, as the Anthropic API does."""
    return input_tokens + output_tokens + cache_creation_input_tokens


def _limits_by_window(limits: Limits) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {w: {} for w in WINDOWS}
    for window, counter, name in LIMITED_COUNTERS:
        value = getattr(limits, name)
        if value is not None:
            out[window][counter] = usd_micros(value) if counter == "usd_micros" else int(value)
    return out


def windows_over(name: str, start: float, end: float) -> list[Window]:
    """The buckets of window `name` that overlap [start, end), in order."""
    out = [window_at(name, start)]
    while out[-1].resets_at.timestamp() < end:
        out.append(window_at(name, out[-1].resets_at.timestamp()))
    return out


def charges_over(
    tenant_id: str,
    principal_id: str,
    tenant_limits: Limits,
    principal_limits: Limits,
    start: float,
    end: float,
) -> tuple[WindowCharge, ...]:
    """Every window item a lease over [start, end) charges: for each scope and window, each bucket it overlaps."""
    charges: list[WindowCharge] = []
    for scope, pk, limits in _scopes(tenant_id, principal_id, tenant_limits, principal_limits):
        by_window = _limits_by_window(limits)
        for name in WINDOWS:
            for window in windows_over(name, start, end):
                charges.append(WindowCharge(scope, pk, window, by_window[name]))
    return tuple(charges)


def _scopes(
    tenant_id: str, principal_id: str, tenant_limits: Limits, principal_limits: Limits
) -> list[tuple[str, str, Limits]]:
    scopes = [("tenant", tenant_pk(tenant_id), tenant_limits)]
    if not principal_limits.empty:
        scopes.append(("principal", principal_pk(tenant_id, principal_id), principal_limits))
    return scopes


def plan(
    tenant_id: str,
    principal_id: str,
    tenant_limits: Limits,
    principal_limits: Limits,
    amount: Amount,
    now: float,
) -> QuotaPlan:
    """Every window item the request charges: the tenant's three, and the principal's when it has limits."""
    charges: list[WindowCharge] = []
    for scope, pk, limits in _scopes(tenant_id, principal_id, tenant_limits, principal_limits):
        by_window = _limits_by_window(limits)
        for name in WINDOWS:
            charges.append(WindowCharge(scope, pk, window_at(name, now), by_window[name]))
    return QuotaPlan(amount=amount, charges=tuple(charges), now=now)


def precheck(plan_: QuotaPlan) -> WindowCharge | None:
    """A charge that cannot fit even in an empty window (the request alone exceeds the limit)."""
    for charge in plan_.charges:
        if any(h < 0 for h in charge.headroom(plan_.amount).values()):
            return charge
    return None


def refusal_message(charge: WindowCharge) -> str:
    who = "your organization" if charge.scope == "tenant" else "you"
    bounded = " and ".join(_describe(c) for c in charge.limits)
    return f"rate limit reached: the {charge.window.name} limit on {bounded} for {who}; retry when it resets"


def _describe(counter: str) -> str:
    return {"requests": "requests", "tokens": "tokens", "usd_micros": "spend (USD)"}[counter]


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ratelimit_headers(
    charges: tuple[WindowCharge, ...] | list[WindowCharge], used: Mapping[tuple[str, str], Mapping[str, int]]
) -> dict[str, str]:
    """The anthropic-ratelimit-* headers: the most constraining limit on requests and on tokens.

    `used` maps (pk, sk) to the counters after this request's reservation (as far as this
    container knows). A counter no limit bounds has no limit or remaining to report (the Anthropic
    API has no notation for "unlimited"), so it gets only its reset: when the minute window rolls over.
    """
    headers: dict[str, str] = {}
    for counter, name in (("requests", "requests"), ("tokens", "tokens")):
        best: tuple[int, int, datetime] | None = None  # remaining, limit, reset
        for charge in charges:
            limit = charge.limits.get(counter)
            if limit is None:
                continue
            remaining = max(0, limit - int(used.get((charge.pk, charge.sk), {}).get(counter, 0)))
            if best is None or remaining < best[0]:
                best = (remaining, limit, charge.window.resets_at)
        if best is not None:
            headers[f"anthropic-ratelimit-{name}-limit"] = str(best[1])
            headers[f"anthropic-ratelimit-{name}-remaining"] = str(best[0])
            headers[f"anthropic-ratelimit-{name}-reset"] = rfc3339(best[2])
        else:
            minute = next((c.window for c in charges if c.window.name == "minute"), None)
            if minute is not None:
                headers[f"anthropic-ratelimit-{name}-reset"] = rfc3339(minute.resets_at)
    return headers


def usage_windows(limits: Limits, now: float, items: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """GET /v1/usage and `gatewayctl usage show`: per window, what is used and what is left.

    `items` maps a window's sk to its stored counters (absent: nothing used yet).
    """
    by_window = _limits_by_window(limits)
    out = []
    for name in WINDOWS:
        window = window_at(name, now)
        counters = items.get(window.sk, {})
        row: dict[str, Any] = {
            "window": name,
            "bucket": window.bucket,
            "resets_at": rfc3339(window.resets_at),
        }
        for counter in COUNTERS:
            used = int(counters.get(counter, 0) or 0)
            limit = by_window[name].get(counter)
            row["usd" if counter == "usd_micros" else counter] = {
                "used": _shown(used, counter),
                "limit": None if limit is None else _shown(limit, counter),
                "remaining": None if limit is None else _shown(max(0, limit - used), counter),
            }
        out.append(row)
    return out


def _shown(value: int, counter: str) -> int | float:
    return value / MICROS if counter == "usd_micros" else value


def report_headers(report: Mapping[str, Any]) -> dict[str, str]:
    """The anthropic-ratelimit-* headers for a usage report (GET /v1/usage): the most constraining
    request and token limits across the tenant's and the principal's windows."""
    windows = list(report.get("windows", [])) + list(report.get("principal", {}).get("windows", []))
    headers: dict[str, str] = {}
    for counter in ("requests", "tokens"):
        bounded = [w for w in windows if w[counter]["limit"] is not None]
        if bounded:
            tightest = min(bounded, key=lambda w: w[counter]["remaining"])
            headers[f"anthropic-ratelimit-{counter}-limit"] = str(tightest[counter]["limit"])
            headers[f"anthropic-ratelimit-{counter}-remaining"] = str(tightest[counter]["remaining"])
            headers[f"anthropic-ratelimit-{counter}-reset"] = tightest["resets_at"]
    return headers
