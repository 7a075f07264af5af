"""Tenants: config (name, status, residency, model allow-list, limits, consent, notice)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gateway.models import tenancy as tenancy_model
from gateway.models import tenant_items

from gatewayctl.admin import validation
from gatewayctl.admin.dynamo import Tables, to_item
from gatewayctl.admin.principals import list_principals
from gatewayctl.admin.roles import role_table
from gatewayctl.output import CommandError
from gatewayctl.target import Target


def create_tenant(
    target: Target,
    tenant_id: str,
    *,
    name: str | None = None,
    residency: str = "us",
    allowed_models: Iterable[str] = (),
    limits: Mapping[str, Any] | None = None,
    principal_limits: Mapping[str, Any] | None = None,
    consent_required: bool = False,
    notice: str | None = None,
    client_details: str = "pseudonymize",
) -> dict[str, Any]:
    validation.check_id(tenant_id, "tenant id")
    item = {
        **tenant_items.tenant_key(tenant_id),
        "tenant_id": tenant_id,
        "name": name or tenant_id,
        "status": tenancy_model.ACTIVE,
        "residency": validation.residency(residency),
        "allowed_models": validation.models(allowed_models),
        "limits": validation.limits(limits).to_mapping(),
        "principal_limits": validation.limits(principal_limits).to_mapping(),
        "consent_required": bool(consent_required),
        "client_details": _client_details(client_details),
        "created_at": validation.now_iso(),
    }
    if notice:
        item["notice"] = notice
    tables = Tables(target)
    try:
        tables.client.put_item(
            TableName=tables.tenants, Item=to_item(item), ConditionExpression="attribute_not_exists(pk)"
        )
    except tables.client.exceptions.ConditionalCheckFailedException:
        raise CommandError(f"tenant {tenant_id!r} already exists") from None
    return tenant_view(item)


def update_tenant(
    target: Target,
    tenant_id: str,
    *,
    name: str | None = None,
    residency: str | None = None,
    allowed_models: Iterable[str] | None = None,
    limits: Mapping[str, Any] | None = None,
    principal_limits: Mapping[str, Any] | None = None,
    consent_required: bool | None = None,
    notice: str | None = None,
    client_details: str | None = None,
) -> dict[str, Any]:
    """Change the given fields. `limits` and `principal_limits` merge; a limit set to None is removed.
    `notice=""` removes the notice."""
    tables = Tables(target)
    item = tables.require_tenant(tenant_id)
    if name is not None:
        item["name"] = name
    if residency is not None:
        item["residency"] = validation.residency(residency)
    if allowed_models is not None:
        item["allowed_models"] = validation.models(allowed_models)
    for key, change in (("limits", limits), ("principal_limits", principal_limits)):
        if change is not None:
            merged = {**item.get(key, {}), **change}
            item[key] = validation.limits({k: v for k, v in merged.items() if v is not None}).to_mapping()
    if consent_required is not None:
        item["consent_required"] = bool(consent_required)
    if client_details is not None:
        item["client_details"] = _client_details(client_details)
    if notice is not None:
        if notice:
            item["notice"] = notice
        else:
            item.pop("notice", None)
    item["updated_at"] = validation.now_iso()
    tables.put_existing(item)
    return tenant_view(item)


def suspend_tenant(target: Target, tenant_id: str, *, suspended: bool = True) -> dict[str, Any]:
    tables = Tables(target)
    item = tables.require_tenant(tenant_id)
    item["status"] = tenancy_model.SUSPENDED if suspended else tenancy_model.ACTIVE
    item["updated_at"] = validation.now_iso()
    tables.put_existing(item)
    return tenant_view(item)


def get_tenant(target: Target, tenant_id: str) -> dict[str, Any]:
    """A tenant's config, every role it knows with its permissions, and its principals."""
    items = Tables(target).tenant_partition(tenant_id)
    config = next((i for i in items if tenant_items.is_config(i)), None)
    if config is None:
        raise CommandError(f"unknown tenant {tenant_id!r}")
    view = tenant_view(config)
    roles = role_table(config, [i for i in items if tenant_items.is_role(i)])
    view["roles"] = {name: sorted(perms) for name, perms in roles.items()}
    view["principals"] = list_principals(target, tenant_id)
    return view


def list_tenants(target: Target) -> list[dict[str, Any]]:
    tables = Tables(target)
    items = tables.scan(
        TableName=tables.tenants,
        FilterExpression="sk = :c",
        ExpressionAttributeValues={":c": {"S": tenant_items.CONFIG_SK}},
    )
    return sorted((tenant_view(i) for i in items), key=lambda t: t["tenant_id"])


def tenant_view(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "tenant_id": item["tenant_id"],
        "name": item.get("name"),
        "status": item.get("status", tenancy_model.ACTIVE),
        "residency": item.get("residency"),
        "allowed_models": list(item.get("allowed_models") or []),
        "limits": dict(item.get("limits") or {}),
        "principal_limits": dict(item.get("principal_limits") or {}),
        "consent_required": bool(item.get("consent_required", False)),
        "notice": item.get("notice"),
        "client_details": item.get("client_details", "pseudonymize"),
    }


def _client_details(value: str) -> str:
    if value not in tenancy_model.CLIENT_DETAILS:
        raise CommandError(f"client details must be one of {list(tenancy_model.CLIENT_DETAILS)}, not {value!r}")
    return value
