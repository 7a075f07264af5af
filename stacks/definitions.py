"""Resource definitions shared by the CDK stacks and the local stack, so the two cannot drift apart.

Plain data only (no CDK import): `gatewayctl local up` creates the same tables, stream and
buckets in the moto server from these, and a test compares them with the synthesized template.
"""

from __future__ import annotations

from dataclasses import dataclass

# Re-exported: the writer owns the bucket layout. Its module is plain Python too (no boto3, no CDK).
from audit_writer.writer import (  # noqa: F401
    ACCESS_LOG_ERRORS_PREFIX,
    ACCESS_LOGS_PREFIX,
    AUDIT_ERRORS_PREFIX,
    AUDIT_RECORDS_PREFIX,
)


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

# Where the audit trail lands in the audit bucket: the writer (audit_writer.writer) owns that layout;
# ACCESS_LOGS_PREFIX, AUDIT_RECORDS_PREFIX and their error prefixes are imported from it above.
ATHENA_RESULTS_PREFIX = "athena-results/"
# Where Firehose leaves API Gateway's access logs for the writer, in the staging bucket.
ACCESS_LOG_STAGING_PREFIX = "staged/"


@dataclass(frozen=True)
class StreamDefinition:
    logical_id: str
    retention_hours: int
    shard_count: int


@dataclass(frozen=True)
class QueueDefinition:
    logical_id: str
    retention_seconds: int


@dataclass(frozen=True)
class BucketDefinition:
    logical_id: str
    object_lock: bool
    versioned: bool


@dataclass(frozen=True)
class AppClientDefinition:
    logical_id: str
    generate_secret: bool
    auth_flows: tuple[str, ...]  # Cognito ExplicitAuthFlows
    oauth_flows: tuple[str, ...]  # "code" for people, "client_credentials" for machines
    oauth_scopes: tuple[str, ...]  # full names, "<resource-server>/<scope>" or OIDC scopes


@dataclass(frozen=True)
class UserPoolDefinition:
    logical_id: str
    resource_server: str  # identifier; the invoke scope is "<resource_server>/invoke"
    scopes: tuple[str, ...]
    clients: tuple[AppClientDefinition, ...]

    @property
    def invoke_scope(self) -> str:
        return f"{self.resource_server}/invoke"


# Audit records wait here for the audit writer (the local pump locally); 7 days covers a delivery outage.
AUDIT_STREAM = StreamDefinition(logical_id="AuditStream", retention_hours=168, shard_count=1)
# Audit records that could not be put on the stream after retries.
AUDIT_DLQ = QueueDefinition(logical_id="AuditDlq", retention_seconds=14 * 24 * 3600)
AUDIT_BUCKET = BucketDefinition(logical_id="AuditBucket", object_lock=True, versioned=True)

# `gatewayctl login`'s loopback redirect (authorization code + PKCE). Cognito accepts only a redirect_uri
# that is registered on the app client, port included, so every environment registers exactly this one.
CLI_REDIRECT_PORT = 8765
CLI_REDIRECT_PATH = "/callback"
CLI_CALLBACK_URL = f"http://localhost:{CLI_REDIRECT_PORT}{CLI_REDIRECT_PATH}"
CLI_LOGOUT_URL = f"http://localhost:{CLI_REDIRECT_PORT}/"

# People sign in with the authorization code flow (PKCE) in the cloud; the local stack uses the
# password flow against moto. Machine callers use client credentials with the invoke scope.
PEOPLE_CLIENT = AppClientDefinition(
    logical_id="PeopleClient",
    generate_secret=False,
    auth_flows=("ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"),
    oauth_flows=("code",),
    oauth_scopes=("openid", "email", "gateway/invoke"),
)
MACHINE_CLIENT = AppClientDefinition(
    logical_id="MachineClient",
    generate_secret=True,
    auth_flows=("ALLOW_REFRESH_TOKEN_AUTH",),
    oauth_flows=("client_credentials",),
    oauth_scopes=("gateway/invoke",),
)
USER_POOL = UserPoolDefinition(
    logical_id="UserPool",
    resource_server="gateway",
    scopes=("invoke",),
    clients=(PEOPLE_CLIENT, MACHINE_CLIENT),
)
