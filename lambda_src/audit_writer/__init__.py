"""The audit writer: the one code path that writes audit records and access logs into the audit bucket,
in the cloud (Lambda, `audit_writer.handler`) and locally (gatewayctl/local/pump.py, access_log.py)."""

from audit_writer.writer import (
    ACCESS_LOGS_PREFIX,
    AUDIT_RECORDS_PREFIX,
    Retention,
    put_object,
    write_access_logs,
    write_batch,
)

__all__ = [
    "ACCESS_LOGS_PREFIX",
    "AUDIT_RECORDS_PREFIX",
    "Retention",
    "put_object",
    "write_access_logs",
    "write_batch",
]
