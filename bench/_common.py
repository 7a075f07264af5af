"""Shared parts of the runtime benchmarks: servers on loopback, no-op ports, timing helpers.

The gateway runs with no-op tenancy, quota and audit ports (they answer at once), so the figures are
what the gateway's own code adds on the request path (parse, steps, failover loop, botocore call,
SSE relay); the DynamoDB and Kinesis round trips are measured by their adapters' own tests and are
a deployment property (one transaction and one put, concurrently, see docs/ARCHITECTURE.md).
Everything binds 127.0.0.1 on ephemeral ports.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
# us-east-2 is for benchmarks that need a region that always fails next to healthy ones.
REGIONS = ("us-east-1", "us-west-2", "us-east-2")
MODEL = "claude-haiku-4-5"
PROFILE = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
BODY = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "Say hello"}]}
CONTEXT = json.dumps(
    {
        "requestId": "bench",
        "authorizer": {"claims": {"sub": "bench-user", "client_id": "bench", "username": "bench"}},
        "identity": {"sourceIp": "127.0.0.1"},
    }
)
GATEWAY_HEADERS = {"x-amzn-request-context": CONTEXT, "content-type": "application/json"}


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(
        json.dumps(
            {"benchmark": name, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **data},
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
    print(f"wrote {path.relative_to(RESULTS.parent.parent)}")
    return path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 50) * 1000, 3),
        "p99_ms": round(percentile(values, 99) * 1000, 3),
        "mean_ms": round(statistics.fmean(values) * 1000, 3),
        "n": len(values),
    }


# -- no-op ports ------------------------------------------------------------------------------------


class NoopTenancy:
    async def resolve(self, identity: Any) -> Any:
        from gateway.models.exchange import Principal

        return Principal(id=identity.principal_id, tenant_id="bench", roles=("admin",), pseudonym="0" * 64)

    async def authorize(self, principal: Any, request: Any, entry: Any = None) -> Any:
        from gateway.domain.catalog import load_catalog
        from gateway.models.exchange import PolicyDecision

        entry = entry or load_catalog().lookup(request.model)
        return PolicyDecision(entry=entry, residency="us", body=request.body)

    async def permissions(self, principal: Any) -> frozenset[str]:
        return frozenset({"read", "write"})

    async def allowed_models(self, principal: Any) -> list[Any]:
        from gateway.domain.catalog import load_catalog

        return list(load_catalog().entries)


class NoopQuota:
    async def reserve(self, principal: Any, decision: Any, request: Any) -> Any:
        return object()

    async def settle(self, reservation: Any, usage: Any, cost_usd: float) -> None:
        return None

    async def release(self, reservation: Any) -> None:
        return None

    def headers(self, reservation: Any) -> dict[str, str]:
        return {"anthropic-ratelimit-requests-remaining": "1000"}

    def headers_for(self, principal: Any) -> dict[str, str]:
        return {}

    async def usage_report(self, principal: Any) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        return None


class NoopAudit:
    async def record_request(self, exchange: Any) -> None:
        return None

    async def record_outcome(self, exchange: Any) -> None:
        return None


class NullMetrics:
    def count(self, name: str, value: float = 1, **dimensions: str) -> None:
        return None


# -- servers ----------------------------------------------------------------------------------------


@dataclass
class Bench:
    gateway_url: str
    bedrock_urls: dict[str, str]
    processes: list[subprocess.Popen] = field(default_factory=list)

    def fault(self, region: str, **spec: Any) -> None:
        import httpx

        httpx.post(f"{self.bedrock_urls[region]}/_emulator/faults/{region}", json=spec).raise_for_status()

    def add_gateway(self, **settings_overrides: Any) -> str:
        """One more gateway process on the same upstream; returns its URL."""
        process, info = _spawn(
            "gateway", json.dumps({"bedrock_endpoints": self.bedrock_urls, **settings_overrides})
        )
        self.processes.append(process)
        return info["url"]

    def request_count(self, region: str) -> int:
        import httpx

        counts = httpx.get(f"{self.bedrock_urls[region]}/_emulator/requests").json()["counts"]
        return counts.get(region, {}).get("total", 0)

    def clear_faults(self) -> None:
        import httpx

        httpx.delete(f"{self.bedrock_urls[REGIONS[0]]}/_emulator/faults").raise_for_status()

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def start(*, bedrock: str = "emulator", **settings_overrides: Any) -> Bench:
    """The Bedrock upstream and the gateway, each a uvicorn server in its own process (own GIL), so the
    client, the gateway and the upstream do not share an interpreter. `bedrock`: "emulator" (the local
    stack's Bedrock emulator) or "slow" (a streaming upstream that paces its events, see slow_bedrock)."""
    upstream = _spawn("upstream", bedrock)
    urls = upstream[1]["regions"]
    bench = Bench("", urls, [upstream[0]])
    bench.gateway_url = bench.add_gateway(**settings_overrides)
    return bench


def _spawn(*args: str) -> tuple[subprocess.Popen, dict[str, Any]]:
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": f"{root / 'lambda_src'}:{root}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bench._common", *args], stdout=subprocess.PIPE, env=env, cwd=root, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(5)
        raise RuntimeError(f"bench server {args[0]} failed to start (exit {process.returncode})")
    return process, json.loads(line)


def _serve(servers: list[Any], info: dict[str, Any]) -> None:
    print(json.dumps(info), flush=True)
    try:
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        for server in servers:
            server.stop()


def serve_upstream(kind: str) -> None:
    from gatewayctl.local.bedrock_emulator import BedrockEmulator
    from gatewayctl.local.servers import ThreadedServer, bind, port_of

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    emulator = BedrockEmulator()
    sockets = [bind(0, what=f"bedrock {r}") for r in REGIONS]
    emulator.regions_by_port.update({port_of(s): r for s, r in zip(sockets, REGIONS, strict=True)})
    apps = {"emulator": lambda: emulator.app, "slow": slow_bedrock, "long": lambda: slow_bedrock(0.0, LONG_EVENTS)}
    app = apps[kind]()
    server = ThreadedServer(app, sockets, name="bedrock").start()
    _serve(
        [server],
        {"regions": {r: f"http://127.0.0.1:{port_of(s)}" for s, r in zip(sockets, REGIONS, strict=True)}},
    )


def serve_gateway(overrides_json: str) -> None:
    from gateway.app import build_upstreams, create_app
    from gateway.settings import Settings

    from gatewayctl.local.servers import ThreadedServer, bind, port_of

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    overrides = json.loads(overrides_json)
    settings = Settings(
        env="bench",
        region="us-east-1",
        tenants_table="t",
        usage_table="u",
        audit_stream="a",
        audit_dlq_url="http://dlq",
        **{"bedrock_regions": {"us": REGIONS[:2]}, **overrides},
    )
    gateway = create_app(
        settings,
        tenancy=NoopTenancy(),
        quota=NoopQuota(),
        audit=NoopAudit(),
        upstreams=build_upstreams(settings),
        metrics=NullMetrics(),
    )
    logging.getLogger("gateway").setLevel(logging.WARNING)
    sock = bind(0, what="gateway")
    server = ThreadedServer(gateway, [sock], name="gateway").start()
    _serve([server], {"url": f"http://127.0.0.1:{port_of(sock)}"})


SLOW_EVENT_GAP_SECONDS = 0.05
SLOW_EVENTS = 20
# A long reply ("long" upstream): text deltas sent as fast as the connection takes them.
LONG_EVENTS = 1000


def slow_bedrock(gap_seconds: float = SLOW_EVENT_GAP_SECONDS, deltas: int = SLOW_EVENTS) -> Any:
    """A Bedrock InvokeModelWithResponseStream that paces its events `gap_seconds` apart, to show that
    the gateway relays each event as it comes (the first reaches the client long before the upstream is
    done); with no gap, `deltas` text deltas as fast as they go (the relay's cost per event)."""
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    from gatewayctl.local.eventstream import chunk_event

    def events() -> list[dict[str, Any]]:
        usage = {"input_tokens": 5, "output_tokens": 1}
        message = {
            "id": "msg_slow",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        out: list[dict[str, Any]] = [
            {"type": "message_start", "message": message},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ]
        out += [
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"w{i} "}}
            for i in range(deltas)
        ]
        out += [
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": deltas},
            },
            {"type": "message_stop"},
        ]
        return out

    async def stream(request: Any) -> StreamingResponse:
        await request.body()

        async def body() -> AsyncIterator[bytes]:
            for i, event in enumerate(events()):
                if i and gap_seconds:
                    await asyncio.sleep(gap_seconds)
                yield chunk_event(event)

        return StreamingResponse(body(), media_type="application/vnd.amazon.eventstream")

    return Starlette(
        routes=[Route("/model/{model_id:path}/invoke-with-response-stream", stream, methods=["POST"])]
    )


# -- the gateway as the Lambda runs it, with its real adapters against the stand-ins --------------------

ROOT = Path(__file__).resolve().parent.parent
TENANT = "bench"
PRINCIPAL = "bench-user"
# What API Gateway's REST API (Cognito authorizer) puts in x-amzn-request-context through the Lambda Web
# Adapter, in its real shape and about its real size: claims as strings, the request id, the caller.
API_CONTEXT = json.dumps(
    {
        "resourceId": "abc123",
        "resourcePath": "/v1/messages",
        "httpMethod": "POST",
        "extendedRequestId": "Qw3rTyUiOpAsDfG=",
        "requestTime": "23/Nov/2026:05:33:00 +0000",
        "path": "/prod/v1/messages",
        "accountId": "123456789012",
        "protocol": "HTTP/1.1",
        "stage": "prod",
        "domainPrefix": "gateway",
        "requestTimeEpoch": 1795412380000,
        "requestId": "8d4f1c2e-7b1a-4c55-9a0e-3f6b2d9c1e77",
        "identity": {"sourceIp": "203.0.113.7", "userAgent": "Anthropic/Python 0.70.0", "user": None},
        "domainName": "gateway.example.com",
        "deploymentId": "d1e2f3",
        "apiId": "a1b2c3d4e5",
        "authorizer": {
            "claims": {
                "sub": PRINCIPAL,
                "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEfGhI",
                "client_id": "3n4b5urk1ft4fl3mg5e62d9ado",
                "origin_jti": "5f8c1a7e-1b2c-4d5e-8f9a-0b1c2d3e4f5a",
                "event_id": "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d",
                "token_use": "access",
                "scope": "claude-gateway/invoke",
                "auth_time": "1795412000",
                "exp": "Mon Nov 23 06:33:00 UTC 2026",
                "iat": "Mon Nov 23 05:33:00 UTC 2026",
                "jti": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                "username": PRINCIPAL,
            }
        },
    }
)
API_HEADERS = {
    "x-amzn-request-context": API_CONTEXT,
    "content-type": "application/json",
    "anthropic-version": "2023-06-01",
    "user-agent": "Anthropic/Python 0.70.0",
}
# Limits on every window, so a reservation carries its conditions, as a real tenant's does.
TENANT_LIMITS = {
    "requests_per_minute": 10**6,
    "tokens_per_minute": 10**9,
    "tokens_per_day": 10**10,
    "usd_per_month": 10**6,
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (live and ended), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class RealGateway:
    """The gateway as the Lambda Web Adapter starts it (uvicorn, gateway.main:app, Settings.from_env)
    with the real DynamoDB and Kinesis adapters, pointed at its own stand-ins by AWS_ENDPOINT_URL."""

    label: str
    url: str
    standins_url: str
    process: subprocess.Popen
    standins: subprocess.Popen
    started_seconds: float  # process start until /healthz answered

    @property
    def pid(self) -> int:
        return self.process.pid

    def calls(self) -> dict[str, int]:
        import httpx

        return {k: v for k, v in httpx.get(f"{self.standins_url}/_standin/calls").json().items() if "." in k}

    def reset_calls(self) -> None:
        import httpx

        httpx.delete(f"{self.standins_url}/_standin/calls").raise_for_status()

    def stop(self) -> None:
        for process in (self.process, self.standins):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def lambda_environment(source: Path, bedrock_urls: dict[str, str], aws_endpoint: str) -> dict[str, str]:
    """What the stack sets on the function (docs/ARCHITECTURE.md, Environment), for the local endpoints."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(source / "lambda_src"),
        "GATEWAY_ENV": "bench",
        "AWS_REGION": "us-east-1",
        "TENANTS_TABLE": "tenants",
        "USAGE_TABLE": "usage",
        "AUDIT_STREAM": "audit",
        "AUDIT_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/audit-dlq",
        "BEDROCK_REGIONS": json.dumps({"us": list(REGIONS[:2])}),
        "BEDROCK_ENDPOINTS": json.dumps(bedrock_urls),
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }


def start_standins() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench._standins"], stdout=subprocess.PIPE, cwd=ROOT, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(5)
        raise RuntimeError(f"the AWS stand-ins failed to start (exit {process.returncode})")
    return process, json.loads(line)["url"]


def seed(aws_endpoint: str) -> None:
    """The bench tenant (limits on every window) and its principal, written as the admin library writes them."""
    import botocore.session
    from gateway.adapters.dynamo_codec import to_item
    from gateway.models import tenant_items

    from gatewayctl.admin.principals import new_principal_item

    client = botocore.session.get_session().create_client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url=aws_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    tenant = {
        **tenant_items.tenant_key(TENANT),
        "tenant_id": TENANT,
        "name": "Bench",
        "status": "active",
        "residency": "us",
        "allowed_models": [],
        "limits": TENANT_LIMITS,
        "principal_limits": {},
        "consent_required": False,
        "client_details": "pseudonymize",
    }
    principal = new_principal_item(
        TENANT, PRINCIPAL, ["basic_user"], kind="user", consent=False, limits=None, display_name=None
    )
    for item in (tenant, principal):
        client.put_item(TableName="tenants", Item=to_item(item))


def start_real_gateway(label: str, bedrock_urls: dict[str, str], *, source: Path = ROOT) -> RealGateway:
    """uvicorn as lambda_src/run.sh starts it (--host/--port, one worker, no access log)."""
    standins, aws_endpoint = start_standins()
    try:
        seed(aws_endpoint)
        env = lambda_environment(source, bedrock_urls, aws_endpoint)
        for _ in range(5):  # uvicorn binds the port itself (as in Lambda); another process may take it first
            port = free_port()
            started = time.perf_counter()
            process = subprocess.Popen(
                [
                    sys.executable, "-m", "uvicorn", "gateway.main:app", "--host", "127.0.0.1",
                    "--port", str(port), "--workers", "1", "--no-access-log", "--timeout-keep-alive", "900",
                    "--log-level", "warning",
                ],
                env=env,
                cwd=source,
                stdout=subprocess.DEVNULL,  # the JSON log lines are written (as in Lambda), not kept
            )
            url = f"http://127.0.0.1:{port}"
            if wait_ready(f"{url}/healthz", process):
                gateway = RealGateway(label, url, aws_endpoint, process, standins, time.perf_counter() - started)
                return gateway
    except BaseException:
        standins.terminate()
        raise
    standins.terminate()
    raise RuntimeError(f"gateway {label} did not become ready (exit {process.returncode})")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 90.0) -> bool:
    """Poll `url` until it answers 200; False when the process died first (or the time ran out)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            return False
        time.sleep(0.01)
    process.terminate()
    return False


def baseline_source(ref: str) -> Path:
    """The gateway's code at `ref` (a commit of this repository), exported once under .build/."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    target = ROOT / ".build" / f"baseline-{sha[:12]}"
    if not (target / "lambda_src" / "gateway" / "main.py").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", sha, "lambda_src"], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def direct_headers(region: str) -> dict[str, str]:
    """What botocore sends, in the shape the emulator checks (it verifies the SigV4 scope, not the key)."""
    stamp = time.strftime("%Y%m%d", time.gmtime())
    return {
        "content-type": "application/json",
        "authorization": f"AWS4-HMAC-SHA256 Credential=testing/{stamp}/{region}/bedrock/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=0",
        "x-amz-date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
    }


def bedrock_body() -> bytes:
    body = {k: v for k, v in BODY.items() if k != "model"}
    return json.dumps({**body, "anthropic_version": "bedrock-2023-05-31"}).encode()


async def timed_requests(
    url: str, body: bytes, headers: dict[str, str], *, total: int, concurrency: int, stream: bool = False
) -> list[float]:
    """Latency of `total` POSTs, `concurrency` at a time, each on a kept-alive connection."""
    import httpx

    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            while not queue.empty():
                queue.get_nowait()
                started = time.perf_counter()
                response = await client.post(url, content=body, headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(f"{url}: HTTP {response.status_code}: {response.text[:200]}")
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def alternating(
    a: tuple[str, bytes, dict[str, str]], b: tuple[str, bytes, dict[str, str]], *, total: int
) -> tuple[list[float], list[float]]:
    """Latencies of `total` requests to each of two targets, one after the other, alternating, so that
    both see the same machine (load on a shared machine drifts; blocks of one then the other would not)."""
    import httpx

    out: tuple[list[float], list[float]] = ([], [])
    async with httpx.AsyncClient(timeout=30) as client_a, httpx.AsyncClient(timeout=30) as client_b:
        for i in range(total * 2):
            which = i % 2 if (i // 2) % 2 == 0 else 1 - i % 2  # ABBA: neither always goes first
            client, (url, body, headers) = ((client_a, a), (client_b, b))[which]
            started = time.perf_counter()
            response = await client.post(url, content=body, headers=headers)
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {response.status_code}: {response.text[:200]}")
            out[which].append(elapsed)
    return out


async def first_byte(url: str, body: bytes, headers: dict[str, str]) -> tuple[float, float]:
    """(time to the first body byte, time to the end of the body) of one streamed response."""
    import httpx

    async with httpx.AsyncClient(timeout=30) as client:
        started = time.perf_counter()
        async with client.stream("POST", url, content=body, headers=headers) as response:
            first = None
            async for _ in response.aiter_raw():
                if first is None:
                    first = time.perf_counter() - started
            return first or 0.0, time.perf_counter() - started


async def drain(stream: AsyncIterator[Any]) -> None:
    async for _ in stream:
        pass


if __name__ == "__main__":
    if sys.argv[1] == "upstream":
        serve_upstream(sys.argv[2])
    elif sys.argv[1] == "gateway":
        serve_gateway(sys.argv[2])
    else:
        raise SystemExit(f"unknown server {sys.argv[1]!r}")
