"""Resource definitions shared by the CDK stacks and the local stack, so the two cannot drift apart.

Plain data only (no CDK import): `gatewayctl local up` creates the same tables, stream and
buckets in the moto server from these, and a test compares them with the synthesized template.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Index:
    name: str
    partition_key: str
    sort_key: str


@dataclass(frozen=True)
class TableDefinition:
    logical_id: str
    partition_key: str
    sort_key: str
    ttl_attribute: str | None = None
    indexes: tuple[Index, ...] = ()


# Single-table layout: tenant configs, principals, roles, machine clients, breaker state.
TENANTS = TableDefinition(
    logical_id="TenantsTable",
    partition_key="pk",
    sort_key="sk",
    indexes=(Index(name="by_tenant", partition_key="tenant_pk", sort_key="tenant_sk"),),
)

# Quota windows per tenant (and optionally per principal): minute, day, month.
USAGE = TableDefinition(logical_id="UsageTable", partition_key="pk", sort_key="sk", ttl_attribute="expires_at")

# Where the audit trail lands in the audit bucket.
AUDIT_RECORDS_PREFIX = "audit/"
ACCESS_LOGS_PREFIX = "access-logs/"
ATHENA_RESULTS_PREFIX = "athena-results/"
