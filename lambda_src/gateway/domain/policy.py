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
    entry = entry or catalog.lookup(request.model)
    if entry is None:
        raise NotFoundError(f"model: {request.model}")
    require(permissions, entry.tier, f"{entry.tier} models")
    if tenant.allowed_models and entry.alias not in tenant.allowed_models:
        raise PermissionDeniedError(f"model {entry.alias} is not enabled for your organization")
    if not available_in(entry, tenant.residency, bedrock_residencies, vertex_residencies):
        raise UnavailableInResidencyError(
            f"model {entry.alias} is not available in data residency {tenant.residency!r}"
        )
    check_carriers(request, permissions)
    max_tokens, body, clamped = clamp(request, permissions, tenant, principal)
    if tenant.consent_required and not principal.consent_given_at:
        raise PermissionDeniedError(
            "your organization requires consent to its data-processing terms before you use the gateway; "
            "ask an operator to record it (gatewayctl principal consent)"
        )
    if tenant.notice:
        body = with_notice(body, tenant.notice)
    return PolicyDecision(
        entry=entry, residency=tenant.residency, body=body, max_tokens=max_tokens, clamped=tuple(clamped)
    )


# Every request field and content block type that can carry a capability, with the permission it needs
# (docs/tenancy.md has the same table). A role that lacks a capability is refused any field or block type
# this table does not know (403 naming it): it might be a new way to carry one.
CARRIER_FIELDS: Mapping[str, str] = {
    "tools": "tools",
    "tool_choice": "tools",
    "mcp_servers": "tools",
    "container": "tools",  # code-execution containers, and the skills they load
    "skills": "tools",
}
CARRIER_BLOCKS: Mapping[str, str] = {
    "tool_use": "tools",
    "tool_result": "tools",
    "server_tool_use": "tools",
    "web_search_tool_result": "tools",
    "web_fetch_tool_result": "tools",
    "code_execution_tool_result": "tools",
    "bash_code_execution_tool_result": "tools",
    "text_editor_code_execution_tool_result": "tools",
    "tool_search_tool_result": "tools",
    "tool_reference": "tools",
    "mcp_tool_use": "tools",
    "mcp_tool_result": "tools",
    "container_upload": "tools",
    "image": "vision",
    "document": "vision",
}
# Fields and block types known to carry no capability.
PLAIN_FIELDS = frozenset(
    {
        "metadata", "temperature", "top_p", "top_k", "stop_sequences", "thinking", "service_tier",
        "context_management", "output_config", "output_format", "inference_geo", "anthropic_version",
        "anthropic_beta",
    }
)  # fmt: skip
PLAIN_BLOCKS = frozenset({"text", "thinking", "redacted_thinking", "search_result"})
CAPABILITIES = ("tools", "vision")


def check_carriers(request: MessagesRequest, permissions: frozenset[str]) -> None:
    """Every capability the request carries must be granted; what the table does not know is refused
    to a role that lacks any capability."""
    if request.uses_tools:
        require(permissions, "tools", "tool use")
    if request.has_images:
        require(permissions, "vision", "image and document input")
    restricted = not set(CAPABILITIES) <= permissions
    for name in request.fields:
        needed = CARRIER_FIELDS.get(name)
        if needed is not None:
            require(permissions, needed, f"the field {name!r}")
        elif restricted and name not in PLAIN_FIELDS:
            raise PermissionDeniedError(
                f"the field {name!r} is not one the gateway can judge for your roles, which lack "
                f"{_missing(permissions)}; it was not sent"
            )
    for kind, where in request.blocks:
        needed = CARRIER_BLOCKS.get(kind)
        if needed is not None:
            require(permissions, needed, f"{kind!r} content blocks ({where})")
        elif restricted and kind not in PLAIN_BLOCKS:
            raise PermissionDeniedError(
                f"the content block type {kind!r} ({where}) is not one the gateway can judge for your roles, "
                f"which lack {_missing(permissions)}; it was not sent"
            )


def _missing(permissions: frozenset[str]) -> str:
    return " and ".join(repr(c) for c in CAPABILITIES if c not in permissions)


# Without high_tokens, max_tokens is at most this; a thinking budget lowered to fit keeps at least
# the API's smallest budget, or thinking is turned off.
MIN_THINKING_BUDGET = 1024


def clamp(
    request: MessagesRequest, permissions: frozenset[str], tenant: TenantConfig, principal: PrincipalRecord
) -> tuple[int, dict[str, Any], list[str]]:
    """max_tokens clamped (not refused) to the role's cap and the tenant's and principal's
    max_tokens_per_request; a thinking budget above the new value lowered to fit. Returns the effective
    max_tokens, the body to forward and what was clamped."""
    requested = effective = request.max_tokens
    caps = [] if "high_tokens" in permissions else [DEFAULT_MAX_TOKENS_CAP]
    caps += [
        cap
        for cap in (tenant.limits.max_tokens_per_request, principal_limits(tenant, principal).max_tokens_per_request)
        if cap is not None
    ]
    for cap in caps:
        effective = min(effective, cap) if effective else effective
    if effective == requested:
        return effective, request.body, []
    body = dict(request.body)
    body["max_tokens"] = effective
    clamped = [f"max_tokens={requested}->{effective}"]
    thinking = body.get("thinking")
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    if isinstance(budget, int) and not isinstance(budget, bool) and budget >= effective:
        lowered = effective // 2
        if lowered >= MIN_THINKING_BUDGET:
            body["thinking"] = {**thinking, "budget_tokens": lowered}
            clamped.append(f"thinking.budget_tokens={budget}->{lowered}")
        else:
            body["thinking"] = {"type": "disabled"}
            clamped.append(f"thinking={thinking.get('type')}->disabled")
    return effective, body, clamped


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
