"""Is the trail complete and untampered? The access logs (an independent witness) joined with it.

Every request id that reached the gateway has its outcome record, every request record has an
outcome, every model call has its request record, no record lacks a witness, and every audit object
is under Object Lock retention.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from gatewayctl.auditing.objects import AuditError, list_keys, partition_of_key, read_json_lines
from stacks.audit_queries import AUDITED_RESOURCE, PRE_INTEGRATION_ERRORS
from stacks.definitions import ACCESS_LOGS_PREFIX, AUDIT_RECORDS_PREFIX

OUTCOME_TYPES = frozenset({"response", "denied", "error"})


@dataclass
class VerifyReport:
    date_from: str
    date_to: str
    witnessed: int = 0  # access-log request ids that reached the gateway in the window
    audited: int = 0  # request ids with audit records in the window
    objects_checked: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)  # witnessed, but no outcome record
    incomplete: list[dict[str, Any]] = field(default_factory=list)  # request record without outcome
    unrequested: list[dict[str, Any]] = field(default_factory=list)  # a model call without its request record
    extra: list[dict[str, Any]] = field(default_factory=list)  # audit records without a witness
    unlocked: list[dict[str, Any]] = field(default_factory=list)  # objects without Object Lock retention
    duplicates: int = 0  # records seen more than once (same event_id): harmless, reported

    @property
    def ok(self) -> bool:
        return not (self.missing or self.incomplete or self.unrequested or self.extra or self.unlocked)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "from": self.date_from,
            "to": self.date_to,
            "witnessed": self.witnessed,
            "audited": self.audited,
            "objects_checked": self.objects_checked,
            "duplicates": self.duplicates,
            "missing": self.missing,
            "incomplete": self.incomplete,
            "unrequested": self.unrequested,
            "extra": self.extra,
            "unlocked": self.unlocked,
        }


def verify_target(target: Any, date_from: dt.date, date_to: dt.date) -> VerifyReport:
    return verify(target.client("s3"), target.output("AuditBucketName"), date_from, date_to)


def needs_audit(entry: dict[str, Any]) -> bool:
    """Did this request reach the gateway's Messages route (so it must have audit records)?"""
    return (
        entry.get("http_method") == "POST"
        and entry.get("resource_path") == AUDITED_RESOURCE
        and entry.get("error_type", "-") not in PRE_INTEGRATION_ERRORS
    )


def verify(
    s3: Any, bucket: str, date_from: dt.date, date_to: dt.date, *, now: dt.datetime | None = None
) -> VerifyReport:
    """Join the access-log witness with the audit trail for [date_from, date_to] (UTC days)."""
    if date_to < date_from:
        raise AuditError("--to is before --from")
    report = VerifyReport(date_from.isoformat(), date_to.isoformat())
    start = dt.datetime.combine(date_from, dt.time(), dt.UTC)
    end = dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time(), dt.UTC)
    now = now or dt.datetime.now(dt.UTC)

    # Read one day either side of the window: a request near midnight may land in the next partition.
    lo, hi = (date_from - dt.timedelta(days=1)).isoformat(), (date_to + dt.timedelta(days=1)).isoformat()
    witness: dict[str, dict[str, Any]] = {}
    for key in list_keys(s3, bucket, ACCESS_LOGS_PREFIX):
        day = partition_of_key(key).get("dt")
        if day and not lo <= day <= hi:
            continue
        for entry in read_json_lines(s3, bucket, key):
            when = dt.datetime.fromtimestamp(int(entry["request_time"]) / 1000, dt.UTC)
            if start - dt.timedelta(days=1) <= when < end + dt.timedelta(days=1):
                witness[entry["request_id"]] = {**entry, "_in_window": start <= when < end}

    events: dict[str, set[str]] = defaultdict(set)
    called: set[str] = set()  # request ids whose outcome shows an upstream try
    in_window: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for key in list_keys(s3, bucket, AUDIT_RECORDS_PREFIX):
        day = partition_of_key(key).get("dt", "")
        if not lo <= day <= hi:
            continue
        if date_from.isoformat() <= day <= date_to.isoformat():
            report.objects_checked += 1
            lock = _lock_problem(s3, bucket, key, now)
            if lock:
                report.unlocked.append({"key": key, "problem": lock})
        for record in read_json_lines(s3, bucket, key):
            if record["event_id"] in seen:
                report.duplicates += 1
                continue
            seen.add(record["event_id"])
            events[record["request_id"]].add(record["event_type"])
            if record["event_type"] in OUTCOME_TYPES and record.get("attempt_count"):
                called.add(record["request_id"])
            if date_from.isoformat() <= record["event_time"][:10] <= date_to.isoformat():
                in_window.setdefault(record["request_id"], record)

    expected = {rid for rid, e in witness.items() if e["_in_window"] and needs_audit(e)}
    report.witnessed = len(expected)
    report.audited = len(in_window)
    for rid in sorted(expected):
        if not events.get(rid, set()) & OUTCOME_TYPES:
            entry = witness[rid]
            report.missing.append(
                {"request_id": rid, "status": entry.get("status"), "found": sorted(events.get(rid, ()))}
            )
    for rid, record in sorted(in_window.items()):
        if "request" in events[rid] and not events[rid] & OUTCOME_TYPES:
            report.incomplete.append({"request_id": rid, "tenant": record.get("tenant_id")})
        # The request record is written before any model call: an outcome with tries needs one.
        if rid in called and "request" not in events[rid]:
            report.unrequested.append({"request_id": rid, "tenant": record.get("tenant_id")})
        if rid not in witness:
            report.extra.append(
                {"request_id": rid, "tenant": record.get("tenant_id"), "event_time": record["event_time"]}
            )
    return report


def _lock_problem(s3: Any, bucket: str, key: str, now: dt.datetime) -> str | None:
    head = s3.head_object(Bucket=bucket, Key=key)
    mode, until = head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")
    if not mode or not until:
        return "no object lock retention"
    if until <= now:
        return f"retention expired {until.isoformat()}"
    return None
