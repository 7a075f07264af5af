"""Failover cost once the breaker is open: p50 with region 1 throttling / p50 with every region healthy.

Region 1 (us-east-1) answers every request with ThrottlingException. The first requests pay a try there
and fail over; after BREAKER_FAILURE_THRESHOLD of them the breaker opens and requests go straight to
region 2. The figure compares that steady state with the all-healthy p50, side by side in one run.
Target: ratio <= 1.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from bench import _common as c

TARGET_RATIO = 1.1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench failover")
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args(argv)
    # A long cool-down: the breaker must stay open for the whole measurement.
    bench = c.start(breaker_open_seconds=600.0)
    try:
        result = asyncio.run(measure(bench, args.requests))
    finally:
        bench.stop()
    ok = result["ratio_p50"] <= TARGET_RATIO
    print(
        f"healthy p50 {result['healthy']['p50_ms']:.2f} ms | region 1 throttling, breaker open: "
        f"p50 {result['region1_throttling']['p50_ms']:.2f} ms | ratio {result['ratio_p50']:.3f} "
        f"(target <= {TARGET_RATIO}: {'met' if ok else 'NOT met'})"
    )
    print(f"requests that tried region 1 before its breaker opened: {result['tries_before_open']}")
    c.write_result("failover", {"target_ratio": TARGET_RATIO, "target_met": ok, **result})
    return 0


async def measure(bench: c.Bench, total: int) -> dict:
    url = f"{bench.gateway_url}/v1/messages"
    body = json.dumps(c.BODY).encode()
    await c.timed_requests(url, body, c.GATEWAY_HEADERS, total=50, concurrency=1)
    # Healthy first: once region 1's breaker is open it stays open (cool-down 600 s) for this gateway.
    healthy = await c.timed_requests(url, body, c.GATEWAY_HEADERS, total=total, concurrency=1)
    bench.fault("us-east-1", kind="throttle")
    before = bench.request_count("us-east-1")
    await c.timed_requests(url, body, c.GATEWAY_HEADERS, total=10, concurrency=1)
    tries_before_open = bench.request_count("us-east-1") - before
    throttled = await c.timed_requests(url, body, c.GATEWAY_HEADERS, total=total, concurrency=1)
    skipped = bench.request_count("us-east-1") - before - tries_before_open
    if skipped:
        raise RuntimeError(f"region 1 was still tried {skipped} times with its breaker open")
    h, t = c.summary_ms(healthy), c.summary_ms(throttled)
    return {
        "healthy": h,
        "region1_throttling": t,
        "ratio_p50": round(t["p50_ms"] / h["p50_ms"], 4),
        "tries_before_open": tries_before_open,
    }
