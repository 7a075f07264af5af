"""Writes audit records and access-log lines into the Object Lock audit bucket: the one writer, used by the
Lambda handlers in the cloud (`audit_writer.handler`) and by the local stack's pump and access log.

Each object is gzip-compressed NDJSON: one compact JSON object per line, each line ending in exactly one
newline, no blank lines. Every PutObject carries an explicit checksum (ChecksumAlgorithm, so the
x-amz-checksum-* header): S3 refuses a write without an integrity header into a bucket with Object Lock
retention. With a `Retention`, it also sets the Object Lock mode and retain-until date itself instead of
relying on the bucket's default. Plain Python and the S3 client it is given: no import of boto3 here.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The audit bucket's layout (the Glue tables' locations and partition projection read it).
AUDIT_RECORDS_PREFIX = "audit/"
AUDIT_ERRORS_PREFIX = "audit-errors/"  # lines that are not audit records: kept, outside the table
ACCESS_LOGS_PREFIX = "access-logs/"
ACCESS_LOG_ERRORS_PREFIX = "access-log-errors/"
CHECKSUM_ALGORITHM = "SHA256"
OBJECT_LOCK_MODES = ("COMPLIANCE", "GOVERNANCE")


@dataclass(frozen=True)
class Retention:
    """The Object Lock retention every object gets: mode, and days from the moment it is written."""

    mode: str
    days: int

    def __post_init__(self) -> None:
        if self.mode not in OBJECT_LOCK_MODES or self.days < 1:
            raise ValueError(f"retention: mode in {OBJECT_LOCK_MODES} and days >= 1, not {self.mode!r}, {self.days}")

    def until(self, now: dt.datetime) -> dt.datetime:
        return now + dt.timedelta(days=self.days)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Retention | None:
        """AUDIT_OBJECT_LOCK_MODE and AUDIT_RETENTION_DAYS, both or neither (then the bucket's default)."""
        mode, days = environ.get("AUDIT_OBJECT_LOCK_MODE"), environ.get("AUDIT_RETENTION_DAYS")
        if not mode and not days:
            return None
        if not (mode and days and days.isdigit()):
            raise ValueError("set both AUDIT_OBJECT_LOCK_MODE and AUDIT_RETENTION_DAYS (a number of days)")
        return cls(mode=mode, days=int(days))


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def put_object(
    s3: Any,
    bucket: str,
    key: str,
    body: bytes,
    *,
    retention: Retention | None = None,
    now: dt.datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """PutObject with an explicit checksum, and explicit Object Lock retention when one is given."""
    params: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": body, "ChecksumAlgorithm": CHECKSUM_ALGORITHM}
    if retention is not None:
        params["ObjectLockMode"] = retention.mode
        params["ObjectLockRetainUntilDate"] = retention.until(now or _utcnow())
    return s3.put_object(**params, **extra)


def ndjson(lines: Iterable[bytes]) -> bytes:
    """Lines as NDJSON: each stripped of surrounding whitespace and newlines, blank ones dropped, each
    followed by exactly one newline."""
    return b"".join(line.strip() + b"\n" for line in lines if line.strip())


def gzip_ndjson(lines: Iterable[bytes]) -> bytes:
    # mtime=0: the same lines always give the same bytes, whoever writes them.
    return gzip.compress(ndjson(lines), mtime=0)


def audit_partition(line: bytes) -> tuple[str, str] | None:
    """(tenant, dt) of one audit record, from its tenant_id and the day of its event_time; None if malformed."""
    try:
        record = json.loads(line)
        tenant, event_time = record["tenant_id"], record["event_time"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(tenant, str) or not tenant or "/" in tenant or "=" in tenant:
        return None
    if not isinstance(event_time, str) or len(event_time) < 10:
        return None
    return tenant, event_time[:10]


@dataclass
class Group:
    """The lines of one object: its folder, and the index in the batch of the record each line came from."""

    folder: str
    lines: list[bytes]
    sources: list[int]


def group_audit_records(records: Iterable[bytes], *, prefix: str = AUDIT_RECORDS_PREFIX, day: str) -> list[Group]:
    """Records (one JSON object each, or several lines) grouped into tenant=<id>/dt=<day>/ folders.

    A line that is not an audit record goes to audit-errors/dt=<day of writing>/, kept but outside the table.
    """
    groups: dict[str, Group] = {}
    for index, data in enumerate(records):
        for line in data.splitlines():
            if not line.strip():
                continue
            part = audit_partition(line)
            folder = f"{prefix}tenant={part[0]}/dt={part[1]}/" if part else f"{AUDIT_ERRORS_PREFIX}dt={day}/"
            group = groups.setdefault(folder, Group(folder, [], []))
            group.lines.append(line.strip())
            if not group.sources or group.sources[-1] != index:
                group.sources.append(index)
    return [groups[folder] for folder in sorted(groups)]


def write_groups(
    s3: Any,
    bucket: str,
    groups: list[Group],
    *,
    name: Callable[[str], str],
    retention: Retention | None = None,
    now: dt.datetime | None = None,
    failed: list[int] | None = None,
) -> list[str]:
    """One gzip NDJSON object per group; returns the keys written.

    A failed put raises, unless `failed` is given: then the group's source indexes are added to it and the
    other groups are still written (a stream consumer reports those records for a retry).
    """
    keys = []
    for group in groups:
        key = f"{group.folder}{name(group.folder)}"
        try:
            put_object(
                s3,
                bucket,
                key,
                gzip_ndjson(group.lines),
                retention=retention,
                now=now,
                ContentType="application/x-ndjson",
                ContentEncoding="gzip",
            )
        except Exception:
            if failed is None:
                raise
            failed.extend(group.sources)
            continue
        keys.append(key)
    return keys


def write_batch(
    s3: Any,
    bucket: str,
    records: Iterable[bytes],
    *,
    retention: Retention | None = None,
    prefix: str = AUDIT_RECORDS_PREFIX,
    now: dt.datetime | None = None,
    failed: list[int] | None = None,
) -> list[str]:
    """Write audit records (each one JSON object, with or without its newline) grouped by tenant and day.

    The cloud writer (a Kinesis consumer) and the local pump both write through here. Records are
    idempotent by event_id, so a batch written twice after a retry only adds duplicates queries can drop.
    """
    now = now or _utcnow()
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    groups = group_audit_records(records, prefix=prefix, day=now.strftime("%Y-%m-%d"))
    return write_groups(
        s3,
        bucket,
        groups,
        name=lambda _: f"audit-{stamp}-{uuid.uuid4().hex}.json.gz",
        retention=retention,
        now=now,
        failed=failed,
    )


def access_log_day(line: bytes) -> str | None:
    """The UTC day of an access-log line's request_time (epoch milliseconds, as API Gateway renders it)."""
    try:
        millis = int(json.loads(line)["request_time"])
    except (ValueError, KeyError, TypeError):
        return None
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC).strftime("%Y-%m-%d")


def split_json_objects(text: bytes) -> list[bytes]:
    """Concatenated JSON objects (with or without newlines between them) as one compact line each.

    What cannot be parsed is returned whole, as one line, so it is kept (under the errors prefix).
    """
    decoder = json.JSONDecoder()
    source = text.decode("utf-8", errors="replace")
    out: list[bytes] = []
    position = 0
    while True:
        while position < len(source) and source[position].isspace():
            position += 1
        if position >= len(source):
            return out
        try:
            value, position = decoder.raw_decode(source, position)
        except ValueError:
            out.append(source[position:].strip().encode())
            return out
        out.append(json.dumps(value, separators=(",", ":")).encode())


def write_access_logs(
    s3: Any,
    bucket: str,
    lines: Iterable[bytes],
    *,
    retention: Retention | None = None,
    now: dt.datetime | None = None,
) -> list[str]:
    """Access-log lines (one JSON object each) as one object per UTC day of their request_time, under
    access-logs/dt=<yyyy-mm-dd>/; lines without a readable request_time go to access-log-errors/."""
    now = now or _utcnow()
    by_folder: dict[str, list[bytes]] = defaultdict(list)
    for line in lines:
        if not line.strip():
            continue
        day = access_log_day(line)
        folder = f"{ACCESS_LOGS_PREFIX}dt={day}/" if day else f"{ACCESS_LOG_ERRORS_PREFIX}dt={now:%Y-%m-%d}/"
        by_folder[folder].append(line)
    groups = [Group(folder, by_folder[folder], []) for folder in sorted(by_folder)]
    return write_groups(
        s3, bucket, groups, name=lambda _: f"access-{uuid.uuid4().hex}.gz", retention=retention, now=now
    )
