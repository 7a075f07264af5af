"""The operator library for tenants, principals, roles, machine clients and usage.

Every function takes a `Target` (the deployed stacks or the local stack) and is used by the
`gatewayctl tenant|principal|role|client|usage` commands, the local stack's seeding and the test
fixtures. Each validates all of its input (and what it refers to) before it writes anything, and
raises CommandError with a clear message otherwise. Item layouts: gateway.models.tenant_items and
usage_items (docs/tenancy.md).

The gateway caches principals and tenant configs for PRINCIPAL_CACHE_TTL_SECONDS, so a change here
reaches running containers within that time.
"""

from gatewayctl.admin.clients import create_client
from gatewayctl.admin.principals import (
    add_principal,
    get_principal,
    list_principals,
    remove_principal,
    set_consent,
    set_roles,
)
from gatewayctl.admin.roles import define_role
from gatewayctl.admin.tenants import create_tenant, get_tenant, list_tenants, suspend_tenant, update_tenant
from gatewayctl.admin.usage import usage
from gatewayctl.admin.validation import check_principal_id, parse_limits

__all__ = [
    "add_principal",
    "check_principal_id",
    "create_client",
    "create_tenant",
    "define_role",
    "get_principal",
    "get_tenant",
    "list_principals",
    "list_tenants",
    "parse_limits",
    "remove_principal",
    "set_consent",
    "set_roles",
    "suspend_tenant",
    "update_tenant",
    "usage",
]
