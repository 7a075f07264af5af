"""Roles: the built-in permission sets, and a tenant's own roles (or overrides of built-in ones)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gateway.domain import policy
from gateway.models import tenant_items

from gatewayctl.admin import validation
from gatewayctl.admin.dynamo import Tables, to_item
from gatewayctl.output import CommandError
from gatewayctl.target import Target


def define_role(target: Target, tenant_id: str, name: str, permissions: Iterable[str]) -> dict[str, Any]:
    """Define (or redefine) a role for one tenant; a built-in name overrides the built-in for that tenant."""
    validation.check_id(name, "role name")
    perms = validation.permissions(permissions)
    tables = Tables(target)
    tables.require_tenant(tenant_id)
    item = {
        **tenant_items.role_key(tenant_id, name),
        "tenant_id": tenant_id,
        "role": name,
        "permissions": perms,
        "updated_at": validation.now_iso(),
    }
    tables.client.put_item(TableName=tables.tenants, Item=to_item(item))
    return {"tenant_id": tenant_id, "role": name, "permissions": perms}


def role_table(config: Mapping[str, Any], role_items: Iterable[Mapping[str, Any]]) -> dict[str, frozenset[str]]:
    """Every role the tenant knows (built-in, overridden or its own) -> its permissions."""
    return policy.role_table(tenant_items.tenant_from_item(config, role_items).roles)


def check_roles(tables: Tables, tenant_id: str, roles: Iterable[str]) -> list[str]:
    """The roles, sorted, when the tenant knows each of them; CommandError otherwise."""
    if isinstance(roles, str):
        roles = [roles]
    roles = sorted(set(roles))
    if not roles:
        raise CommandError("at least one role is required")
    config = tables.require_tenant(tenant_id)
    known = role_table(config, tables.tenant_partition(tenant_id, sk_prefix=tenant_items.ROLE_PREFIX))
    unknown = [r for r in roles if r not in known]
    if unknown:
        raise CommandError(f"unknown role(s) {unknown} for tenant {tenant_id!r}; known: {sorted(known)}")
    return roles
