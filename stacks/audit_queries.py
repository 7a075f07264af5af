"""The audit trail's named queries: plain data shared by the stack (Athena named queries) and
`gatewayctl audit query` (Athena in the cloud, DuckDB over the same objects locally).

Every statement is written in the common subset of Trino (Athena engine 3) and DuckDB SQL, against
the table name below; tests/integration/test_audit_queries.py runs each one in DuckDB. A `?` is a
positional parameter (Athena ExecutionParameters, DuckDB prepared parameters).
Timestamps are ISO-8601 strings, compared as text: they sort in time order in both engines.
"""

from __future__ import annotations

# The Glue table (and the local DuckDB table) that holds the audit records; partitions: tenant, dt.
AUDIT_TABLE = "audit_events"
# The access-log witness table (API Gateway access logs under definitions.ACCESS_LOGS_PREFIX).
ACCESS_LOG_TABLE = "access_logs"

NAMED_QUERIES: dict[str, tuple[str, str]] = {
    "usage_by_tenant_day": (
        "Tokens and cost of served requests, per tenant and day",
        f"""SELECT tenant, dt,
       count(*) AS responses,
       sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens,
       sum(cache_read_tokens) AS cache_read_tokens,
       sum(cache_write_tokens) AS cache_write_tokens,
       round(sum(cost_usd), 6) AS cost_usd
FROM {AUDIT_TABLE}
WHERE event_type = 'response'
GROUP BY tenant, dt
ORDER BY tenant, dt""",
    ),
    "errors": (
        "Requests that ended in an error, by tenant, day, status and error type",
        f"""SELECT tenant, dt, status, error_type, count(*) AS events
FROM {AUDIT_TABLE}
WHERE event_type = 'error'
GROUP BY tenant, dt, status, error_type
ORDER BY events DESC, tenant, dt, status, error_type""",
    ),
    "denials": (
        "Requests refused by policy or quota after the authorizer let them in",
        f"""SELECT tenant, dt, status, error_type, quota_decision, count(*) AS events
FROM {AUDIT_TABLE}
WHERE event_type = 'denied'
GROUP BY tenant, dt, status, error_type, quota_decision
ORDER BY events DESC, tenant, dt, status, error_type, quota_decision""",
    ),
    "failovers": (
        "Requests that needed more than one upstream attempt (region or provider failover)",
        f"""SELECT event_time, request_id, tenant, model_alias, provider, region, attempt_count, status
FROM {AUDIT_TABLE}
WHERE event_type IN ('response', 'error') AND attempt_count > 1
ORDER BY event_time, request_id""",
    ),
    "principal_records": (
        "Every record of one principal, by pseudonym (parameter 1: the pseudonym)",
        f"""SELECT *
FROM {AUDIT_TABLE}
WHERE principal = ?
ORDER BY event_time, event_type""",
    ),
    "requests_without_outcome": (
        "Request records with no response, denied or error record (should be empty)",
        f"""SELECT r.tenant, r.dt, r.request_id, r.event_time
FROM {AUDIT_TABLE} r
LEFT JOIN {AUDIT_TABLE} o ON o.request_id = r.request_id AND o.event_type <> 'request'
WHERE r.event_type = 'request' AND o.request_id IS NULL
ORDER BY r.event_time""",
    ),
}

# API Gateway access-log format (one JSON object per request): the stack passes
# json.dumps(ACCESS_LOG_FORMAT) to AccessLogFormat.custom, and the local stack writes the same fields
# (gatewayctl/local/access_log.py), so `gatewayctl audit verify` reads one format in both places.
ACCESS_LOG_FORMAT: dict[str, str] = {
    "requestId": "$context.requestId",
    "requestTimeEpoch": "$context.requestTimeEpoch",
    "ip": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "httpMethod": "$context.httpMethod",
    "path": "$context.path",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "errorType": "$context.error.responseType",
    "integrationStatus": "$context.integration.status",
}  # no principal id: the bucket is immutable, and erasure must leave nothing that names a person

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
# The requests the gateway audits: POST to a path ending in this (the stage may prefix it).
AUDITED_PATH_SUFFIX = "/v1/messages"
