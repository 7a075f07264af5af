"""Usage: what a tenant (or one of its principals) has used and has left in the current windows."""

from __future__ import annotations

import time
from typing import Any

from gateway.domain import policy, quota
from gateway.models import tenant_items, usage_items

from gatewayctl.admin.dynamo import Tables, from_item, to_item
from gatewayctl.output import CommandError
from gatewayctl.target import Target


def usage(
    target: Target, tenant_id: str, *, principal_id: str | None = None, now: float | None = None
) -> dict[str, Any]:
    tables = Tables(target)
    tenant = tenant_items.tenant_from_item(tables.require_tenant(tenant_id))
    now = time.time() if now is None else now
    if principal_id is None:
        pk, limits = usage_items.tenant_pk(tenant_id), tenant.limits
    else:
        record = tenant_items.principal_from_item(tables.require_principal(principal_id))
        if record.tenant_id != tenant_id:
            raise CommandError(f"principal {principal_id!r} is not in tenant {tenant_id!r}")
        pk, limits = usage_items.principal_pk(tenant_id, principal_id), policy.principal_limits(tenant, record)
    # A hot tenant's pools hold, negative, the budget they took from its window items (docs/tenancy.md,
    # Hot tenants): its usage is the window item plus its pools' items, as GET /v1/usage counts it.
    pks = [pk] + ([usage_items.pool_pk(pk, n) for n in range(usage_items.POOLS)] if principal_id is None else [])
    windows = [quota.window_at(w, now).sk for w in quota.WINDOWS]
    keys = [to_item({"pk": p, "sk": sk}) for p in pks for sk in windows]  # 51 at most: one batch
    got = tables.client.batch_get_item(RequestItems={tables.usage: {"Keys": keys, "ConsistentRead": True}})[
        "Responses"
    ].get(tables.usage, [])
    items: dict[str, dict[str, int]] = {}
    for item in map(from_item, got):
        summed = items.setdefault(item["sk"], {})
        for counter, value in usage_items.counters(item).items():
            summed[counter] = summed.get(counter, 0) + value
    out: dict[str, Any] = {"tenant_id": tenant_id, "windows": quota.usage_windows(limits, now, items)}
    if principal_id is not None:
        out["principal_id"] = principal_id
    return out
