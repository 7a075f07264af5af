"""Latency the gateway adds over calling the Bedrock emulator directly (p50/p99, concurrency 1 and 16).

Both paths are measured side by side in one run, alternating rounds, with the same client (httpx,
kept-alive connections): direct = POST /model/{profile}/invoke on the emulator; gateway = POST
/v1/messages on the gateway (no-op ports, see _common), which calls the same emulator with botocore.
Target: added p50 <= 2 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from bench import _common as c

TARGET_P50_MS = 2.0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench overhead")
    parser.add_argument("--requests", type=int, default=400, help="requests per path per concurrency level")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds at concurrency 16")
    args = parser.parse_args(argv)
    with c.start() as bench:
        results = asyncio.run(measure(bench, args.requests, args.rounds))
    ok = results["concurrency_1"]["added_p50_ms"] <= TARGET_P50_MS
    for level, r in results.items():
        print(
            f"{level}: direct p50 {r['direct']['p50_ms']:.2f} ms p99 {r['direct']['p99_ms']:.2f} ms | "
            f"gateway p50 {r['gateway']['p50_ms']:.2f} ms p99 {r['gateway']['p99_ms']:.2f} ms | "
            f"added p50 {r['added_p50_ms']:.2f} ms p99 {r['added_p99_ms']:.2f} ms"
        )
    print(f"target: added p50 <= {TARGET_P50_MS} ms at concurrency 1: {'met' if ok else 'NOT met'}")
    c.write_result("overhead", {"target_added_p50_ms": TARGET_P50_MS, "target_met": ok, **results})
    return 0


async def measure(bench: c.Bench, total: int, rounds: int) -> dict:
    direct_url = f"{bench.bedrock_urls['us-east-1']}/model/{c.PROFILE}/invoke"
    gateway_url = f"{bench.gateway_url}/v1/messages"
    gateway_body = json.dumps(c.BODY).encode()
    direct_body = c.bedrock_body()
    # Warm up both paths (connections, botocore client, code paths).
    await c.timed_requests(direct_url, direct_body, c.direct_headers("us-east-1"), total=50, concurrency=4)
    await c.timed_requests(gateway_url, gateway_body, c.GATEWAY_HEADERS, total=50, concurrency=4)
    results = {}
    for concurrency in (1, 16):
        direct: list[float] = []
        gateway: list[float] = []
        per_round = max(1, total // rounds)
        if concurrency == 1:  # request by request, alternating
            direct, gateway = await c.alternating(
                (direct_url, direct_body, c.direct_headers("us-east-1")),
                (gateway_url, gateway_body, c.GATEWAY_HEADERS),
                total=total,
            )
        for _ in range(rounds if concurrency > 1 else 0):  # alternating rounds of `concurrency` in flight
            direct += await c.timed_requests(
                direct_url,
                direct_body,
                c.direct_headers("us-east-1"),
                total=per_round,
                concurrency=concurrency,
            )
            gateway += await c.timed_requests(
                gateway_url, gateway_body, c.GATEWAY_HEADERS, total=per_round, concurrency=concurrency
            )
        d, g = c.summary_ms(direct), c.summary_ms(gateway)
        results[f"concurrency_{concurrency}"] = {
            "direct": d,
            "gateway": g,
            "added_p50_ms": round(g["p50_ms"] - d["p50_ms"], 3),
            "added_p99_ms": round(g["p99_ms"] - d["p99_ms"], 3),
        }
    return results
