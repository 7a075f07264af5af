"""The audit trail's named queries: plain data shared by the stack (Athena named queries) and
`gatewayctl audit query` (Athena in the cloud, DuckDB over the same objects locally).

Every statement is written in the common subset of Trino (Athena engine 3) and DuckDB SQL, against
the table name below; tests run each one in DuckDB. A `?` is a positional parameter (Athena
ExecutionParameters, DuckDB prepared parameters).

Each query names its tenant (`tenant = ?`, the first parameter): the Glue table projects the tenant
partition with the `injected` type (tenants are not known at deploy time), and Athena refuses a query
on such a table unless the WHERE clause holds a static equality on that column. To span tenants, use
`tenant IN ('a', 'b', ...)` in your own SQL. Timestamps are ISO-8601 strings, compared as text: they
sort in time order in both engines.
"""

from __future__ import annotations

# The Glue table (and the local DuckDB table) that holds the audit records; partitions: tenant, dt.
AUDIT_TABLE = "audit_events"
# The access-log witness table (API Gateway access logs under definitions.ACCESS_LOGS_PREFIX).
ACCESS_LOG_TABLE = "access_logs"

NAMED_QUERIES: dict[str, tuple[str, str]] = {
    "usage_by_day": (
        "One tenant's served requests, tokens and cost per day (parameter: tenant id)",
        f"""SELECT tenant, dt,
       count(*) AS responses,
       sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens,
       sum(cache_read_tokens) AS cache_read_tokens,
       sum(cache_write_tokens) AS cache_write_tokens,
       round(sum(cost_usd), 6) AS cost_usd
FROM {AUDIT_TABLE}
WHERE tenant = ? AND event_type = 'response'
GROUP BY tenant, dt
ORDER BY tenant, dt""",
    ),
    "errors": (
        "One tenant's requests that ended in an error, by day, status and error type (parameter: tenant id)",
        f"""SELECT tenant, dt, status, error_type, count(*) AS events
FROM {AUDIT_TABLE}
WHERE tenant = ? AND event_type = 'error'
GROUP BY tenant, dt, status, error_type
ORDER BY events DESC, tenant, dt, status, error_type""",
    ),
    "denials": (
        "One tenant's requests refused by policy or quota past the authorizer (parameter: tenant id)",
        f"""SELECT tenant, dt, status, error_type, quota_decision, count(*) AS events
FROM {AUDIT_TABLE}
WHERE tenant = ? AND event_type = 'denied'
GROUP BY tenant, dt, status, error_type, quota_decision
ORDER BY events DESC, tenant, dt, status, error_type, quota_decision""",
    ),
    "failovers": (
        "One tenant's requests that needed more than one upstream attempt (parameter: tenant id)",
        f"""SELECT event_time, request_id, tenant, model_alias, provider, region, attempt_count, status
FROM {AUDIT_TABLE}
WHERE tenant = ? AND event_type IN ('response', 'error') AND attempt_count > 1
ORDER BY event_time, request_id""",
    ),
    "principal_records": (
        "Every record of one principal (parameters: tenant id, pseudonym)",
        f"""SELECT *
FROM {AUDIT_TABLE}
WHERE tenant = ? AND principal = ?
ORDER BY event_time, event_type""",
    ),
    "requests_without_outcome": (
        "One tenant's request records with no response, denied or error record: should be empty "
        "(parameters: tenant id, twice)",
        f"""SELECT r.tenant, r.dt, r.request_id, r.event_time
FROM {AUDIT_TABLE} r
WHERE r.tenant = ? AND r.event_type = 'request'
  AND r.request_id NOT IN (
    SELECT o.request_id FROM {AUDIT_TABLE} o WHERE o.tenant = ? AND o.event_type <> 'request'
  )
ORDER BY r.event_time""",
    ),
}

# No named query for possibly-billed attempts (attempts[].possibly_billed): Trino expands an unnested
# array of structs into one column per field, DuckDB keeps one struct column, so no UNNEST form runs
# in both. docs/audit.md gives each engine's spelling; tests/unit/test_audit_schema.py checks both.

# The API Gateway access-log fields the witness needs (one JSON object per request), named as the
# stack's format names them (stacks/constructs/audit_trail.py ACCESS_LOG_FORMAT must contain each of
# these with the same $context variable: tests/unit/test_audit_schema.py checks it). The local stack
# writes exactly these (gatewayctl/local/access_log.py), and `gatewayctl audit verify` reads them.
# No principal id here on purpose: the bucket is immutable, and erasure must leave nothing that names
# a person.
ACCESS_LOG_FORMAT: dict[str, str] = {
    "request_id": "$context.requestId",
    "request_time": "$context.requestTimeEpoch",
    "http_method": "$context.httpMethod",
    "resource_path": "$context.resourcePath",
    "status": "$context.status",
    "response_length": "$context.responseLength",
    "integration_status": "$context.integration.status",
    "error_type": "$context.error.responseType",
}
# No source IP or user agent either: they identify a person, and were only ever a witness of the request
# id, which the line carries anyway.
# Where the audit writer (and the local stack) put access logs under definitions.ACCESS_LOGS_PREFIX.
ACCESS_LOG_PARTITION = "dt"

# Gateway responses that API Gateway answers before the Lambda runs: no audit record is expected
# for these request ids (the authorizer, WAF or stage throttling refused them).
PRE_INTEGRATION_ERRORS = frozenset(
    {
        "ACCESS_DENIED",
        "API_CONFIGURATION_ERROR",
        "AUTHORIZER_CONFIGURATION_ERROR",
        "AUTHORIZER_FAILURE",
        "BAD_REQUEST_BODY",
        "BAD_REQUEST_PARAMETERS",
        "EXPIRED_TOKEN",
        "INVALID_API_KEY",
        "INVALID_SIGNATURE",
        "MISSING_AUTHENTICATION_TOKEN",
        "QUOTA_EXCEEDED",
        "REQUEST_TOO_LARGE",
        "RESOURCE_NOT_FOUND",
        "THROTTLED",
        "UNAUTHORIZED",
        "UNSUPPORTED_MEDIA_TYPE",
        "WAF_FILTERED",
    }
)
# The requests the gateway audits: POST to this resource.
AUDITED_RESOURCE = "/v1/messages"
