"""Who may do what: the permission model, tenant configs and the policy decision (steps 1-2).

Pure logic, no I/O: the tenancy adapter loads the items and hands them here, so every rule can be
unit-tested with plain values. docs/tenancy.md describes the model for operators.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.domain.catalog import RESIDENCIES, TIERS, Catalog, CatalogEntry
from gateway.domain.errors import (
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    PolicyLimitError,
    UnavailableInResidencyError,
)
from gateway.models.exchange import MessagesRequest, PolicyDecision
from gateway.models.tenancy import ACTIVE, Limits, PrincipalRecord, TenantConfig

# Every permission a role can carry. read: the GET routes (models, usage); write: POST /v1/messages and
# count_tokens (which is judged as the request it counts); one per model tier; tools, vision (image and
# document blocks) and high_tokens (max_tokens > 4096).
PERMISSIONS = ("read", "write", *TIERS, "tools", "vision", "high_tokens")
DEFAULT_MAX_TOKENS_CAP = 4096

# The built-in roles (docs/tenancy.md). A tenant overrides one by defining a role of the same name.
DEFAULT_ROLES: Mapping[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "basic_user": frozenset({"read", "write", "haiku", "sonnet"}),
    "power_user": frozenset({"read", "write", "haiku", "sonnet", "opus", "tools", "vision", "high_tokens"}),
    "admin": frozenset(PERMISSIONS),
}

def validate_permissions(permissions: Iterable[str]) -> frozenset[str]:
    perms = frozenset(permissions)
    unknown = sorted(perms - set(PERMISSIONS))
    if unknown:
        raise ValueError(f"unknown permissions {unknown}; known: {list(PERMISSIONS)}")
    return perms


def role_table(tenant_roles: Mapping[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """The roles a tenant's principals can hold: the built-ins, then the tenant's own on top."""
    return {**DEFAULT_ROLES, **tenant_roles}


def permissions_of(roles: Iterable[str], tenant_roles: Mapping[str, frozenset[str]]) -> frozenset[str]:
    """The union of the roles' permissions; a role the tenant no longer defines grants nothing."""
    table = role_table(tenant_roles)
    granted: set[str] = set()
    for role in roles:
        granted |= table.get(role, frozenset())
    return frozenset(granted)


def principal_limits(tenant: TenantConfig, principal: PrincipalRecord) -> Limits:
    return principal.limits if principal.limits is not None else tenant.principal_limits


def check_active(tenant: TenantConfig | None, principal: PrincipalRecord | None) -> None:
    """Unknown or suspended principals and tenants are refused with the same 403 (no enumeration)."""
    if principal is None or tenant is None:
        raise PermissionDeniedError("this principal is not registered with the gateway")
    if principal.status != ACTIVE:
        raise PermissionDeniedError("this principal is suspended")
    if tenant.status != ACTIVE:
        raise PermissionDeniedError("this tenant is suspended")
    if not principal.pseudonym_secret:
        # Erased (GDPR): the principal can no longer be audited under a pseudonym, so it cannot call.
        raise PermissionDeniedError("this principal is not registered with the gateway")


def require(permissions: frozenset[str], permission: str, what: str) -> None:
    if permission not in permissions:
        raise PermissionDeniedError(f"your roles do not allow {what} (permission {permission!r})")


def available_in(
    entry: CatalogEntry,
    residency: str,
    bedrock_residencies: Iterable[str] | None = None,
    vertex_residencies: Iterable[str] = (),
) -> bool:
    """Some upstream serves the model in the residency: a Bedrock profile in a configured residency
    (None: any), or a Vertex region configured for it."""
    on_bedrock = residency in entry.bedrock_profiles and (
        bedrock_residencies is None or residency in set(bedrock_residencies)
    )
    return on_bedrock or residency in set(vertex_residencies)


def allowed_models(
    tenant: TenantConfig,
    permissions: frozenset[str],
    catalog: Catalog,
    *,
    bedrock_residencies: Iterable[str] | None = None,
    vertex_residencies: Iterable[str] = (),
) -> list[CatalogEntry]:
    """The catalog entries a principal may call: tier permitted, allow-listed, served in the residency."""
    bedrock_residencies = None if bedrock_residencies is None else tuple(bedrock_residencies)
    vertex_residencies = tuple(vertex_residencies)
    return [
        entry
        for entry in catalog.entries
        if "write" in permissions
        and entry.tier in permissions
        and entry.lifecycle.status != "retired"
        and (not tenant.allowed_models or entry.alias in tenant.allowed_models)
        and available_in(entry, tenant.residency, bedrock_residencies, vertex_residencies)
    ]


def decide(
    tenant: TenantConfig,
    principal: PrincipalRecord,
    request: MessagesRequest,
    catalog: Catalog,
    *,
    bedrock_residencies: Iterable[str] | None = None,
    vertex_residencies: Iterable[str] = (),
    entry: CatalogEntry | None = None,
) -> PolicyDecision:
    """Step 2: allow the request (returning the body to forward) or raise the refusal. `entry`: the
    request's catalog entry when the caller already looked it up."""
    check_active(tenant, principal)
    permissions = permissions_of(principal.roles, tenant.roles)
    require(permissions, "write", "creating messages")
    entry = entry or catalog.resolve(request.model)
    if entry is None:
        raise NotFoundError(f"model: {request.model}")
    require(permissions, entry.tier, f"{entry.tier} models")
    if tenant.allowed_models and entry.alias not in tenant.allowed_models:
        raise PermissionDeniedError(f"model {entry.alias} is not enabled for your organization")
    if not available_in(entry, tenant.residency, bedrock_residencies, vertex_residencies):
        raise UnavailableInResidencyError(
            f"model {entry.alias} is not available in data residency {tenant.residency!r}"
        )
    if request.uses_tools:
        require(permissions, "tools", "tool use")
    if request.has_images:
        require(permissions, "vision", "image input")
    if request.max_tokens > DEFAULT_MAX_TOKENS_CAP and "high_tokens" not in permissions:
        raise PermissionDeniedError(
            f"max_tokens {request.max_tokens} is above {DEFAULT_MAX_TOKENS_CAP}, "
            "which your roles allow (permission 'high_tokens' lifts the cap)"
        )
    for limits, scope in ((tenant.limits, "your organization"), (principal_limits(tenant, principal), "you")):
        cap = limits.max_tokens_per_request
        if cap is not None and request.max_tokens > cap:
            raise PolicyLimitError(
                f"max_tokens: {request.max_tokens} is above the limit set for {scope} ({cap})"
            )
    if tenant.consent_required and not principal.consent_given_at:
        raise PermissionDeniedError(
            "your organization requires consent to its data-processing terms before you use the gateway; "
            "ask an operator to record it (gatewayctl principal consent)"
        )
    body = with_notice(request.body, tenant.notice) if tenant.notice else request.body
    return PolicyDecision(entry=entry, residency=tenant.residency, body=body)


def with_notice(body: dict[str, Any], notice: str) -> dict[str, Any]:
    """The body with the tenant's notice appended to the system prompt: the one change the gateway makes.

    `system` may be absent, a string, or a list of content blocks; the original body is not mutated.
    A new text block goes last, after any cache_control breakpoint, so cached prefixes still hit.
    """
    out = dict(body)
    system = body.get("system")
    if system is None or system == "" or system == []:
        out["system"] = notice
    elif isinstance(system, str):
        out["system"] = f"{system}\n\n{notice}"
    elif isinstance(system, list):
        out["system"] = [*copy.deepcopy(system), {"type": "text", "text": notice}]
    else:
        raise InvalidRequestError("system: must be a string or a list of content blocks")
    return out


def validate_residency(residency: str) -> str:
    if residency not in RESIDENCIES:
        raise ValueError(f"unknown residency {residency!r}; known: {list(RESIDENCIES)}")
    return residency
