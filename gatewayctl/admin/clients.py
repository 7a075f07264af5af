"""Machine callers: a Cognito app client (client credentials, the invoke scope) and its principal."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gatewayctl.admin import validation
from gatewayctl.admin.dynamo import Tables
from gatewayctl.admin.principals import new_principal_item, principal_view, put_new_principal
from gatewayctl.admin.roles import check_roles
from gatewayctl.target import Target


def create_client(
    target: Target,
    tenant_id: str,
    name: str,
    roles: Iterable[str],
    *,
    limits: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Create the app client and register it as a principal. The secret is returned once, stored nowhere."""
    validation.check_id(name, "client name")
    tables = Tables(target)
    roles = check_roles(tables, tenant_id, roles)
    parsed_limits = validation.limits(limits) if limits is not None else None
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
    item = new_principal_item(
        tenant_id, client_id, roles, kind="client", consent=False, limits=parsed_limits, display_name=name
    )
    try:
        put_new_principal(tables, item)
    except Exception:
        # No orphan app client: a client without a principal could authenticate but never call.
        cognito.delete_user_pool_client(UserPoolId=pool_id, ClientId=client_id)
        raise
    return {
        **principal_view(item),
        "client_id": client_id,
        "client_secret": created.get("ClientSecret"),
        "scope": scope,
    }
