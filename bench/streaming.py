"""Streaming: time to first byte added by the gateway, and proof that events are relayed, not buffered.

1. TTFB added: median time to the first body byte of a streamed response through the gateway
   (POST /v1/messages, stream true) minus the same straight from the Bedrock emulator
   (InvokeModelWithResponseStream), side by side. Target <= 5 ms.
2. No buffering: against an upstream that paces its events 50 ms apart (about 1.2 s in all), the first
   event must reach the client long before the upstream has finished.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics

from bench import _common as c

TARGET_TTFB_ADDED_MS = 5.0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench streaming")
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args(argv)
    with c.start() as bench:
        ttfb = asyncio.run(measure_ttfb(bench, args.requests))
    with c.start(bedrock="slow") as slow:
        buffering = asyncio.run(measure_buffering(slow))
    ttfb_ok = ttfb["added_p50_ms"] <= TARGET_TTFB_ADDED_MS
    verdict = "met" if ttfb_ok else "NOT met"
    print(
        f"TTFB direct p50 {ttfb['direct']['p50_ms']:.2f} ms | gateway p50 {ttfb['gateway']['p50_ms']:.2f} ms"
        f" | added {ttfb['added_p50_ms']:.2f} ms (target <= {TARGET_TTFB_ADDED_MS} ms: {verdict})"
    )
    print(
        f"paced upstream ({buffering['upstream_duration_ms']:.0f} ms of events): first event after "
        f"{buffering['first_event_ms']:.1f} ms, last after {buffering['last_event_ms']:.1f} ms, "
        f"{buffering['chunks']} chunks: {'not buffered' if buffering['not_buffered'] else 'BUFFERED'}"
    )
    c.write_result(
        "streaming",
        {
            "target_ttfb_added_ms": TARGET_TTFB_ADDED_MS,
            "target_met": ttfb_ok and buffering["not_buffered"],
            "ttfb": ttfb,
            "buffering": buffering,
        },
    )
    return 0


async def measure_ttfb(bench: c.Bench, total: int) -> dict:
    direct_url = f"{bench.bedrock_urls['us-east-1']}/model/{c.PROFILE}/invoke-with-response-stream"
    gateway_url = f"{bench.gateway_url}/v1/messages"
    gateway_body = json.dumps({**c.BODY, "stream": True}).encode()
    direct_body = c.bedrock_body()
    direct: list[float] = []
    gateway: list[float] = []
    for i in range(total + 10):  # alternate; the first 10 of each warm up
        d = (await c.first_byte(direct_url, direct_body, c.direct_headers("us-east-1")))[0]
        g = (await c.first_byte(gateway_url, gateway_body, c.GATEWAY_HEADERS))[0]
        if i >= 10:
            direct.append(d)
            gateway.append(g)
    d, g = c.summary_ms(direct), c.summary_ms(gateway)
    return {"direct": d, "gateway": g, "added_p50_ms": round(g["p50_ms"] - d["p50_ms"], 3)}


async def measure_buffering(bench: c.Bench) -> dict:
    import time

    import httpx

    body = json.dumps({**c.BODY, "stream": True}).encode()
    await c.first_byte(
        f"{bench.gateway_url}/v1/messages", body, c.GATEWAY_HEADERS
    )  # warm: the botocore client
    arrivals: list[float] = []
    async with httpx.AsyncClient(timeout=30) as client:
        started = time.perf_counter()
        async with client.stream(
            "POST", f"{bench.gateway_url}/v1/messages", content=body, headers=c.GATEWAY_HEADERS
        ) as response:
            text = b""
            async for chunk in response.aiter_raw():
                arrivals.append(time.perf_counter() - started)
                text += chunk
    upstream_ms = c.SLOW_EVENT_GAP_SECONDS * (c.SLOW_EVENTS + 4) * 1000
    first, last = arrivals[0] * 1000, arrivals[-1] * 1000
    complete = text.rstrip().endswith(b'data: {"type":"message_stop"}')
    return {
        "upstream_duration_ms": upstream_ms,
        "first_event_ms": round(first, 2),
        "last_event_ms": round(last, 2),
        "chunks": len(arrivals),
        "median_gap_ms": round(statistics.median(_gaps(arrivals)) * 1000, 2),
        "complete": complete,
        # The first event arrived while most of the upstream's events were still to come.
        "not_buffered": complete and first < upstream_ms / 4 and len(arrivals) > c.SLOW_EVENTS // 2,
    }


def _gaps(arrivals: list[float]) -> list[float]:
    return [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)] or [0.0]
