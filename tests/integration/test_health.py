"""gatewayctl health against the local stack: every upstream probed, faults and breaker state reported."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from gateway.domain.breaker import BreakerState, breaker_key

from gatewayctl.health import breaker_store, check, gateway_settings

pytestmark = pytest.mark.integration


def test_all_upstreams_healthy_then_one_throttled_with_its_breaker_open(target, faults) -> None:
    rows = check(target, timeout=10)

    by_key = {(r["provider"], r["region"]): r for r in rows}
    assert ("bedrock", "us-east-1") in by_key and ("vertex", "us-east5") in by_key
    assert all(r["healthy"] and r["latency_ms"] > 0 and r["breaker"] == "closed" for r in rows), rows
    assert by_key[("bedrock", "us-east-1")]["model_id"] == "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    probe = next(r for r in faults.recent_requests() if r["model_id"].startswith("us.anthropic.claude-haiku"))
    assert probe["body"]["max_tokens"] == 1

    faults.set_fault("us-west-2", "throttle")
    store = breaker_store(target, gateway_settings(target))
    west_key = breaker_key("bedrock", "us-west-2", "us.anthropic.claude-haiku-4-5-20251001-v1:0")
    asyncio.run(store.save(west_key, BreakerState("open", time.time() + 60, time.time())))
    try:
        rows = check(target, timeout=10)
    finally:
        asyncio.run(store.save(west_key, BreakerState("closed", 0.0, time.time() + 1)))

    west = next(r for r in rows if r["region"] == "us-west-2")
    assert not west["healthy"] and west["error"].startswith("ThrottlingException (429)")
    assert west["breaker"] == "open"
    assert next(r for r in rows if r["region"] == "us-east-1")["healthy"]


def test_cli_json_output_and_exit_code(target, faults, monkeypatch, capsys) -> None:
    from gatewayctl import cli
    from gatewayctl import target as targets

    monkeypatch.setattr(targets, "resolve", lambda args: target)
    assert cli.main(["--json", "health", "--timeout", "10"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["provider"] for r in rows} == {"bedrock", "vertex"}

    faults.set_fault("eu-west-1", "error", status=503)
    assert cli.main(["health", "--timeout", "10"]) == 1
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["PROVIDER", "REGION", "RESIDENCIES"]
    assert "ServiceUnavailableException" in table
