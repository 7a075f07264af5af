"""The local stack's memory over a long run: RSS of its processes (the stack and the audit pump) while it
serves N requests, and what that predicts for 10,000 (docs/local-stack.md, "Memory").

The stack runs as `gatewayctl local up` runs it (gatewayctl/local/serve.py, one process, ephemeral ports,
the pump beside it). Clients send the requests through the whole path (Cognito token, authorizer, quota
transaction on a tenant with limits, audit records, emulator); one in four streams. RSS is sampled
after a warm-up and then regularly. The prediction is linear, at the larger of the two halves' growth per
request, and holds only if that rate is not rising (moto's cost per write used to grow with what it held),
which the run checks. A stack in use holds earlier tenants' usage items: the run starts with 1,000.

`python -m bench local_memory [--requests 10000] [--clients 8]`; the integration test runs 2,000.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LIMIT_BYTES = 1 << 30  # what the stack must stay under after 10,000 requests
TARGET_REQUESTS = 10_000
MODEL = "claude-haiku-4-5"


@dataclass
class Run:
    requests: int
    statuses: dict[str, int] = field(default_factory=dict)
    samples: list[tuple[int, int]] = field(default_factory=list)  # (requests done, RSS bytes)
    elapsed_s: float = 0.0

    def slopes(self) -> tuple[float, float]:
        """Bytes per request over the first and the second half of the samples (all after the warm-up)."""
        points = self.samples
        half = len(points) // 2
        return _slope(points[: half + 1]), _slope(points[half:])

    def predicted_bytes(self, at: int = TARGET_REQUESTS) -> float:
        """Linear, at the larger of the two halves' rates: honest only while the rate does not rise
        (`steady`), since moto's cost per write used to grow with what it held."""
        done, rss = self.samples[-1]
        return rss + max(*self.slopes(), 0.0) * max(0, at - done)

    def steady(self) -> bool:
        """The second half did not grow markedly faster than the first (noise: 10 KB per request)."""
        first, second = self.slopes()
        return second <= 2 * max(first, 0.0) + 10 * 1024

    def report(self) -> dict[str, Any]:
        first, second = self.slopes()
        return {
            **asdict(self),
            "rss_start_mb": round(self.samples[0][1] / 2**20, 1),
            "rss_end_mb": round(self.samples[-1][1] / 2**20, 1),
            "kb_per_request_first_half": round(first / 1024, 2),
            "kb_per_request_second_half": round(second / 1024, 2),
            f"predicted_mb_at_{TARGET_REQUESTS}": round(self.predicted_bytes() / 2**20, 1),
            "limit_mb": LIMIT_BYTES // 2**20,
            "steady": self.steady(),
        }


def _slope(points: list[tuple[int, int]]) -> float:
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Stack:
    """`python -m gatewayctl.local.serve` in its own process group, on ephemeral ports."""

    def __init__(self, workdir: Path) -> None:
        self.state_path = workdir / "stack.json"
        self.log = workdir / "stack.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # its own moto, not ours
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gatewayctl.local.serve", "--state", str(self.state_path), "--ports", "{}"],
                cwd=Path(__file__).resolve().parents[1],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.state = self._wait_for_state(120.0)

    def _wait_for_state(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the stack exited during start-up:\n{self.log.read_text()[-2000:]}")
            if self.state_path.exists():
                return json.loads(self.state_path.read_text())
            time.sleep(0.1)
        raise RuntimeError(f"the stack did not start within {timeout:.0f}s:\n{self.log.read_text()[-2000:]}")

    def pids(self) -> list[int]:
        return [p for p in (self.process.pid, self.state.get("pump_pid")) if p]

    def rss(self) -> int:
        return sum(rss_bytes(pid) for pid in self.pids())

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def _prepare(state: dict[str, Any], tenants: int, past_items: int) -> list[str]:
    """A user's token per tenant (tenants with limits: every reservation is a conditional transaction),
    and `past_items` window items of earlier tenants in the usage table, as a stack in use holds them
    (moto's cost per transaction grew with the table)."""
    from gatewayctl import admin
    from gatewayctl.local import seeding, tokens
    from gatewayctl.target import Target

    target = Target(
        kind="local", region=state["region"], outputs=state["outputs"], endpoint_url=state["moto_endpoint"], local=state
    )
    ddb = target.client("dynamodb")
    for n in range(past_items):
        item = {"pk": {"S": f"USAGE#past-{n // 3}"}, "sk": {"S": f"{('minute', 'day', 'month')[n % 3]}#past"}}
        ddb.put_item(TableName=state["outputs"]["UsageTableName"], Item={**item, "requests": {"N": "1"}})
    limits = {"requests_per_minute": 1_000_000, "tokens_per_minute": 10**9, "tokens_per_day": 10**10}
    idp = target.client("cognito-idp")
    out = []
    for n in range(tenants):
        admin.create_tenant(target, f"memory-{n}", residency="us", limits=limits)
        user = seeding.add_user(target, f"memory-{n}", f"memory-{n}@example.com", ("basic_user",), consent=True)
        out.append(tokens.access_token(idp, state["cognito"]["people_client_id"], user.username, user.password))
    return out


def measure(
    requests: int,
    *,
    clients: int = 8,
    tenants: int = 8,
    past_items: int = 1_000,
    samples: int = 10,
    warmup: int | None = None,
) -> Run:
    """Start a stack, send `requests` requests from `clients` threads, sample RSS; stop the stack."""
    import anthropic

    warmup = min(200, requests // 10) if warmup is None else warmup
    run = Run(requests=requests)
    statuses: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="local-memory-") as tmp:
        stack = Stack(Path(tmp))
        try:
            tokens_ = _prepare(stack.state, tenants, past_items)
            endpoint = stack.state["endpoint"]
            counter = iter(range(requests))
            lock = threading.Lock()
            every = max(1, (requests - warmup) // samples)
            done = [0]

            def one(client: Any, n: int) -> str:
                messages = [{"role": "user", "content": f"request {n}"}]
                try:
                    if n % 4 == 0:
                        with client.messages.stream(model=MODEL, max_tokens=32, messages=messages) as stream:
                            stream.get_final_message()
                    else:
                        client.messages.create(model=MODEL, max_tokens=32, messages=messages)
                    return "200"
                except anthropic.APIStatusError as exc:
                    return str(exc.status_code)
                except anthropic.APIConnectionError as exc:
                    return type(exc).__name__

            def worker(index: int) -> None:
                with anthropic.Anthropic(
                    base_url=endpoint, auth_token=tokens_[index % len(tokens_)], max_retries=0, timeout=60
                ) as client:
                    while True:
                        with lock:
                            n = next(counter, None)
                        if n is None:
                            return
                        status = one(client, n)
                        with lock:
                            statuses[status] += 1
                            done[0] += 1
                            finished = done[0]
                            due = finished == warmup or (finished > warmup and (finished - warmup) % every == 0)
                            if due or finished == requests:
                                run.samples.append((finished, stack.rss()))

            started = time.monotonic()
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(worker, range(clients)))
            run.elapsed_s = round(time.monotonic() - started, 1)
        finally:
            stack.stop()
    run.samples.sort()
    run.statuses = dict(statuses)
    return run


def main(argv: list[str]) -> int:
    from bench import _common

    parser = argparse.ArgumentParser(prog="bench local_memory")
    parser.add_argument("--requests", type=int, default=TARGET_REQUESTS)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--tenants", type=int, default=8)
    parser.add_argument("--past-items", type=int, default=1_000)
    args = parser.parse_args(argv)
    run = measure(args.requests, clients=args.clients, tenants=args.tenants, past_items=args.past_items)
    report = run.report()
    print(
        f"{args.requests} requests in {run.elapsed_s}s {run.statuses}: RSS {report['rss_start_mb']} -> "
        f"{report['rss_end_mb']} MB, {report['kb_per_request_first_half']} / {report['kb_per_request_second_half']} "
        f"KB per request (first / second half), predicted at {TARGET_REQUESTS}: "
        f"{report[f'predicted_mb_at_{TARGET_REQUESTS}']} MB (limit {report['limit_mb']} MB)"
    )
    _common.write_result("local_memory", report)
    ok = run.predicted_bytes() < LIMIT_BYTES and run.steady() and run.statuses == {"200": args.requests}
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
