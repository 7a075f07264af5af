"""quota_scale: how many requests a second one tenant can be served with zero overspend and no refusal below
its limits, against the DynamoDB model (tests/support/ddb_model.py: conflicts, per-partition throughput,
latency), for the per-request design, leases taken straight from the window items, and leases from pools (the
design in use), side by side in one run.

The real quota code runs (QuotaService over DynamoQuotaStore, one instance per container) on virtual time,
in the shape Lambda gives it: a request goes to an idle execution environment, or to a new one (which starts
cold) when none is idle; each serves one request at a time. The offered load rises linearly over `--ramp`
seconds (Lambda adds environments at a bounded pace), then holds until `--seconds`; the run starts 20 s
before a minute ends, so it crosses a window boundary. Each request reserves (input 200 tokens, max_tokens
1024), spends a lognormal 0.4 s (median) at the upstream, and settles to 50-500 output tokens.

A rate passes when, after every container has stopped (given its leases back): no window took more than its
limit (the benchmark's own account of every served request's charge), no stored counter is below what was
used, the stored counters equal it exactly, no request was refused (the limits are set at three times the
offered load) or met contention, and the 99th percentile of the reservation step is under one second.
Each design's ladder stops at its first failing rate (a run that has already failed, more than 1% of its
requests meeting contention, stops offering load). Then one near-limit run per design: twice the requests
its minute's limit allows, at 300 a second.

    python -m bench quota_scale [--seconds S] [--ramp S] [--per-request 25,50] [--without-pools 500,1000]
                                [--leases 1000,5000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import time
from typing import Any

from bench._common import percentile, write_result

LADDER_PER_REQUEST = (25, 50, 100, 200, 400)
LADDER_WITHOUT_POOLS = (100, 250, 500, 1000)
LADDER_LEASES = (500, 1000, 2500, 5000)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench quota_scale")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--ramp", type=float, default=15.0)
    parser.add_argument("--per-request", default=",".join(map(str, LADDER_PER_REQUEST)))
    parser.add_argument("--without-pools", default=",".join(map(str, LADDER_WITHOUT_POOLS)))
    parser.add_argument("--leases", default=",".join(map(str, LADDER_LEASES)))
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # contention is expected here, and counted
    from gateway.domain.leases import LeasePolicy

    designs = {
        "per_request": (LeasePolicy(enabled=False), [int(r) for r in args.per_request.split(",") if r]),
        "leases_without_pools": (LeasePolicy(pools=False), [int(r) for r in args.without_pools.split(",") if r]),
        "leases": (LeasePolicy(), [int(r) for r in args.leases.split(",") if r]),
    }
    results: dict[str, Any] = {"seconds": args.seconds, "ramp": args.ramp, "designs": {}}
    for name, (policy, ladder) in designs.items():
        steps = []
        best = 0
        for rate in ladder:
            step = run(policy, rate, args.seconds, args.ramp)
            steps.append(step)
            print(line(name, step), flush=True)
            if not step["passed"]:
                break
            best = rate
        near = run(policy, 300, 8.0, 2.0, limit_share=0.5)
        print(line(f"{name} near the limit", near), flush=True)
        results["designs"][name] = {"highest_passing_rate": best, "steps": steps, "near_limit": near}
    print()
    for name, design in results["designs"].items():
        calls = design["steps"][-1]["calls_per_request"] if design["steps"] else {}
        print(
            f"{name}: highest rate served with zero overspend and no refusal: {design['highest_passing_rate']}/s; "
            f"AWS calls per request at its last step: {calls}"
        )
    write_result("quota_scale", results)
    ok = results["designs"]["leases"]["highest_passing_rate"] >= 5000 or max(designs["leases"][1]) < 5000
    return 0 if ok else 1


def run(policy: Any, rate: float, seconds: float, ramp: float, *, limit_share: float = 3.0) -> dict[str, Any]:
    """One run at `rate` requests a second. Limits: `limit_share` times what the offered load needs."""
    from gateway.models.tenancy import Limits

    from tests.support import virtual_time
    from tests.support.quota_fleet import EPOCH, Fleet

    # The run's requests (the ramp offers half its rate on average) times `limit_share`, per minute: the
    # run stays within one minute when near the limit, and gets three minutes' worth a minute otherwise.
    offered_in_run = rate * (seconds - ramp / 2)
    per_minute = int(limit_share * (rate * 60 if limit_share >= 1 else offered_in_run))
    limits = Limits(
        requests_per_minute=per_minute,
        tokens_per_minute=per_minute * 1224,
        tokens_per_day=10**12,
        usd_per_month=10_000_000.0,
    )
    fleet = Fleet(limits=limits, leases=policy, epoch=EPOCH - 25)
    rng = random.Random(int(rate))
    started = time.process_time()
    aborted: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        principal = fleet.principal()
        idle: list[Any] = []
        tasks = []

        async def one() -> None:
            service = idle.pop() if idle else fleet.container()
            try:
                upstream = 0.4 * 2.718281828 ** (0.5 * rng.gauss(0.0, 1.0))
                await fleet.request(
                    service,
                    principal,
                    max_tokens=1024,
                    input_tokens=200,
                    output_tokens=rng.randint(50, 500),
                    seconds=upstream,
                )
            finally:
                idle.append(service)

        while loop.time() < seconds:
            if limit_share >= 1 and fleet.outcomes.contention > max(20, 0.01 * len(tasks)):
                aborted.append(loop.time())  # failing already: stop offering load (a storm takes long to run)
                break
            tasks.append(asyncio.ensure_future(one()))
            offered = rate * min(1.0, max(0.02, loop.time() / ramp)) if ramp else rate
            await asyncio.sleep(rng.expovariate(offered))
        await asyncio.gather(*tasks)
        await asyncio.gather(*(service.close() for service in fleet.containers))

    _, took = virtual_time.run(main(), delay=fleet.delay)
    outcomes, stats = fleet.outcomes, fleet.model.stats
    offered = outcomes.served + outcomes.refused + outcomes.contention
    reserve = outcomes.reserve_seconds
    served = max(1, outcomes.served)
    over, under, inexact = fleet.overspent(), fleet.under_counted(), fleet.exact()
    step = {
        "rate": rate,
        "requests": offered,
        "served": outcomes.served,
        "refused": outcomes.refused,
        "contention": outcomes.contention,
        "settle_failed": outcomes.settle_failed,
        "limit_requests_per_minute": per_minute,
        "overspent": len(over),
        "under_counted": len(under),
        "inexact": len(inexact),
        "reserve_p50_ms": round(percentile(reserve, 50) * 1000, 1),
        "reserve_p99_ms": round(percentile(reserve, 99) * 1000, 1),
        "containers": len(fleet.containers),
        "calls_per_request": {op: round(n / served, 3) for op, n in sorted(stats.calls.items())},
        "wcu_per_request": round(sum(stats.wcu.values()) / served, 2),
        "hottest_partition_wcu_per_second": round(max(stats.wcu.values(), default=0) / max(1.0, took), 1),
        "conflicts": stats.conflicts,
        "throttled": stats.throttled,
        "quota_writes": fleet.counts(),
        "virtual_seconds": round(took, 1),
        "stopped_offering_at": round(aborted[0], 1) if aborted else None,
        "cpu_seconds": round(time.process_time() - started, 1),
    }
    if limit_share >= 1:
        step["passed"] = (
            not over
            and not under
            and not inexact
            and outcomes.refused == 0
            and outcomes.contention == 0
            and outcomes.settle_failed == 0
            and percentile(reserve, 99) < 1.0
        )
    else:  # near the limit: never more than the limit; how much of it was served, and contention met
        used = fleet.charged[fleet.minute()].requests
        step["passed"] = not over and not under and not inexact
        step["served_share_of_limit"] = round(used / per_minute, 3) if per_minute else 0
    return step


def line(name: str, step: dict[str, Any]) -> str:
    verdict = "ok" if step["passed"] else "FAIL"
    return (
        f"{name:>26} {step['rate']:>6}/s {verdict:>4}: served {step['served']}, refused {step['refused']}, "
        f"contention {step['contention']}, settlements failed {step['settle_failed']}, "
        f"overspent {step['overspent']}, inexact {step['inexact']}, "
        f"reserve p50 {step['reserve_p50_ms']} ms p99 {step['reserve_p99_ms']} ms, "
        f"{step['containers']} containers, {step['wcu_per_request']} WCU/request, "
        f"hottest partition {step['hottest_partition_wcu_per_second']} WCU/s, calls/request {step['calls_per_request']}"
        + (f", served {step['served_share_of_limit']:.0%} of the limit" if "served_share_of_limit" in step else "")
    )
