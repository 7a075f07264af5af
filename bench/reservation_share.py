"""How much of a budget a tenant can use before its first refusal, per script (docs/tenancy.md).

A reservation must bound the real usage from above for every script, so it reserves more than a
request will use; the price is headroom. One tenant with a token budget sends the same request again
and again, one at a time (reserve, then settle to the real usage, as the gateway does), until the
first refusal; the usable share is what it had used by then. Real usage is the local emulator's token
model (gatewayctl/local/replies.py: about 4 ASCII characters a token, a token per CJK character, two
per character outside the BMP). Then the same with 200 requests all reserving before any settles (the
admitted count). The gateway's own parsing, pricing, planning and QuotaService run; the store is in
memory (exact, serial).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from bench import _common as c

TEXTS = {
    "ascii": "the quick brown fox jumps over the lazy dog " * 12,
    "bmp-cjk": "日本語の文章と漢字の長い文です" * 12,
    "extension-b": "𠀀𠀁𠀂𠀃𠀄𠀅𠀆𠀇" * 20,
}
MODEL = "claude-haiku-4-5"
MAX_TOKENS = 64


class MemoryStore:
    """The usage table in memory (exact, serial): conditional holds and their returns, reads. One
    container that never meets contention takes holds only (docs/tenancy.md), so leases are not needed."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, int]] = {}
        self.states: dict[str, str] = {}

    async def acquire(self, grant: Any, returning: Any = None, *, patient: bool = True) -> Any:
        from gateway.domain.ports import WindowRefused
        from gateway.models.quota import Written

        for index, (charge, amount) in enumerate(zip(grant.charges, grant.amounts, strict=True)):
            counters = self.items.get((charge.pk, charge.sk), {})
            for counter, headroom in charge.headroom(amount).items():
                if getattr(amount, counter) > 0 and counters.get(counter, 0) > headroom:
                    raise WindowRefused(index, dict(counters))
        for key, amount in zip(grant.keys, grant.amounts, strict=True):
            self._add(key, amount)
        self.states[grant.id] = "active"
        return Written()

    async def give_back(self, back: Any) -> Any:
        from gateway.models.quota import Written

        if self.states.get(back.id) != "active":
            return Written(applied=False)
        self.states[back.id] = back.outcome
        for key, delta in zip(back.keys, back.deltas, strict=True):
            self._add(key, delta)
        return Written()

    async def commit(self, commit: Any) -> None:
        raise AssertionError("a container that never meets contention takes no lease")

    async def holds(self, partitions: Any) -> list:
        return []

    async def mark_hot(self, tenant_id: str, until: float, *, unless_after: float) -> None:
        return None

    async def read(self, keys: Any) -> dict:
        return {k: dict(self.items[k]) for k in keys if k in self.items}

    def _add(self, key: tuple[str, str], amount: Any) -> None:
        counters = self.items.setdefault(key, {})
        for name, value in amount.as_dict().items():
            counters[name] = counters.get(name, 0) + value


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench reservation_share")
    parser.add_argument("--budget", type=int, default=200_000, help="the tenant's tokens per minute")
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args.budget))
    for script, r in results.items():
        print(
            f"{script}: reserved/real {r['reserved_per_real']:.2f}x; sequential: usable share "
            f"{r['sequential_share']:.1%} of the budget before the first refusal; "
            f"200 at once against limits that fit 50: {r['admitted_of_50']} admitted; "
            f"zero overspend: {r['zero_overspend']}"
        )
    c.write_result("reservation_share", results)
    return 0 if all(r["zero_overspend"] for r in results.values()) else 1


async def measure(budget: int) -> dict[str, Any]:
    from gateway.domain.catalog import load_catalog
    from gateway.domain.errors import RateLimitError
    from gateway.domain.metering import QuotaService
    from gateway.domain.request import parse_messages_request
    from gateway.domain.tenancy import TenancyService
    from gateway.models.exchange import PolicyDecision, Principal, Usage
    from gateway.models.tenancy import Limits, PrincipalRecord, TenantConfig

    from gatewayctl.local.replies import input_tokens

    catalog = load_catalog()
    entry = catalog.lookup(MODEL)
    out: dict[str, Any] = {}
    for script, text in TEXTS.items():
        body = {"model": MODEL, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": text}]}
        raw = json.dumps(body, ensure_ascii=False).encode()
        request = parse_messages_request(raw, max_body_bytes=1 << 20)
        decision = PolicyDecision(entry=entry, residency="us", body=body)
        real_in = input_tokens(body, len(raw))
        real = real_in + MAX_TOKENS  # the emulator may write up to max_tokens: the worst case
        results = {}
        for name, limit, concurrent in (("sequential", budget, False), ("burst", 50 * real, True)):
            tenant = TenantConfig("t", "T", limits=Limits(tokens_per_minute=limit))
            record = PrincipalRecord("p", "t", ("admin",), pseudonym_secret="ab" * 32)
            principal = Principal("p", "t", ("admin",), "x", record=record, tenant=tenant)
            store = MemoryStore()
            # The principal carries its tenant and record, so tenancy never reads a store here.
            tenancy = TenancyService(None, catalog, ttl_seconds=60)  # type: ignore[arg-type]
            service = QuotaService(store, tenancy, catalog, clock=lambda: 1e9)
            admitted = 0
            reservations = []
            while True:
                try:
                    reservation = await service.reserve(principal, decision, request)
                except RateLimitError:
                    break
                admitted += 1
                if concurrent:
                    reservations.append(reservation)
                    if admitted >= 200:
                        break
                else:
                    await service.settle(reservation, Usage(real_in, MAX_TOKENS), 0.0)
            for reservation in reservations:
                await service.settle(reservation, Usage(real_in, MAX_TOKENS), 0.0)
            used = sum(v.get("tokens", 0) for (pk, sk), v in store.items.items() if sk.startswith("minute#"))
            results[name] = (admitted, used, limit)
        seq_admitted, seq_used, seq_limit = results["sequential"]
        burst_admitted, burst_used, burst_limit = results["burst"]
        out[script] = {
            "real_tokens": real,
            "reserved_per_real": (request.input_bound + MAX_TOKENS) / real,
            "sequential_share": seq_used / seq_limit,
            "admitted_of_50": burst_admitted,
            "zero_overspend": seq_used <= seq_limit and burst_used <= burst_limit,
        }
    return out
