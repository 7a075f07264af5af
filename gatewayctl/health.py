"""Upstream health: probe every configured upstream (each Bedrock region, each Vertex region) with
the cheapest model and max_tokens 1; report healthy or not, latency, and the shared breaker state.

The probes go through the gateway's own adapters, so what is checked is what the gateway calls.
The upstream configuration is the gateway's: for the cloud, the deployed function's environment
(Settings.from_env of it); for the local stack, stack.json. A probe costs one request of one
output token per upstream.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from gatewayctl.output import CommandError

COLUMNS = ("provider", "region", "residencies", "model_id", "healthy", "latency_ms", "breaker", "error")
PROBE_BODY = {"max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]}


def check(target: Any, *, timeout: float = 20.0, model: str | None = None) -> list[dict[str, Any]]:
    settings = gateway_settings(target)
    store = breaker_store(target, settings)
    return asyncio.run(probe_all(settings, store, timeout=timeout, model=model))


def gateway_settings(target: Any) -> Any:
    """The gateway's Settings as the deployed function (or the local stack) has them."""
    from gateway.settings import Settings, SettingsError

    if target.kind == "local":
        for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
            os.environ.setdefault(name, value)  # the emulators check the SigV4 shape, not the keys
        # Vertex's credentials (Workload Identity Federation, google.auth.aws) sign with the region
        # from the environment, as the gateway's process has it; without one they fail.
        os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"] = target.region
        return _local_settings(target)
    function = target.output("GatewayFunctionName")
    try:
        config = target.client("lambda").get_function_configuration(FunctionName=function)
    except Exception as exc:
        raise CommandError(f"cannot read the gateway function {function}: {exc}") from exc
    try:
        return Settings.from_env(config.get("Environment", {}).get("Variables", {}))
    except SettingsError as exc:
        raise CommandError(f"the gateway function's environment is invalid: {exc}") from exc


def _local_settings(target: Any) -> Any:
    from gateway.settings import Settings, SettingsError

    variables = target.local.get("gateway_env")
    if not variables:
        raise CommandError("the local stack's state has no gateway settings: restart it (local down, local up)")
    try:
        return Settings.from_env(variables)
    except SettingsError as exc:
        raise CommandError(f"the local stack's gateway settings are invalid: {exc}") from exc


def breaker_store(target: Any, settings: Any) -> Any:
    from gateway.adapters.breaker_store import DynamoBreakerStore

    return DynamoBreakerStore(settings, client=target.client("dynamodb"))


def cheapest(catalog: Any, model: str | None, chains: Any = None) -> Any:
    """The probe model: the one given, else the active model that the most configured upstreams can
    serve, the cheapest among those."""
    if model:
        entry = catalog.lookup(model)
        if entry is None:
            raise CommandError(f"unknown model {model!r}")
        return entry

    def served(entry: Any) -> int:
        return sum(1 for residency, chain in (chains or {}).items() for up in chain if up.model_id(entry, residency))

    active = [e for e in catalog.entries if e.lifecycle.status == "active"] or catalog.entries
    return min(active, key=lambda e: (-served(e), e.prices.input + e.prices.output, e.alias))


async def probe_all(
    settings: Any, store: Any, *, timeout: float, model: str | None = None
) -> list[dict[str, Any]]:
    from gateway.app import build_upstreams
    from gateway.domain.breaker import Breakers, breaker_key
    from gateway.domain.catalog import load_catalog

    chains = build_upstreams(settings)
    entry = cheapest(load_catalog(None, settings.catalog_overrides), model, chains)  # the environment's catalog
    # One probe per provider+region, with the model id of the first residency it serves.
    targets: dict[str, dict[str, Any]] = {}
    for residency, chain in chains.items():
        for upstream in chain:
            row = targets.setdefault(
                f"{upstream.provider}#{upstream.region}#{upstream.wire}",
                {"upstream": upstream, "residencies": [], "model_id": None},
            )
            row["residencies"].append(residency)
            row["model_id"] = row["model_id"] or upstream.model_id(entry, residency)
    # A region has an upstream per Bedrock API: probe the one that serves the probe model.
    served = {(t["upstream"].provider, t["upstream"].region) for t in targets.values() if t["model_id"]}
    targets = {
        breaker_key(t["upstream"].provider, t["upstream"].region, t["model_id"]): t
        for t in targets.values()
        if t["model_id"] or (t["upstream"].provider, t["upstream"].region) not in served
    }
    breakers = Breakers(failure_threshold=settings.breaker_failure_threshold, open_seconds=1)
    try:
        breakers.merge(await store.load(list(targets)))
        breaker_error = None
    except Exception as exc:  # the probes still tell the operator what they need
        breaker_error = f"breaker state unreadable: {exc}"
    results = await asyncio.gather(*(_probe(t["upstream"], t["model_id"], timeout) for t in targets.values()))
    rows = []
    for (key, t), (healthy, latency_ms, error) in zip(targets.items(), results, strict=True):
        rows.append(
            {
                "provider": t["upstream"].provider,
                "region": t["upstream"].region,
                "residencies": t["residencies"],
                "model_id": t["model_id"],
                "healthy": healthy,
                "latency_ms": latency_ms,
                "breaker": "unknown" if breaker_error else breakers.status(key),
                "error": error or breaker_error,
            }
        )
    return rows


async def _probe(upstream: Any, model_id: str | None, timeout: float) -> tuple[bool, float | None, str | None]:
    from gateway.domain.failover import UpstreamFailure

    if model_id is None:
        return False, None, "the probe model is not offered in this upstream's residencies"
    started = time.perf_counter()
    try:
        await upstream.invoke(model_id, dict(PROBE_BODY), beta=(), timeout=timeout)
    except UpstreamFailure as failure:
        latency = round((time.perf_counter() - started) * 1000, 1)
        return False, latency, f"{failure.code} ({failure.status}): {failure.message}"
    finally:
        close = getattr(upstream, "aclose", None)
        if close is not None:
            await close()
    return True, round((time.perf_counter() - started) * 1000, 1), None
