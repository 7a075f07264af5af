"""The audit record: the ONE definition of the audit schema (docs/audit.md).

The record model, the Glue table the stack declares and the DuckDB table the local stack queries
all derive from the field list below, so the three cannot drift apart (tests/unit/test_audit_schema.py
holds them together). A record never holds prompt or completion text: only hashes, counts and facts.

Plain dataclasses, no pydantic: this module ships in the Lambda and is imported on the hot path.

SCHEMA_VERSION changes only when an existing field is renamed, removed or changes type or meaning:
Athena's JSON SerDe and DuckDB's read_json read a field an older record lacks as NULL, so adding a
nullable field (a column, or a member of the attempts struct) keeps old and new records in one table
and needs no bump. Such an addition is documented in docs/audit.md with what NULL means for it.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field, fields
from typing import Any, Literal

SCHEMA_VERSION = 1

EventType = Literal["request", "response", "denied", "error"]
EVENT_TYPES: tuple[str, ...] = ("request", "response", "denied", "error")

# Partition key of records whose tenant is unknown (refused before the principal resolved):
# Kinesis partition keys and S3 partition prefixes cannot be empty.
UNKNOWN_TENANT = "_unknown"

# The Glue table's partition keys; Firehose (or the pump) writes audit/tenant=<id>/dt=<yyyy-mm-dd>/.
# DuckDB reads the same prefixes with hive partitioning, so both engines see these as columns.
PARTITION_KEYS: tuple[tuple[str, str], ...] = (("tenant", "string"), ("dt", "string"))

_USER_AGENT_MAX = 512

# Logical type of a field -> (Glue/Hive type, DuckDB type). Every field's type must be here.
_SCALAR_TYPES: dict[str, tuple[str, str]] = {
    "str": ("string", "VARCHAR"),
    "str | None": ("string", "VARCHAR"),
    "int": ("bigint", "BIGINT"),
    "int | None": ("bigint", "BIGINT"),
    "float | None": ("double", "DOUBLE"),
    "bool": ("boolean", "BOOLEAN"),
}


@dataclass(frozen=True)
class AttemptRecord:
    """One upstream attempt, in failover order: the last one without `error` served the request."""

    provider: str
    region: str
    error: str | None = None
    status: int | None = None
    # Reached the upstream and ended without an answer (a timeout, a stream that failed after it was
    # accepted): the upstream may have billed it, and the gateway settled quota for it. Records written
    # before this field existed read it as NULL (False in from_dict).
    possibly_billed: bool = False


@dataclass(frozen=True)
class AuditRecord:
    # The order of these fields is the column order of the Glue and DuckDB tables.
    schema_version: int
    event_id: str
    # ISO-8601 UTC with milliseconds and Z; its first 10 characters are the dt partition.
    event_time: str
    request_id: str
    event_type: str
    tenant_id: str
    principal: str | None  # the pseudonym, never the principal id
    model_alias: str | None = None
    provider: str | None = None
    region: str | None = None
    upstream_model_id: str | None = None
    request_sha256: str | None = None
    response_sha256: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    cost_usd: float | None = None
    latency_ms: int | None = None
    ttfb_ms: int | None = None
    status: int | None = None
    error_type: str | None = None
    attempt_count: int | None = None  # len(attempts), a scalar so failover queries are portable SQL
    attempts: list[AttemptRecord] = field(default_factory=list)
    quota_decision: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    # anthropic-beta flags the serving upstream does not accept, dropped for it (comma-separated).
    dropped_betas: str | None = None

    @classmethod
    def from_exchange(cls, exchange: Any, event_type: str) -> AuditRecord:
        """The record of one event of an `Exchange` (gateway.domain.ports): `request` or an outcome."""
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown audit event type {event_type!r}")
        meta = exchange.meta
        principal = exchange.principal
        request = exchange.request
        decision = exchange.decision
        is_request = event_type == "request"
        attempts = [] if is_request else list(exchange.attempts)
        served = None if is_request else (exchange.served_by or (attempts[-1] if attempts else None))
        usage = None if is_request else exchange.usage
        when = exchange.started_at if is_request else (exchange.finished_at or time.time())
        model_alias = decision.entry.alias if decision else (request.model if request else None)

        def millis(t: float | None) -> int | None:
            return None if t is None or is_request else max(0, round((t - exchange.started_at) * 1000))

        return cls(
            schema_version=SCHEMA_VERSION,
            # Deterministic per (exchange, event type): a retried or replayed record keeps its id,
            # so duplicates from retries and DLQ redrives can be removed by event_id.
            event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"audit:{exchange.event_id}:{event_type}")),
            event_time=iso_millis(when),
            request_id=meta.request_id,
            event_type=event_type,
            tenant_id=principal.tenant_id if principal else UNKNOWN_TENANT,
            principal=principal.pseudonym if principal else None,
            model_alias=model_alias,
            provider=served.provider if served else None,
            region=served.region if served else None,
            upstream_model_id=served.model_id if served else None,
            request_sha256=request.body_sha256 if request else None,
            response_sha256=None if is_request else exchange.response_sha256,
            input_tokens=usage.input_tokens if usage else None,
            output_tokens=usage.output_tokens if usage else None,
            cache_read_tokens=usage.cache_read_input_tokens if usage else None,
            cache_write_tokens=usage.cache_creation_input_tokens if usage else None,
            cost_usd=None if is_request else exchange.cost_usd,
            latency_ms=millis(exchange.finished_at or (None if is_request else time.time())),
            ttfb_ms=millis(exchange.first_byte_at),
            status=None if is_request else exchange.status,
            error_type=None if is_request else exchange.error_type,
            attempt_count=None if is_request else len(attempts),
            attempts=[AttemptRecord(a.provider, a.region, a.error, a.status, a.possibly_billed) for a in attempts],
            quota_decision=exchange.quota_decision,
            source_ip=meta.source_ip or None,
            user_agent=(meta.user_agent or None) and meta.user_agent[:_USER_AGENT_MAX],
            dropped_betas=None if is_request else (",".join(exchange.dropped_betas) or None),
        )

    @property
    def dt(self) -> str:
        """The date partition: the first 10 characters of event_time (as Firehose's prefix takes them)."""
        return self.event_time[:10]

    def to_dict(self) -> dict[str, Any]:
        """What dataclasses.asdict gives (every field in order, attempts as dicts), without its deep copies:
        this runs for every record, on the request path."""
        out = {name: getattr(self, name) for name in _RECORD_FIELDS}
        out["attempts"] = [{name: getattr(a, name) for name in _ATTEMPT_FIELDS} for a in self.attempts]
        return out

    def to_json(self) -> str:
        """One compact JSON object, no newline (the writer adds one per record)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditRecord:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["attempts"] = [AttemptRecord(**a) for a in values.get("attempts") or []]
        return cls(**values)

    @classmethod
    def from_json(cls, text: str | bytes) -> AuditRecord:
        return cls.from_dict(json.loads(text))


_RECORD_FIELDS = tuple(f.name for f in fields(AuditRecord))
_ATTEMPT_FIELDS = tuple(f.name for f in fields(AttemptRecord))


def iso_millis(epoch_seconds: float) -> str:
    """2026-11-23T03:40:00.123Z"""
    whole = int(epoch_seconds)
    millis = int(round((epoch_seconds - whole) * 1000))
    if millis == 1000:
        whole, millis = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def column_names() -> list[str]:
    return [f.name for f in fields(AuditRecord)]


def glue_columns() -> list[tuple[str, str]]:
    """(name, Glue type) of every data column, in record order; partitions are PARTITION_KEYS."""
    return [(f.name, _column_type(f)[0]) for f in fields(AuditRecord)]


def duckdb_columns() -> list[tuple[str, str]]:
    """(name, DuckDB type) of every data column, in record order."""
    return [(f.name, _column_type(f)[1]) for f in fields(AuditRecord)]


def _column_type(f: Any) -> tuple[str, str]:
    if f.name == "attempts":
        return _attempts_types()
    try:
        return _SCALAR_TYPES[f.type]
    except KeyError:
        raise TypeError(f"audit field {f.name}: no column type for {f.type!r}") from None


def _attempts_types() -> tuple[str, str]:
    parts = [(f.name, _SCALAR_TYPES[f.type]) for f in fields(AttemptRecord)]
    glue = ",".join(f"{name}:{types[0]}" for name, types in parts)
    duck = ", ".join(f"{name} {types[1]}" for name, types in parts)
    return f"array<struct<{glue}>>", f"STRUCT({duck})[]"
