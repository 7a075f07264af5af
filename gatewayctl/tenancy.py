"""The operator library for tenants, principals, roles, machine clients and usage.

Every function takes a `Target` (the deployed stacks or the local stack) and is used by the
`gatewayctl tenant|principal|role|client|usage` commands and by the local stack's seeding and test
fixtures. Each one validates all of its input (and what it refers to) before it writes anything, and
raises CommandError with a clear message otherwise. Item layouts: docs/ARCHITECTURE.md, docs/tenancy.md.

The gateway caches principals and tenant configs for PRINCIPAL_CACHE_TTL_SECONDS, so a change here
reaches running containers within that time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.adapters.dynamo_tenancy import from_item, to_item
from gateway.domain import policy, quota
from gateway.domain.catalog import load_catalog
from gateway.domain.pseudonym import new_secret
from gateway.models import tenancy as tenancy_model
from gateway.models import tenant_items

from gatewayctl.output import CommandError
from gatewayctl.target import Target

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_PRINCIPAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,255}$")


# -- tenants ---------------------------------------------------------------------------------


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
) -> dict[str, Any]:
    _check_id(tenant_id, "tenant id")
    item = {
        "pk": _tenant_pk(tenant_id),
        "sk": "CONFIG",
        "tenant_id": tenant_id,
        "name": name or tenant_id,
        "status": tenancy_model.ACTIVE,
        "residency": _residency(residency),
        "allowed_models": _models(allowed_models),
        "limits": _limits(limits).to_mapping(),
        "principal_limits": _limits(principal_limits).to_mapping(),
        "consent_required": bool(consent_required),
        "created_at": _now_iso(),
    }
    if notice:
        item["notice"] = notice
    ddb = _Tables(target)
    try:
        ddb.client.put_item(
            TableName=ddb.tenants, Item=_ser(item), ConditionExpression="attribute_not_exists(pk)"
        )
    except ddb.client.exceptions.ConditionalCheckFailedException:
        raise CommandError(f"tenant {tenant_id!r} already exists") from None
    return _tenant_view(item)


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
) -> dict[str, Any]:
    """Change the given fields. `limits` and `principal_limits` merge; a limit set to None is removed.
    `notice=""` removes the notice."""
    ddb = _Tables(target)
    item = _require_tenant(ddb, tenant_id)
    if name is not None:
        item["name"] = name
    if residency is not None:
        item["residency"] = _residency(residency)
    if allowed_models is not None:
        item["allowed_models"] = _models(allowed_models)
    for key, change in (("limits", limits), ("principal_limits", principal_limits)):
        if change is not None:
            merged = {**item.get(key, {}), **change}
            item[key] = _limits({k: v for k, v in merged.items() if v is not None}).to_mapping()
    if consent_required is not None:
        item["consent_required"] = bool(consent_required)
    if notice is not None:
        if notice:
            item["notice"] = notice
        else:
            item.pop("notice", None)
    item["updated_at"] = _now_iso()
    _put_existing(ddb, item)
    return _tenant_view(item)


def suspend_tenant(target: Target, tenant_id: str, *, suspended: bool = True) -> dict[str, Any]:
    ddb = _Tables(target)
    item = _require_tenant(ddb, tenant_id)
    item["status"] = tenancy_model.SUSPENDED if suspended else tenancy_model.ACTIVE
    item["updated_at"] = _now_iso()
    _put_existing(ddb, item)
    return _tenant_view(item)


def get_tenant(target: Target, tenant_id: str) -> dict[str, Any]:
    ddb = _Tables(target)
    items = _query_all(
        ddb,
        TableName=ddb.tenants,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": _tenant_pk(tenant_id)}},
    )
    config = next((i for i in items if i["sk"] == "CONFIG"), None)
    if config is None:
        raise CommandError(f"unknown tenant {tenant_id!r}")
    view = _tenant_view(config)
    view["roles"] = {
        name: sorted(perms)
        for name, perms in policy.role_table(
            tenant_items.tenant_from_item(config, _role_items(items)).roles
        ).items()
    }
    view["principals"] = list_principals(target, tenant_id)
    return view


def list_tenants(target: Target) -> list[dict[str, Any]]:
    ddb = _Tables(target)
    items = _scan_all(
        ddb,
        TableName=ddb.tenants,
        FilterExpression="sk = :c",
        ExpressionAttributeValues={":c": {"S": "CONFIG"}},
    )
    return sorted((_tenant_view(i) for i in items), key=lambda t: t["tenant_id"])


# -- roles -----------------------------------------------------------------------------------


def define_role(target: Target, tenant_id: str, name: str, permissions: Iterable[str]) -> dict[str, Any]:
    """Define (or redefine) a role for one tenant; a built-in name overrides the built-in for that tenant."""
    _check_id(name, "role name")
    try:
        perms = policy.validate_permissions(permissions)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    ddb = _Tables(target)
    _require_tenant(ddb, tenant_id)
    item = {
        "pk": _tenant_pk(tenant_id),
        "sk": f"ROLE#{name}",
        "tenant_id": tenant_id,
        "role": name,
        "permissions": sorted(perms),
        "updated_at": _now_iso(),
    }
    ddb.client.put_item(TableName=ddb.tenants, Item=_ser(item))
    return {"tenant_id": tenant_id, "role": name, "permissions": sorted(perms)}


# -- principals ------------------------------------------------------------------------------


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
    check_principal_id(principal_id)
    if kind not in ("user", "client"):
        raise CommandError(f"unknown principal kind {kind!r}: use 'user' or 'client'")
    ddb = _Tables(target)
    roles = _check_roles(ddb, tenant_id, roles)
    parsed_limits = _limits(limits) if limits is not None else None
    existing = _get(ddb, ddb.tenants, _principal_key(principal_id))
    if existing is not None:
        raise CommandError(f"principal {principal_id!r} already exists (tenant {existing['tenant_id']!r})")
    item = _principal_item(
        tenant_id,
        principal_id,
        roles,
        kind=kind,
        consent=consent,
        limits=parsed_limits,
        display_name=display_name,
    )
    _put_principal(ddb, item)
    return _principal_view(item)


def set_roles(target: Target, principal_id: str, roles: Iterable[str]) -> dict[str, Any]:
    ddb = _Tables(target)
    item = _require_principal(ddb, principal_id)
    item["roles"] = _check_roles(ddb, item["tenant_id"], roles)
    item["updated_at"] = _now_iso()
    _put_existing(ddb, item)
    return _principal_view(item)


def set_consent(target: Target, principal_id: str, *, given: bool = True) -> dict[str, Any]:
    """Record (or withdraw) the principal's consent to the tenant's data-processing terms."""
    ddb = _Tables(target)
    item = _require_principal(ddb, principal_id)
    if given:
        item["consent_given_at"] = _now_iso()
    else:
        item.pop("consent_given_at", None)
    item["updated_at"] = _now_iso()
    _put_existing(ddb, item)
    return _principal_view(item)


def remove_principal(target: Target, principal_id: str) -> dict[str, Any]:
    ddb = _Tables(target)
    item = _require_principal(ddb, principal_id)
    ddb.client.delete_item(TableName=ddb.tenants, Key=_ser(_principal_key(principal_id)))
    return {"principal_id": principal_id, "tenant_id": item["tenant_id"], "removed": True}


def get_principal(target: Target, principal_id: str) -> dict[str, Any]:
    return _principal_view(_require_principal(_Tables(target), principal_id))


def list_principals(target: Target, tenant_id: str) -> list[dict[str, Any]]:
    ddb = _Tables(target)
    items = _query_all(
        ddb,
        TableName=ddb.tenants,
        IndexName="by_tenant",
        KeyConditionExpression="tenant_pk = :pk",
        ExpressionAttributeValues={":pk": {"S": _tenant_pk(tenant_id)}},
    )
    return [_principal_view(i) for i in items]


# -- machine clients -------------------------------------------------------------------------


def create_client(
    target: Target,
    tenant_id: str,
    name: str,
    roles: Iterable[str],
    *,
    limits: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A machine caller: a Cognito app client (client credentials, the invoke scope) and its principal.

    The client secret is returned once and stored nowhere else.
    """
    _check_id(name, "client name")
    ddb = _Tables(target)
    roles = _check_roles(ddb, tenant_id, roles)
    parsed_limits = _limits(limits) if limits is not None else None
    pool_id = target.output("UserPoolId")
    scope = target.output("InvokeScope")
    cognito = target.client("cognito-idp")
    created = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName=f"{tenant_id}-{name}",
        GenerateSecret=True,
        AllowedOAuthFlows=["client_credentials"],
        AllowedOAuthScopes=[scope],
        AllowedOAuthFlowsUserPoolClient=True,
        SupportedIdentityProviders=["COGNITO"],
    )["UserPoolClient"]
    client_id = created["ClientId"]
    item = _principal_item(
        tenant_id, client_id, roles, kind="client", consent=False, limits=parsed_limits, display_name=name
    )
    try:
        _put_principal(ddb, item)
    except Exception:
        # No orphan app client: a client without a principal could authenticate but never call.
        cognito.delete_user_pool_client(UserPoolId=pool_id, ClientId=client_id)
        raise
    return {
        **_principal_view(item),
        "client_id": client_id,
        "client_secret": created.get("ClientSecret"),
        "scope": scope,
    }


# -- usage -----------------------------------------------------------------------------------


def usage(
    target: Target, tenant_id: str, *, principal_id: str | None = None, now: float | None = None
) -> dict[str, Any]:
    """What a tenant (or one of its principals) has used and has left in the current windows."""
    ddb = _Tables(target)
    tenant = tenant_items.tenant_from_item(_require_tenant(ddb, tenant_id))
    now = time.time() if now is None else now
    if principal_id is None:
        pk, limits = quota.tenant_pk(tenant_id), tenant.limits
    else:
        record = tenant_items.principal_from_item(_require_principal(ddb, principal_id))
        if record.tenant_id != tenant_id:
            raise CommandError(f"principal {principal_id!r} is not in tenant {tenant_id!r}")
        pk, limits = quota.principal_pk(tenant_id, principal_id), policy.principal_limits(tenant, record)
    sks = [quota.window_at(w, now).sk for w in quota.WINDOWS]
    got = ddb.client.batch_get_item(
        RequestItems={ddb.usage: {"Keys": [_ser({"pk": pk, "sk": sk}) for sk in sks], "ConsistentRead": True}}
    )["Responses"].get(ddb.usage, [])
    items = {i["sk"]: i for i in (_deser(x) for x in got)}
    out: dict[str, Any] = {"tenant_id": tenant_id, "windows": quota.usage_windows(limits, now, items)}
    if principal_id is not None:
        out["principal_id"] = principal_id
    return out


# -- helpers ---------------------------------------------------------------------------------


class _Tables:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.tenants = target.output("TenantsTableName")
        self.usage = target.output("UsageTableName")
        self.client = target.client("dynamodb")


def _tenant_pk(tenant_id: str) -> str:
    return f"TENANT#{tenant_id}"


def _principal_key(principal_id: str) -> dict[str, str]:
    return {"pk": f"PRINCIPAL#{principal_id}", "sk": "PRINCIPAL"}


def _principal_item(
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
        **_principal_key(principal_id),
        "principal_id": principal_id,
        "tenant_id": tenant_id,
        "tenant_pk": _tenant_pk(tenant_id),
        "tenant_sk": f"PRINCIPAL#{principal_id}",
        "roles": roles,
        "kind": kind,
        "status": tenancy_model.ACTIVE,
        "pseudonym_secret": new_secret(),
        "created_at": _now_iso(),
    }
    if consent:
        item["consent_given_at"] = _now_iso()
    if limits is not None:
        item["limits"] = limits.to_mapping()
    if display_name:
        item["display_name"] = display_name
    return item


def _put_principal(ddb: _Tables, item: dict[str, Any]) -> None:
    """Put a new principal only if its tenant still exists and the principal does not (one transaction)."""
    try:
        ddb.client.transact_write_items(
            TransactItems=[
                {
                    "ConditionCheck": {
                        "TableName": ddb.tenants,
                        "Key": _ser({"pk": item["tenant_pk"], "sk": "CONFIG"}),
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": ddb.tenants,
                        "Item": _ser(item),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    except ddb.client.exceptions.TransactionCanceledException:
        raise CommandError(
            f"cannot add principal {item['principal_id']!r}: tenant {item['tenant_id']!r} is gone "
            "or the principal was added meanwhile"
        ) from None


def _put_existing(ddb: _Tables, item: dict[str, Any]) -> None:
    try:
        ddb.client.put_item(
            TableName=ddb.tenants, Item=_ser(item), ConditionExpression="attribute_exists(pk)"
        )
    except ddb.client.exceptions.ConditionalCheckFailedException:
        raise CommandError(f"{item['pk']} was removed meanwhile; nothing written") from None


def _require_tenant(ddb: _Tables, tenant_id: str) -> dict[str, Any]:
    if not isinstance(tenant_id, str) or not tenant_id:
        raise CommandError("a tenant id is required")
    item = _get(ddb, ddb.tenants, {"pk": _tenant_pk(tenant_id), "sk": "CONFIG"})
    if item is None:
        raise CommandError(f"unknown tenant {tenant_id!r}")
    return item


def _require_principal(ddb: _Tables, principal_id: str) -> dict[str, Any]:
    item = _get(ddb, ddb.tenants, _principal_key(principal_id))
    if item is None:
        raise CommandError(f"unknown principal {principal_id!r}")
    return item


def _check_roles(ddb: _Tables, tenant_id: str, roles: Iterable[str]) -> list[str]:
    if isinstance(roles, str):
        roles = [roles]
    roles = sorted(set(roles))
    if not roles:
        raise CommandError("at least one role is required")
    tenant = _require_tenant(ddb, tenant_id)
    items = _query_all(
        ddb,
        TableName=ddb.tenants,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
        ExpressionAttributeValues={":pk": {"S": _tenant_pk(tenant_id)}, ":r": {"S": "ROLE#"}},
    )
    known = policy.role_table(tenant_items.tenant_from_item(tenant, items).roles)
    unknown = [r for r in roles if r not in known]
    if unknown:
        raise CommandError(f"unknown role(s) {unknown} for tenant {tenant_id!r}; known: {sorted(known)}")
    return roles


def _role_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in items if str(i["sk"]).startswith("ROLE#")]


def _limits(raw: Mapping[str, Any] | None) -> tenancy_model.Limits:
    try:
        return tenancy_model.Limits.from_mapping(raw)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _residency(residency: str) -> str:
    try:
        return policy.validate_residency(residency)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _models(models: Iterable[str]) -> list[str]:
    """Normalise any model id to its catalog alias; refuse ids the catalog does not know."""
    if isinstance(models, str):
        models = [models]
    catalog = load_catalog()
    aliases = []
    for model in models:
        entry = catalog.resolve(model)
        if entry is None:
            raise CommandError(f"unknown model {model!r}; known: {[e.alias for e in catalog.entries]}")
        aliases.append(entry.alias)
    return sorted(set(aliases))


def _check_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not _ID.match(value):
        raise CommandError(f"invalid {what} {value!r}: use letters, digits, '.', '_' or '-' (up to 128)")


def check_principal_id(value: str) -> None:
    if not isinstance(value, str) or not _PRINCIPAL_ID.match(value):
        raise CommandError(f"invalid principal id {value!r}")


def _tenant_view(item: Mapping[str, Any]) -> dict[str, Any]:
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
    }


def _principal_view(item: Mapping[str, Any]) -> dict[str, Any]:
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


def _get(ddb: _Tables, table: str, key: Mapping[str, str]) -> dict[str, Any] | None:
    got = ddb.client.get_item(TableName=table, Key=_ser(key), ConsistentRead=True)
    return _deser(got["Item"]) if "Item" in got else None


def _query_all(ddb: _Tables, **kwargs: Any) -> list[dict[str, Any]]:
    return _paged(ddb.client.query, kwargs)


def _scan_all(ddb: _Tables, **kwargs: Any) -> list[dict[str, Any]]:
    return _paged(ddb.client.scan, kwargs)


def _paged(call: Any, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = call(**kwargs)
        items += [_deser(i) for i in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs = {**kwargs, "ExclusiveStartKey": page["LastEvaluatedKey"]}


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ser(item: Mapping[str, Any]) -> dict[str, Any]:
    return to_item(item)


def _deser(item: Mapping[str, Any]) -> dict[str, Any]:
    return from_item(item)


def parse_limits(pairs: Iterable[str] | None) -> dict[str, Any] | None:
    """`name=value` pairs from the command line; `name=none` removes a limit (update)."""
    if not pairs:
        return None
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or not value:
            raise CommandError(f"limit {pair!r}: expected NAME=VALUE, e.g. requests_per_minute=60")
        out[name.strip()] = None if value.strip().lower() == "none" else value.strip()
    return out
