"""What the gateway costs per request.

1. Latency added over calling the Bedrock emulator directly (p50/p99, concurrency 1 and 16), with no-op
   ports: direct = POST /model/{profile}/invoke on the emulator; gateway = POST /v1/messages on the gateway
   (see _common), which calls the same emulator with botocore. Alternating, same client. Target: p50 <= 2 ms.
2. With the real adapters, as the Lambda runs it (uvicorn, Settings.from_env, the DynamoDB tenancy/quota
   and Kinesis audit adapters against loopback stand-ins, claims in an API Gateway-shaped request
   context): the gateway process's CPU time per request (/proc, all threads), whole and streamed, and the
   AWS calls per request as the stand-ins counted them. `--baseline REF` (repeatable) runs the gateway's
   code at REF too, each with its own stand-ins, alternating blocks of requests, so all see the same machine.
   Target: <= 5 ms of CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from bench import _common as c

TARGET_P50_MS = 2.0
TARGET_CPU_MS = 5.0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench overhead")
    parser.add_argument("--requests", type=int, default=400, help="requests per path per concurrency level")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds at concurrency 16")
    parser.add_argument("--cpu-requests", type=int, default=600, help="requests per gateway and kind (real adapters)")
    parser.add_argument(
        "--baseline", metavar="REF", action="append", default=[], help="also measure the gateway's code at REF"
    )
    parser.add_argument("--only", choices=("noop", "real"), help="one part only")
    args = parser.parse_args(argv)
    out: dict = {}
    if args.only != "real":
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
        out.update({"target_added_p50_ms": TARGET_P50_MS, "target_met": ok, **results})
    if args.only != "noop":
        real = measure_real(args.cpu_requests, args.baseline)
        out["real_adapters"] = real
        for label, kinds in real["gateways"].items():
            for kind, r in kinds.items():
                calls = ", ".join(f"{op} {n:g}" for op, n in sorted(r["aws_calls_per_request"].items()))
                print(
                    f"real adapters, {label}, {kind}: {r['cpu_ms_per_request']:.2f} ms CPU/request, "
                    f"p50 {r['latency']['p50_ms']:.2f} ms, {r['aws_calls_total']:g} AWS calls/request ({calls})"
                )
        for label, ratio in real["ratios"].items():
            print(f"CPU per request, current / {label}: " + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items()))
        print(f"target: <= {TARGET_CPU_MS} ms CPU per request (current): {'met' if real['target_met'] else 'NOT met'}")
    c.write_result("overhead", out)
    return 0


def measure_real(total: int, baselines: list[str], block: int = 50) -> dict:
    """CPU per request of the gateway(s) with the real adapters, whole and streamed, in alternating blocks."""
    upstream, info = c._spawn("upstream", "emulator")
    gateways: list[c.RealGateway] = []
    try:
        gateways.append(c.start_real_gateway("current", info["regions"]))
        for baseline in baselines:
            source = c.baseline_source(baseline)
            gateways.append(c.start_real_gateway(f"baseline {baseline}", info["regions"], source=source))
        results = asyncio.run(_alternate_blocks(gateways, total, block))
    finally:
        for gateway in gateways:
            gateway.stop()
        upstream.terminate()
        upstream.wait(10)
    current = results["current"]
    ok = all(r["cpu_ms_per_request"] <= TARGET_CPU_MS for r in current.values())
    ratios = {
        label: {
            kind: round(current[kind]["cpu_ms_per_request"] / r["cpu_ms_per_request"], 3) for kind, r in kinds.items()
        }
        for label, kinds in results.items()
        if label != "current"
    }
    return {
        "target_cpu_ms": TARGET_CPU_MS,
        "target_met": ok,
        "requests_per_kind": total,
        "gateways": results,
        "ratios": ratios,
    }


async def _alternate_blocks(gateways: list[c.RealGateway], total: int, block: int) -> dict:
    import time

    import httpx

    bodies = {"whole": json.dumps(c.BODY).encode(), "streamed": json.dumps({**c.BODY, "stream": True}).encode()}
    out: dict = {g.label: {} for g in gateways}
    async with httpx.AsyncClient(timeout=30) as client:
        for kind, body in bodies.items():
            for gateway in gateways:  # warm: connections, clients, the principal and tenant caches
                for _ in range(30):
                    await _post(client, gateway, body)
                gateway.reset_calls()
            cpu = {g.label: 0.0 for g in gateways}
            latencies: dict[str, list[float]] = {g.label: [] for g in gateways}
            for n in range(max(1, total // block)):
                order = gateways[n % len(gateways) :] + gateways[: n % len(gateways)]  # each goes first in turn
                for gateway in order:
                    before = c.cpu_seconds(gateway.pid)
                    for _ in range(block):
                        started = time.perf_counter()
                        await _post(client, gateway, body)
                        latencies[gateway.label].append(time.perf_counter() - started)
                    cpu[gateway.label] += c.cpu_seconds(gateway.pid) - before
            for gateway in gateways:
                count = len(latencies[gateway.label])
                calls = {op: round(v / count, 3) for op, v in gateway.calls().items()}
                out[gateway.label][kind] = {
                    "cpu_ms_per_request": round(cpu[gateway.label] / count * 1000, 3),
                    "latency": c.summary_ms(latencies[gateway.label]),
                    "aws_calls_per_request": calls,
                    "aws_calls_total": round(sum(calls.values()), 2),
                    "rss_mib": round(c.rss_mib(gateway.pid), 1),
                    "start_to_ready_s": round(gateway.started_seconds, 3),
                }
    return out


async def _post(client, gateway: c.RealGateway, body: bytes) -> None:
    response = await client.post(f"{gateway.url}/v1/messages", content=body, headers=c.API_HEADERS)
    if response.status_code != 200:
        raise RuntimeError(f"{gateway.label}: HTTP {response.status_code}: {response.text[:200]}")


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
