"""How long the response's end can be held by settlement and the outcome record is bounded."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.runtime_fakes import settings


def test_the_quota_and_tenancy_dynamodb_client_has_short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.adapters import aws
    from gateway.adapters.dynamo_quota import DynamoQuotaStore
    from gateway.adapters.dynamo_tenancy import DynamoTenantStore

    built: list[dict[str, Any]] = []

    def fake_client(service: str, region: str, **config: Any) -> object:
        built.append({"service": service, **config})
        return object()

    monkeypatch.setattr(aws, "client", fake_client)
    aws._dynamodb.cache_clear()
    # Both stores share the container's one client: built once.
    assert DynamoTenantStore(settings()).client is DynamoQuotaStore(settings()).client
    aws._dynamodb.cache_clear()

    assert built == [{"service": "dynamodb", "connect_timeout": 2, "read_timeout": 3}]


@pytest.mark.anyio
async def test_the_response_end_waits_for_settlement_and_record_at_most_the_cap() -> None:
    from tests.unit.test_pipeline import BODY, World
    from tests.unit.test_response_end import call, slow_ports

    world, log = World(), []
    slow_ports(world, log, delay=0.5)
    world.app.state.gateway.finish_cap_seconds = 0.05
    await call(world, BODY, "2.4", log)

    assert log == ["start:200", "whole_body", "end"]  # ended before settlement and record
    assert world.app.state.background.pending == 1
    assert world.app.state.chain.metrics.counts["FinishOverrun"] == 1
    await world.app.state.background.drain()
    assert set(log[3:]) == {"settled", "outcome:response"}  # they still ran, in the background
