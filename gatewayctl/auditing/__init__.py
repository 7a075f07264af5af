"""The audit trail for operators and auditors: query it, verify it, redrive its DLQ, answer GDPR requests.

- query: the same SQL in Athena (cloud) and DuckDB (local stack);
- verify: the access-log witness joined with the trail, and Object Lock on every object;
- dlq: dead-lettered records back on the stream;
- failures: what the audit writers gave up on (the AuditWriterFailures queue), written again;
- gdpr: export by recomputed pseudonym; erasure of everything mutable that names a person.

The commands (gatewayctl/commands/{audit,gdpr}.py) are thin wrappers around these.
"""

from gatewayctl.auditing.dlq import redrive, redrive_dlq
from gatewayctl.auditing.failures import replay_failures
from gatewayctl.auditing.gdpr import erase_principal, export_principal, gdpr_erase, gdpr_export, principal_key
from gatewayctl.auditing.objects import AuditError, list_keys, partition_of_key, read_json_lines, read_object
from gatewayctl.auditing.query import QueryResult, athena_literal, athena_query, duckdb_query, query_for
from gatewayctl.auditing.verify import VerifyReport, needs_audit, verify, verify_target

__all__ = [
    "AuditError",
    "QueryResult",
    "VerifyReport",
    "athena_literal",
    "athena_query",
    "duckdb_query",
    "erase_principal",
    "export_principal",
    "gdpr_erase",
    "gdpr_export",
    "list_keys",
    "needs_audit",
    "partition_of_key",
    "principal_key",
    "query_for",
    "read_json_lines",
    "read_object",
    "redrive",
    "redrive_dlq",
    "replay_failures",
    "verify",
    "verify_target",
]
