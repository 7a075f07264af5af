"""The runtime over real loopback HTTP: Bedrock (two regions) and Vertex emulators, and the gateway app
under uvicorn, each on an ephemeral port in a thread of the test process.

Tenancy, quota and audit are in-memory fakes here (the request path's own behaviour is under test;
their DynamoDB/Kinesis adapters have their own integration tests). A small stand-in authorizer turns
`Authorization: Bearer user:<sub>` into the x-amzn-request-context header API Gateway passes, and answers
401 otherwise; the Cognito-token cases run against the local stack's real authorizer.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from gateway.app import build_upstreams, create_app
from gateway.domain.breaker import Breakers

from gatewayctl.local.bedrock_emulator import BedrockEmulator
from gatewayctl.local.faults import Fault
from gatewayctl.local.servers import ThreadedServer, bind, port_of
from gatewayctl.local.vertex_emulator import VertexEmulator, vertex_wif_config
from tests.unit.runtime_fakes import FakeAudit, FakeQuota, FakeTenancy, settings

REGIONS = ("us-east-1", "us-west-2")
VERTEX_REGION = "us-east5"
PROJECT = "gw-test-project"


class StandInAuthorizer:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] == "/healthz":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k != b"x-amzn-request-context"]
        auth = dict(headers).get(b"authorization", b"").decode()
        if not auth.startswith("Bearer user:"):
            body = b'{"type":"error","error":{"type":"authentication_error","message":"Unauthorized"}}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        sub = auth.removeprefix("Bearer user:")
        context = {
            "requestId": str(uuid.uuid4()),
            "authorizer": {
                "claims": {"sub": sub, "client_id": "app", "username": sub, "token_use": "access"}
            },
            "identity": {"sourceIp": "127.0.0.1"},
        }
        headers.append((b"x-amzn-request-context", json.dumps(context).encode()))
        await self.app({**scope, "headers": headers}, receive, send)


@dataclass
class RuntimeStack:
    bedrock: BedrockEmulator
    vertex: VertexEmulator
    gateway_url: str
    app: Any
    tenancy: FakeTenancy
    quota: FakeQuota
    audit: FakeAudit
    servers: list[ThreadedServer] = field(default_factory=list)

    def reset(self) -> None:
        # The last test's outcome records are written in the background after its reply: let them land
        # before clearing, or they would show up in the next test.
        self.wait_background()
        for board in (self.bedrock.board, self.vertex.board):
            board.clear()
            board.reset_counts()
        self.audit.requests.clear()
        self.audit.outcomes.clear()
        self.audit.fail_requests = False
        self.quota.settled.clear()
        self.quota.released.clear()
        self.quota.refuse = False
        breakers: Breakers = self.app.state.breakers
        breakers._states.clear()

    def fault(self, target: str, **spec: Any) -> None:
        board = self.vertex.board if target == VERTEX_REGION else self.bedrock.board
        board.add(target, Fault.parse(spec))

    def calls(self, target: str) -> int:
        board = self.vertex.board if target == VERTEX_REGION else self.bedrock.board
        return board.snapshot()["counts"].get(target, {}).get("total", 0)

    def wait_background(self, timeout: float = 5.0) -> None:
        """Wait for the app's background work (settle/release, outcome records) to finish."""
        deadline = time.monotonic() + timeout
        while self.app.state.background.pending and time.monotonic() < deadline:
            time.sleep(0.005)

    def outcomes(self, count: int = 1, timeout: float = 5.0) -> list[Any]:
        """The audit outcomes, once `count` of them were written (they are written after the reply)."""
        deadline = time.monotonic() + timeout
        while len(self.audit.outcomes) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.audit.outcomes)

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()


def start_runtime_stack(**settings_overrides: Any) -> RuntimeStack:
    # botocore signs for the emulator and google.auth.aws signs the STS subject token with these.
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ):
        os.environ.setdefault(name, value)
    servers: list[ThreadedServer] = []
    bedrock = BedrockEmulator()
    sockets = [bind(0, what=f"bedrock {r}") for r in REGIONS]
    bedrock.regions_by_port.update({port_of(s): r for s, r in zip(sockets, REGIONS, strict=True)})
    servers.append(ThreadedServer(bedrock.app, sockets, name="bedrock-emulator").start())
    vertex = VertexEmulator()
    vsock = bind(0, what="vertex")
    vertex_url = f"http://127.0.0.1:{port_of(vsock)}"
    servers.append(ThreadedServer(vertex.app, [vsock], name="vertex-emulator").start())
    config = settings(
        bedrock_regions={"us": REGIONS},
        bedrock_endpoints={
            r: f"http://127.0.0.1:{port_of(s)}" for s, r in zip(sockets, REGIONS, strict=True)
        },
        vertex_project=PROJECT,
        vertex_regions={"us": VERTEX_REGION},
        vertex_endpoint=vertex_url,
        vertex_wif_config=json.dumps(vertex_wif_config(vertex_url, PROJECT)),
        **settings_overrides,
    )
    tenancy, quota, audit = FakeTenancy(), FakeQuota(), FakeAudit()
    app = create_app(config, tenancy=tenancy, quota=quota, audit=audit, upstreams=build_upstreams(config))
    gsock = bind(0, what="gateway")
    servers.append(ThreadedServer(StandInAuthorizer(app), [gsock], name="gateway").start())
    return RuntimeStack(
        bedrock, vertex, f"http://127.0.0.1:{port_of(gsock)}", app, tenancy, quota, audit, servers
    )


@pytest.fixture(scope="session")
def runtime_stack() -> Iterator[RuntimeStack]:
    stack = start_runtime_stack()
    yield stack
    stack.stop()


@pytest.fixture
def stack(runtime_stack: RuntimeStack) -> RuntimeStack:
    runtime_stack.reset()
    return runtime_stack


@pytest.fixture
def client(stack: RuntimeStack) -> Iterator[Any]:
    import anthropic

    with anthropic.Anthropic(base_url=stack.gateway_url, auth_token="user:alice", max_retries=0) as sdk:
        yield sdk
