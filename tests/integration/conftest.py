"""The integration harness: one local stack per test session (per xdist worker), in-process.

The stack is gatewayctl.local.stack.LocalStack, the same composition `gatewayctl local up` runs:
a moto server, the resources from stacks/definitions.py, a Cognito pool with its app clients, the
Bedrock emulator (us: us-east-1, us-west-2; eu: eu-west-1, eu-central-1; one port each), the
Vertex emulator (us-east5, europe-west1) with its STS, and the gateway app
(gateway.app.create_app) under uvicorn behind the local Cognito authorizer. Every server binds
127.0.0.1 on an ephemeral port.

In-process threads, not subprocesses: starting boto3, moto and the app in fresh processes costs
seconds per worker, threads share one import; every part still talks over real loopback HTTP.
The stack sets AWS_ENDPOINT_URL (the moto server), fake AWS credentials and AWS_REGION in this
process's environment, so botocore clients made by tests and by the app reach moto.

Fixtures:
- `backing_stack`: moto + resources + emulators, no gateway app (for tests of the parts).
- `local_stack`: the same stack with the gateway running; `local_stack.endpoint` is the base_url.
- `target`: the gatewayctl Target of the stack (what the tenancy library and commands take).
- `make_tenant(residency="us", **kw) -> tenant_id`: a fresh, uniquely named tenant.
- `make_user(tenant_id, roles=("basic_user",), consent=True) -> User` with `.token` (a real
  Cognito access token from USER_PASSWORD_AUTH).
- `gateway_client(token) -> anthropic.Anthropic(base_url=..., auth_token=token, max_retries=0)`.
- `faults`: the stack, with every fault cleared, counts reset and circuit breakers closed (in the
  app and in the shared store) before and after the test:
  faults.set_fault("us-east-1", "throttle", count=1), faults.request_counts()["us-east-1"]["total"].
- `run_gatewayctl(local_dir, *args)`: the CLI in a subprocess, with GATEWAY_LOCAL_DIR=local_dir.
- `audit_stream`: the audit records the app put on the stack's Kinesis stream, read back with
  GetRecords (no pump): audit_stream.outcomes(tenant_id) waits for a tenant's outcome records.
- `caller`: a fresh tenant (us) with a power_user (tools, vision), its SDK client, on a `faults`-reset
  stack: caller.client, caller.tenant_id, caller.user, caller.stack.
- `upstream_calls(stack)`: every request the Bedrock and Vertex emulators received, summed.
Tests that read counts should use `faults` (it resets them) since tests share the worker's stack.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gatewayctl.local.stack import LocalStack, StackOptions, User
from tests.support.audit_stream import AuditStream


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def own_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """gatewayctl keeps cloud sign-ins and the pointer to the running local stack in the user's config
    dir: the tests (and the CLI processes they start) use their own, never the user's."""
    path = tmp_path_factory.mktemp("config")
    previous = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("XDG_CONFIG_HOME", None)
    else:
        os.environ["XDG_CONFIG_HOME"] = previous


@pytest.fixture(scope="session")
def backing_stack() -> Iterator[LocalStack]:
    stack = LocalStack(StackOptions())
    try:
        stack.start(gateway=False)
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def local_stack(backing_stack: LocalStack) -> LocalStack:
    if not backing_stack.endpoint:
        backing_stack.start_gateway()
    return backing_stack


@pytest.fixture
def target(backing_stack: LocalStack):
    return backing_stack.target()


@pytest.fixture
def make_tenant(backing_stack: LocalStack) -> Callable[..., str]:
    def make(residency: str = "us", *, prefix: str = "t", **kwargs: Any) -> str:
        tenant_id = f"{prefix}-{uuid.uuid4().hex[:10]}"
        backing_stack.create_tenant(tenant_id, residency=residency, **kwargs)
        return tenant_id

    return make


@pytest.fixture
def make_user(backing_stack: LocalStack) -> Callable[..., User]:
    def make(
        tenant_id: str,
        roles: tuple[str, ...] | list[str] = ("basic_user",),
        *,
        consent: bool = True,
        username: str | None = None,
    ) -> User:
        username = username or f"user-{uuid.uuid4().hex[:10]}@example.com"
        user = backing_stack.add_user(tenant_id, username, roles, consent=consent)
        user.token = backing_stack.access_token(user.username, user.password)
        return user

    return make


@pytest.fixture
def gateway_client(local_stack: LocalStack) -> Callable[[str], Any]:
    import anthropic

    def make(token: str, **kwargs: Any) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=local_stack.endpoint, auth_token=token, max_retries=0, **kwargs)

    return make


@pytest.fixture
def faults(backing_stack: LocalStack) -> Iterator[LocalStack]:
    backing_stack.clear_faults()
    backing_stack.reset_counts()
    backing_stack.reset_breakers()
    yield backing_stack
    backing_stack.clear_faults()
    backing_stack.reset_breakers()


@pytest.fixture
def run_gatewayctl() -> Callable[..., subprocess.CompletedProcess]:
    """Run the CLI as a user does: `python -m gatewayctl.cli ARGS` with .local/ under `local_dir`.

    own_aws_env=True drops the harness's AWS_ENDPOINT_URL/AWS_REGION (for `local up`, which starts its
    own moto); otherwise the CLI talks to this worker's stack."""

    def run(
        local_dir: Path, *args: str, own_aws_env: bool = False, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        env = {**os.environ, "GATEWAY_LOCAL_DIR": str(local_dir)}
        if own_aws_env:
            for key in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION"):
                env.pop(key, None)
        return subprocess.run(
            [sys.executable, "-m", "gatewayctl.cli", *args],
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def upstream_calls(stack: LocalStack) -> int:
    """Requests that reached any emulated upstream (Bedrock regions and Vertex), by the control APIs."""
    providers = ("bedrock", "vertex") if stack.vertex_endpoint else ("bedrock",)
    return sum(c.get("total", 0) for p in providers for c in stack.request_counts(p).values())


@pytest.fixture(scope="session")
def audit_stream(backing_stack: LocalStack) -> AuditStream:
    return AuditStream(backing_stack.client("kinesis"), backing_stack.outputs["AuditStreamName"])


@dataclass
class Caller:
    tenant_id: str
    user: User
    client: Any  # anthropic.Anthropic with the user's Cognito access token
    stack: LocalStack


@pytest.fixture
def caller(make_tenant, make_user, gateway_client, faults: LocalStack) -> Iterator[Caller]:
    tenant_id = make_tenant("us")
    user = make_user(tenant_id, roles=("power_user",))
    with gateway_client(user.token) as client:
        yield Caller(tenant_id, user, client, faults)
