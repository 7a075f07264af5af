"""What a caller may use: the signed-in caller (GET /v1/models with the token `gatewayctl token` gives), or
a tenant's role computed with the runtime's own policy (gateway.domain.policy.allowed_models) over the
environment's catalog and residencies. Each model with its lifecycle and the Bedrock API that serves it."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

from gatewayctl.output import CommandError

COLUMNS = ("model", "id", "tier", "lifecycle", "end_of_life", "replacement", "bedrock_api", "providers")


def model_row(entry: Any, *, providers: list[str] | None = None) -> dict[str, Any]:
    lifecycle = entry.lifecycle
    return {
        "model": entry.alias,
        "id": entry.anthropic_id,
        "tier": entry.tier,
        "lifecycle": lifecycle.status,
        "end_of_life": lifecycle.end_of_life,
        "replacement": lifecycle.replacement,
        "bedrock_api": entry.bedrock_api if entry.bedrock_model_id else None,
        "providers": providers,
    }


def providers_for(entry: Any, residency: str, settings: Any) -> list[str]:
    """Which of the environment's upstreams serve the model in a residency, in failover order."""
    out = []
    if residency in entry.bedrock_profiles and residency in settings.bedrock_regions:
        out += [f"bedrock:{region}" for region in settings.bedrock_regions[residency]]
    if entry.vertex_model_id and residency in settings.vertex_regions:
        out.append(f"vertex:{settings.vertex_regions[residency]}")
    return out


def for_role(target: Any, tenant_id: str, roles: Iterable[str]) -> list[dict[str, Any]]:
    """The models a principal of the tenant holding these roles may call, as the gateway decides it."""
    from gateway.domain import policy
    from gateway.models import tenant_items
    from gateway.models.tenancy import ACTIVE

    from gatewayctl import modelcatalog
    from gatewayctl.admin.dynamo import Tables
    from gatewayctl.admin.roles import check_roles

    tables = Tables(target)
    roles = check_roles(tables, tenant_id, roles)  # unknown tenant or role: a CommandError naming it
    tenant = tenant_items.tenant_from_items(tables.tenant_partition(tenant_id))
    assert tenant is not None  # check_roles found its config
    settings, catalog = modelcatalog.environment(target)
    if tenant.status != ACTIVE:
        print(f"gatewayctl: tenant {tenant_id!r} is {tenant.status}: its principals can use no model", file=sys.stderr)
        return []
    entries = policy.allowed_models(
        tenant,
        policy.permissions_of(roles, tenant.roles),
        catalog,
        bedrock_residencies=settings.bedrock_regions.keys(),
        vertex_residencies=settings.vertex_regions.keys(),
    )
    return [model_row(e, providers=providers_for(e, tenant.residency, settings)) for e in entries]


def for_caller(args: Any) -> list[dict[str, Any]]:
    """GET /v1/models as the signed-in caller, each model completed from the environment's catalog."""
    from gatewayctl import credentials, modelcatalog
    from gatewayctl import target as targets

    token, endpoint = credentials.session(args)
    listed = list_models(endpoint, token)
    try:
        _, catalog = modelcatalog.environment(targets.resolve(args))
    except CommandError as exc:
        # Signed in without AWS access: the lifecycle comes from this checkout's catalog, without the
        # environment's overrides; say so rather than fail the listing.
        from gateway.domain.catalog import load_catalog

        print(f"gatewayctl: lifecycles from the base catalog (the environment's overrides: {exc})", file=sys.stderr)
        catalog = load_catalog()
    rows = []
    for model in listed:
        entry = catalog.lookup(model["id"])
        rows.append(model_row(entry) if entry else {"model": model.get("display_name"), "id": model["id"]})
    return rows


def list_models(endpoint: str, token: str, *, timeout: float = 30.0) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        f"{endpoint.rstrip('/')}/v1/models",
        headers={"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return list(json.load(response)["data"])
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())["error"]
            detail = f"{error['type']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            detail = "no details"
        raise CommandError(f"the gateway answered GET /v1/models with HTTP {exc.code} ({detail})") from None
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        raise CommandError(f"cannot list models at {endpoint}: {exc}") from None
