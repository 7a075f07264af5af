"""Principals: who may call, in which tenant, with which roles, consent and own limits.

A principal's id is the Cognito `sub` of a person or the app client id of a machine caller. Each
principal item holds its pseudonym secret; operators never see it (`principal_view`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gateway.domain.pseudonym import new_secret
from gateway.models import tenancy as tenancy_model
from gateway.models import tenant_items

from gatewayctl.admin import validation
from gatewayctl.admin.dynamo import Tables, to_item
from gatewayctl.admin.roles import check_roles
from gatewayctl.output import CommandError
from gatewayctl.target import Target

KINDS = ("user", "client")


def add_principal(
    target: Target,
    tenant_id: str,
    principal_id: str,
    roles: Iterable[str],
    *,
    kind: str = "user",
    consent: bool = False,
    limits: Mapping[str, Any] | None = None,
    display_name: str | None = None,
) -> dict[str, Any]:
    """Register a Cognito user (by `sub`) or an app client (by client id) as a principal of a tenant."""
    validation.check_principal_id(principal_id)
    if kind not in KINDS:
        raise CommandError(f"unknown principal kind {kind!r}: use 'user' or 'client'")
    tables = Tables(target)
    roles = check_roles(tables, tenant_id, roles)
    parsed_limits = validation.limits(limits) if limits is not None else None
    existing = tables.get(tables.tenants, tenant_items.principal_key(principal_id))
    if existing is not None:
        raise CommandError(f"principal {principal_id!r} already exists (tenant {existing['tenant_id']!r})")
    item = new_principal_item(
        tenant_id, principal_id, roles, kind=kind, consent=consent, limits=parsed_limits, display_name=display_name
    )
    put_new_principal(tables, item)
    return principal_view(item)


def set_roles(target: Target, principal_id: str, roles: Iterable[str]) -> dict[str, Any]:
    tables = Tables(target)
    item = tables.require_principal(principal_id)
    item["roles"] = check_roles(tables, item["tenant_id"], roles)
    item["updated_at"] = validation.now_iso()
    tables.put_existing(item)
    return principal_view(item)


def set_consent(target: Target, principal_id: str, *, given: bool = True) -> dict[str, Any]:
    """Record (or withdraw) the principal's consent to the tenant's data-processing terms."""
    tables = Tables(target)
    item = tables.require_principal(principal_id)
    if given:
        item["consent_given_at"] = validation.now_iso()
    else:
        item.pop("consent_given_at", None)
    item["updated_at"] = validation.now_iso()
    tables.put_existing(item)
    return principal_view(item)


def remove_principal(target: Target, principal_id: str) -> dict[str, Any]:
    tables = Tables(target)
    item = tables.require_principal(principal_id)
    tables.client.delete_item(TableName=tables.tenants, Key=to_item(tenant_items.principal_key(principal_id)))
    return {"principal_id": principal_id, "tenant_id": item["tenant_id"], "removed": True}


def get_principal(target: Target, principal_id: str) -> dict[str, Any]:
    return principal_view(Tables(target).require_principal(principal_id))


def list_principals(target: Target, tenant_id: str) -> list[dict[str, Any]]:
    tables = Tables(target)
    items = tables.query(
        TableName=tables.tenants,
        IndexName=tenant_items.BY_TENANT_INDEX,
        KeyConditionExpression="tenant_pk = :pk",
        ExpressionAttributeValues={":pk": {"S": tenant_items.tenant_pk(tenant_id)}},
    )
    return [principal_view(i) for i in items]


def new_principal_item(
    tenant_id: str,
    principal_id: str,
    roles: list[str],
    *,
    kind: str,
    consent: bool,
    limits: tenancy_model.Limits | None,
    display_name: str | None,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        **tenant_items.principal_key(principal_id),
        **tenant_items.principal_index_keys(tenant_id, principal_id),
        "principal_id": principal_id,
        "tenant_id": tenant_id,
        "roles": roles,
        "kind": kind,
        "status": tenancy_model.ACTIVE,
        "pseudonym_secret": new_secret(),
        "created_at": validation.now_iso(),
    }
    if consent:
        item["consent_given_at"] = validation.now_iso()
    if limits is not None:
        item["limits"] = limits.to_mapping()
    if display_name:
        item["display_name"] = display_name
    return item


def put_new_principal(tables: Tables, item: dict[str, Any]) -> None:
    """Put a new principal only if its tenant still exists and the principal does not (one transaction)."""
    try:
        tables.client.transact_write_items(
            TransactItems=[
                {
                    "ConditionCheck": {
                        "TableName": tables.tenants,
                        "Key": to_item(tenant_items.tenant_key(item["tenant_id"])),
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": tables.tenants,
                        "Item": to_item(item),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    except tables.client.exceptions.TransactionCanceledException:
        raise CommandError(
            f"cannot add principal {item['principal_id']!r}: tenant {item['tenant_id']!r} is gone "
            "or the principal was added meanwhile"
        ) from None


def principal_view(item: Mapping[str, Any]) -> dict[str, Any]:
    """What operators see of a principal: never the pseudonym secret."""
    return {
        "principal_id": item["principal_id"],
        "tenant_id": item["tenant_id"],
        "kind": item.get("kind", "user"),
        "roles": list(item.get("roles") or []),
        "status": item.get("status", tenancy_model.ACTIVE),
        "consent_given_at": item.get("consent_given_at"),
        "limits": dict(item["limits"]) if item.get("limits") is not None else None,
        "display_name": item.get("display_name"),
    }
