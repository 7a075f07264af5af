"""The gateway next to the LiteLLM proxy, side by side on one machine: same Bedrock emulator, same request.

LiteLLM is installed in its own virtual environment under .build/ (a pinned version; 1.82.7 and 1.82.8
were compromised on PyPI and are refused), runs as its CLI starts it (one worker, no database, a master
key), and reaches the emulator through its bedrock/invoke/ provider with fake credentials. Both get the
identical Messages request on /v1/messages (LiteLLM's Anthropic-compatible endpoint). Measured, alternating
request by request (so load on a shared machine falls on all alike): p50/p99 latency added over calling the
emulator directly at concurrency 1 and 16, time to first byte of a stream, CPU per 1,000 requests (each
server process's own, from /proc), RSS, and start-to-ready. The gateway runs twice: its code path alone
(no-op tenancy, quota and audit ports) and with its real adapters against the DynamoDB/Kinesis stand-ins.

    .venv/bin/python -m bench litellm [--version 1.108.7] [--requests 300]

Not part of `make bench`'s run of everything: the first run installs LiteLLM (about 400 MB) from PyPI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import _common as c

PINNED = "1.108.7"
# Compromised releases on PyPI: never installed, whatever is asked.
REFUSED = frozenset({"1.82.7", "1.82.8"})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench litellm")
    parser.add_argument("--version", default=PINNED, help=f"LiteLLM release to compare with (default {PINNED})")
    parser.add_argument("--requests", type=int, default=300, help="requests per target at concurrency 1")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds of 16 in flight, per target")
    args = parser.parse_args(argv)
    if args.version in REFUSED:
        print(f"bench litellm: LiteLLM {args.version} was compromised on PyPI; refusing to install it", file=sys.stderr)
        return 2
    try:
        venv = install(args.version)
    except RuntimeError as exc:
        print(f"bench litellm: {exc}", file=sys.stderr)
        return 1
    results = run(venv, args.requests, args.rounds)
    results["litellm_version"] = args.version
    report(results)
    c.write_result("litellm", results)
    return 0


def install(version: str) -> Path:
    """The virtual environment holding `litellm[proxy]==version` (made once, then reused)."""
    venv = c.ROOT / ".build" / f"litellm-{version}"
    python = venv / "bin" / "python"
    if not (venv / "bin" / "litellm").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"litellm[proxy]=={version}"],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pip could not install litellm[proxy]=={version}: {done.stderr.strip()[-500:]}")
    installed = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if installed in REFUSED or installed != version:
        raise RuntimeError(f"{venv} holds LiteLLM {installed}, not {version}; remove it and run again")
    return venv


class LiteLLM:
    def __init__(self, venv: Path, emulator_url: str) -> None:
        self.key = "sk-" + secrets.token_hex(24)
        home = c.ROOT / ".build" / "litellm-home"
        home.mkdir(parents=True, exist_ok=True)
        config = home / "config.yaml"
        config.write_text(
            "model_list:\n"
            f"  - model_name: {c.MODEL}\n"
            "    litellm_params:\n"
            f"      model: bedrock/invoke/{c.PROFILE}\n"
            f"      aws_bedrock_runtime_endpoint: {emulator_url}\n"
            "      aws_region_name: us-east-1\n"
            "      aws_access_key_id: testing\n"
            "      aws_secret_access_key: testing\n"
        )
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "LITELLM_MASTER_KEY": self.key,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # offline: the cost map that ships in the package
            "LITELLM_TELEMETRY": "False",
        }
        self.log = (home / "proxy.log").open("w")
        for _ in range(3):
            port = c.free_port()
            started = time.perf_counter()
            self.process = subprocess.Popen(
                [
                    str(venv / "bin" / "litellm"),
                    "--config",
                    str(config),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--num_workers",
                    "1",
                ],
                env=env,
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
            self.url = f"http://127.0.0.1:{port}"
            if c.wait_ready(f"{self.url}/health/liveliness", self.process, timeout=180):
                self.started_seconds = time.perf_counter() - started
                return
        raise RuntimeError(f"LiteLLM did not become ready; see {home / 'proxy.log'}")

    @property
    def headers(self) -> dict[str, str]:
        return {
            "authorization": f"Bearer {self.key}",
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
        }

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def run(venv: Path, requests: int, rounds: int) -> dict[str, Any]:
    upstream, info = c._spawn("upstream", "emulator")
    emulator = info["regions"]["us-east-1"]
    stop: list[Any] = [upstream]
    try:
        started = time.perf_counter()
        noop_process, noop = c._spawn("gateway", json.dumps({"bedrock_endpoints": info["regions"]}))
        noop_ready = time.perf_counter() - started
        stop.append(noop_process)
        real = c.start_real_gateway("real", info["regions"])
        stop.append(real)
        litellm = LiteLLM(venv, emulator)
        stop.append(litellm)
        targets = {
            "direct": (f"{emulator}/model/{c.PROFILE}/invoke", c.bedrock_body(), c.direct_headers("us-east-1"), None),
            "gateway (no-op ports)": (f"{noop['url']}/v1/messages", None, c.API_HEADERS, noop_process.pid),
            "gateway (real adapters)": (f"{real.url}/v1/messages", None, c.API_HEADERS, real.pid),
            f"litellm {litellm_version(venv)}": (
                f"{litellm.url}/v1/messages",
                None,
                litellm.headers,
                litellm.process.pid,
            ),
        }
        ready = {
            "gateway (no-op ports)": noop_ready,
            "gateway (real adapters)": real.started_seconds,
            next(t for t in targets if t.startswith("litellm")): litellm.started_seconds,
        }
        return asyncio.run(measure(targets, ready, requests, rounds))
    finally:
        for item in reversed(stop):
            if isinstance(item, subprocess.Popen):
                item.terminate()
                item.wait(10)
            else:
                item.stop()


def litellm_version(venv: Path) -> str:
    return venv.name.removeprefix("litellm-")


async def measure(targets: dict[str, tuple], ready: dict[str, float], requests: int, rounds: int) -> dict[str, Any]:
    import httpx

    whole = json.dumps(c.BODY).encode()
    streamed = json.dumps({**c.BODY, "stream": True}).encode()
    stream_urls = {
        name: (url.replace("/invoke", "/invoke-with-response-stream"), body or streamed, headers)
        for name, (url, body, headers, _) in targets.items()
    }
    latency: dict[str, list[float]] = {name: [] for name in targets}
    cpu: dict[str, float] = dict.fromkeys(targets, 0.0)
    async with httpx.AsyncClient(timeout=60) as client:
        for name, (url, body, headers, _) in targets.items():  # warm-up, and a check that each answers
            for _ in range(20):
                await _post(client, name, url, body or whole, headers)
        names = list(targets)
        for i in range(requests):
            order = names if i % 2 == 0 else names[::-1]
            for name in order:
                url, body, headers, pid = targets[name]
                before = c.cpu_seconds(pid) if pid else 0.0
                started = time.perf_counter()
                await _post(client, name, url, body or whole, headers)
                latency[name].append(time.perf_counter() - started)
                if pid:
                    cpu[name] += c.cpu_seconds(pid) - before
        ttfb: dict[str, list[float]] = {name: [] for name in targets}
        for i in range(max(20, requests // 5)):
            for name in names if i % 2 == 0 else names[::-1]:
                url, body, headers = stream_urls[name]
                ttfb[name].append((await c.first_byte(url, body, headers))[0])
    concurrent: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, (url, body, headers, _) in targets.items():
            concurrent[name] += await c.timed_requests(url, body or whole, headers, total=64, concurrency=16)
    out: dict[str, Any] = {"requests": requests, "targets": {}}
    direct = c.summary_ms(latency["direct"])
    direct_16 = c.summary_ms(concurrent["direct"])
    direct_ttfb = c.summary_ms(ttfb["direct"])
    for name, (_, _, _, pid) in targets.items():
        if name == "direct":
            continue
        one, sixteen, first = c.summary_ms(latency[name]), c.summary_ms(concurrent[name]), c.summary_ms(ttfb[name])
        out["targets"][name] = {
            "c1": one,
            "c16": sixteen,
            "added_c1_p50_ms": round(one["p50_ms"] - direct["p50_ms"], 3),
            "added_c1_p99_ms": round(one["p99_ms"] - direct["p99_ms"], 3),
            "added_c16_p50_ms": round(sixteen["p50_ms"] - direct_16["p50_ms"], 3),
            "added_c16_p99_ms": round(sixteen["p99_ms"] - direct_16["p99_ms"], 3),
            "ttfb_p50_ms": first["p50_ms"],
            "added_ttfb_p50_ms": round(first["p50_ms"] - direct_ttfb["p50_ms"], 3),
            "cpu_s_per_1000_requests": round(cpu[name] / len(latency[name]) * 1000, 2),
            "rss_mib": round(c.rss_mib(pid), 1),
            "start_to_ready_s": round(ready[name], 2),
        }
    out["direct"] = {"c1": direct, "c16": direct_16, "ttfb": direct_ttfb}
    return out


async def _post(client: Any, name: str, url: str, body: bytes, headers: dict[str, str]) -> None:
    response = await client.post(url, content=body, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"{name}: HTTP {response.status_code}: {response.text[:300]}")


def report(results: dict[str, Any]) -> None:
    rows = [
        ("added p50 / p99, concurrency 1 (ms)", lambda r: f"{r['added_c1_p50_ms']:.2f} / {r['added_c1_p99_ms']:.2f}"),
        (
            "added p50 / p99, concurrency 16 (ms)",
            lambda r: f"{r['added_c16_p50_ms']:.1f} / {r['added_c16_p99_ms']:.1f}",
        ),
        ("time to first byte, p50 (ms)", lambda r: f"{r['ttfb_p50_ms']:.2f} (+{r['added_ttfb_p50_ms']:.2f})"),
        ("CPU per 1,000 requests (s)", lambda r: f"{r['cpu_s_per_1000_requests']:.2f}"),
        ("RSS (MiB)", lambda r: f"{r['rss_mib']:.0f}"),
        ("start to ready (s)", lambda r: f"{r['start_to_ready_s']:.2f}"),
    ]
    names = list(results["targets"])
    print("| | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for label, cell in rows:
        print(f"| {label} | " + " | ".join(cell(results["targets"][n]) for n in names) + " |")
