"""The end-to-end suite's stack and the tenant it creates (tests/e2e/deployment.py says how it is chosen).

Session fixtures: `deployment` (a local stack started for the session, or the deployed one), `suite`
(a tenant `e2e-<run>` with two machine clients, created with gatewayctl and removed at the end:
the clients erased with `gdpr erase`, the tenant suspended, since tenants are never deleted). The suite's
tests all run on one xdist worker (one stack, one tenant): `make test` distributes by group.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.deployment import (
    Config,
    Deployment,
    MachineClient,
    NotConfigured,
    cloud_deployment,
    local_deployment,
    stop_local,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.xdist_group("e2e"))


@pytest.fixture(scope="session")
def e2e_config() -> Config:
    try:
        return Config.from_env()
    except NotConfigured as exc:
        pytest.skip(f"end-to-end suite skipped: {exc}")


@pytest.fixture(scope="session")
def deployment(e2e_config: Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if e2e_config.target == "cloud":
        yield cloud_deployment(e2e_config)
        return
    started = local_deployment(e2e_config, Path(tmp_path_factory.mktemp("e2e")))
    try:
        yield started
    finally:
        stop_local(started)


@dataclass
class Suite:
    """What the suite created: its tenant and machine clients (tokens fresh for the session)."""

    tenant_id: str
    writer: MachineClient  # basic_user: reads, writes, haiku and sonnet; no tools
    limited: MachineClient  # basic_user with a limit of one request a minute
    request_ids: dict[str, list[str]] = field(default_factory=dict)


def create_client(deployment: Deployment, tenant_id: str, name: str, *limits: str) -> MachineClient:
    args = ["client", "create", tenant_id, name, "--role", "basic_user"]
    for limit in limits:
        args += ["--limit", limit]
    made = deployment.gatewayctl_json(*args)
    client = MachineClient(made["client_id"], made["client_secret"], name)
    client.token = deployment.machine_token(client)
    return client


@pytest.fixture(scope="session")
def suite(deployment: Deployment) -> Iterator[Suite]:
    tenant_id = f"e2e-{uuid.uuid4().hex[:10]}"
    config = deployment.config
    deployment.gatewayctl("tenant", "create", tenant_id, "--name", "End-to-end suite", "--residency", config.residency)
    made: list[MachineClient] = []
    try:
        writer = create_client(deployment, tenant_id, "e2e-writer")
        made.append(writer)
        limited = create_client(deployment, tenant_id, "e2e-limited", "requests_per_minute=1")
        made.append(limited)
        yield Suite(tenant_id, writer, limited)
    finally:
        # Erasing a machine principal deletes its app client, its usage windows and its principal.
        for client in made:
            deployment.gatewayctl("gdpr", "erase", client.client_id, "--yes", check=False)
        deployment.gatewayctl("tenant", "suspend", tenant_id, check=False)
