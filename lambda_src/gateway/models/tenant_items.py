"""The tenants table's items: key layout and item <-> value conversion, for the runtime and gatewayctl alike.

| item            | pk                       | sk                 |
|-----------------|--------------------------|--------------------|
| tenant config   | TENANT#<tenant_id>       | CONFIG             |
| role override   | TENANT#<tenant_id>       | ROLE#<name>        |
| quota hot mark  | TENANT#<tenant_id>       | QUOTA#HOT          |
| principal       | PRINCIPAL#<principal_id> | PRINCIPAL          |
| breaker state   | BREAKER#<key>            | STATE              |

Principals carry the `by_tenant` index attributes: tenant_pk = TENANT#<tenant_id>,
tenant_sk = PRINCIPAL#<principal_id>. Items here are plain dicts (already deserialized from DynamoDB).
The quota hot mark (attribute `until`, epoch seconds) is the runtime's: written when its containers meet
contention on the tenant's usage items, read with the tenant's partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from gateway.models.tenancy import ACTIVE, Limits, PrincipalRecord, TenantConfig

CONFIG_SK = "CONFIG"
PRINCIPAL_SK = "PRINCIPAL"
ROLE_PREFIX = "ROLE#"
QUOTA_HOT_SK = "QUOTA#HOT"
BREAKER_SK = "STATE"
BY_TENANT_INDEX = "by_tenant"


def tenant_pk(tenant_id: str) -> str:
    return f"TENANT#{tenant_id}"


def tenant_key(tenant_id: str) -> dict[str, str]:
    return {"pk": tenant_pk(tenant_id), "sk": CONFIG_SK}


def role_key(tenant_id: str, role: str) -> dict[str, str]:
    return {"pk": tenant_pk(tenant_id), "sk": f"{ROLE_PREFIX}{role}"}


def quota_hot_key(tenant_id: str) -> dict[str, str]:
    return {"pk": tenant_pk(tenant_id), "sk": QUOTA_HOT_SK}


def principal_key(principal_id: str) -> dict[str, str]:
    return {"pk": f"PRINCIPAL#{principal_id}", "sk": PRINCIPAL_SK}


def principal_index_keys(tenant_id: str, principal_id: str) -> dict[str, str]:
    """The `by_tenant` GSI attributes of a principal item."""
    return {"tenant_pk": tenant_pk(tenant_id), "tenant_sk": f"PRINCIPAL#{principal_id}"}


def breaker_key(key: str) -> dict[str, str]:
    return {"pk": f"BREAKER#{key}", "sk": BREAKER_SK}


def breaker_name(pk: str) -> str:
    return pk.removeprefix("BREAKER#")


def is_config(item: Mapping[str, Any]) -> bool:
    return item.get("sk") == CONFIG_SK


def is_role(item: Mapping[str, Any]) -> bool:
    return str(item.get("sk", "")).startswith(ROLE_PREFIX)


def role_name(item: Mapping[str, Any]) -> str:
    return str(item["sk"]).removeprefix(ROLE_PREFIX)


def tenant_from_items(items: Iterable[Mapping[str, Any]]) -> TenantConfig | None:
    """A tenant's partition (its CONFIG item and ROLE# items) as one TenantConfig; None without CONFIG."""
    items = list(items)
    config = next((i for i in items if is_config(i)), None)
    if config is None:
        return None
    tenant = tenant_from_item(config, [i for i in items if is_role(i)])
    hot = next((i for i in items if i.get("sk") == QUOTA_HOT_SK), None)
    if hot is not None:
        tenant = replace(tenant, quota_hot_until=float(hot.get("until", 0) or 0))
    return tenant


def tenant_from_item(item: Mapping[str, Any], role_items: Iterable[Mapping[str, Any]] = ()) -> TenantConfig:
    roles = {role_name(r): frozenset(r.get("permissions") or ()) for r in role_items}
    return TenantConfig(
        tenant_id=str(item["tenant_id"]),
        name=str(item.get("name") or item["tenant_id"]),
        status=str(item.get("status", ACTIVE)),
        residency=str(item.get("residency", "us")),
        allowed_models=tuple(sorted(item.get("allowed_models") or ())),
        limits=Limits.from_mapping(item.get("limits")),
        principal_limits=Limits.from_mapping(item.get("principal_limits")),
        consent_required=bool(item.get("consent_required", False)),
        notice=item.get("notice") or None,
        client_details="drop" if item.get("client_details") == "drop" else "pseudonymize",
        roles=roles,
    )


def principal_from_item(item: Mapping[str, Any]) -> PrincipalRecord:
    limits = item.get("limits")
    return PrincipalRecord(
        id=str(item["principal_id"]),
        tenant_id=str(item["tenant_id"]),
        roles=tuple(item.get("roles") or ()),
        kind=str(item.get("kind", "user")),
        status=str(item.get("status", ACTIVE)),
        pseudonym_secret=item.get("pseudonym_secret") or None,
        consent_given_at=item.get("consent_given_at") or None,
        limits=Limits.from_mapping(limits) if limits is not None else None,
    )
