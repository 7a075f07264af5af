"""The emulators' control API (faults, request counts) and the circuit breakers, as tests and the
demo drive them between runs. The HTTP API is documented in docs/local-stack.md."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from gateway.domain.breaker import CLOSED, BreakerState
from gateway.models import tenant_items


def set_fault(control_url: str, region: str, kind: str, **fault: Any) -> dict[str, Any]:
    return http_json("POST", f"{control_url}/_emulator/faults/{region}", {"kind": kind, **fault})


def clear_faults(control_url: str, region: str | None = None) -> None:
    http_json("DELETE", f"{control_url}/_emulator/faults" + (f"/{region}" if region else ""))


def requests_seen(control_url: str) -> dict[str, Any]:
    """{"counts": {region: {"total": n, <operation>: n}}, "recent": [...]}."""
    return http_json("GET", f"{control_url}/_emulator/requests")


def reset_counts(control_url: str) -> None:
    http_json("DELETE", f"{control_url}/_emulator/requests")


def set_catalog(control_url: str, change: dict[str, Any]) -> dict[str, Any]:
    """An emulator's catalog switch: {"hide_profile": id, "region": r}, {"legacy": model id, ...} (Bedrock)
    or {"hide_model": id} (Vertex); gatewayctl/local/bedrock_control_plane.py, vertex_emulator.py."""
    return http_json("POST", f"{control_url}/_emulator/catalog", change)


def clear_catalog(control_url: str) -> None:
    http_json("DELETE", f"{control_url}/_emulator/catalog")


def close_breakers(app: Any, ddb: Any, tenants_table: str) -> None:
    """Close every breaker, in the app's memory and in the shared store (whatever upstream and model
    it is for), so that one test's injected failures do not make the next test skip a region."""
    stored = ddb.scan(
        TableName=tenants_table,
        FilterExpression="begins_with(pk, :b)",
        ExpressionAttributeValues={":b": {"S": tenant_items.breaker_key("")["pk"]}},
    ).get("Items", [])
    keys = [tenant_items.breaker_name(item["pk"]["S"]) for item in stored]
    breakers = getattr(getattr(getattr(app, "state", None), "chain", None), "breakers", None)
    if breakers is not None:
        now = time.time()
        breakers.merge({key: BreakerState(CLOSED, 0.0, now, 0) for key in {*keys, *breakers.keys()}})
    for item in stored:
        ddb.delete_item(TableName=tenants_table, Key={"pk": item["pk"], "sk": item["sk"]})


def http_json(method: str, url: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)
