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
    with c.start() as bench:
        result = asyncio.run(measure(bench, args.requests))
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
    """Two gateways on one emulator, measured alternately: A's regions are healthy; B's region 1
    (us-east-2) always throttles, so B fails over to us-west-2 until its breaker opens, then skips it."""
    throttling_gateway = bench.add_gateway(
        bedrock_regions={"us": ["us-east-2", "us-west-2"]}, breaker_open_seconds=600.0
    )
    bench.fault("us-east-2", kind="throttle")
    body = json.dumps(c.BODY).encode()
    healthy_url = f"{bench.gateway_url}/v1/messages"
    throttled_url = f"{throttling_gateway}/v1/messages"
    await c.timed_requests(healthy_url, body, c.GATEWAY_HEADERS, total=30, concurrency=1)
    await c.timed_requests(throttled_url, body, c.GATEWAY_HEADERS, total=30, concurrency=1)
    tries_before_open = bench.request_count("us-east-2")
    healthy, throttled = await c.alternating(
        (healthy_url, body, c.GATEWAY_HEADERS), (throttled_url, body, c.GATEWAY_HEADERS), total=total
    )
    if bench.request_count("us-east-2") != tries_before_open:
        raise RuntimeError("region 1 was tried again with its breaker open")
    h, t = c.summary_ms(healthy), c.summary_ms(throttled)
    return {
        "healthy": h,
        "region1_throttling": t,
        "ratio_p50": round(t["p50_ms"] / h["p50_ms"], 4),
        "tries_before_open": tries_before_open,
    }
