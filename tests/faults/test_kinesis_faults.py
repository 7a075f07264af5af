"""Kinesis failing under the gateway, on the wire (gatewayctl/local/fault_proxy.py): throttling, an audit
stream that is down, an answer lost after the put, and a stream that accepts records and drops them (which
`gatewayctl audit verify` must find). After each run: one outcome per request, counters equal to the
settlement rules, no model call without a request record (tests/faults/rig.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from gatewayctl import auditing
from gatewayctl.local.fault_proxy import put_record_data
from gatewayctl.local.pump import Pump
from tests.faults.rig import Rig, reply_charge

FAULT_CLASS = "Kinesis"


def audit_puts(tenant_id: str, *event_types: str) -> Callable[[dict[str, Any]], bool]:
    def match(body: dict[str, Any]) -> bool:
        record = put_record_data(body)
        return record.get("tenant_id") == tenant_id and record.get("event_type") in event_types

    return match


# -- puts that fail, hang or lose their answer ------------------------------------------------------


@dataclass
class Case:
    kind: str  # the proxy's fault (gatewayctl/local/fault_proxy.py)
    count: int | None  # None: until cleared
    records: tuple[str, ...] | None  # the tenant's records it hits (event types); None: every call to Kinesis
    status: int  # the caller's answer
    dead_lettered: int = 0  # outcome records the DLQ took
    duplicates: int = 0  # records on the stream twice (one event_id: readers deduplicate)


CASES = {
    "request record throttled once: botocore's retry": Case("throttle", 1, ("request",), 200),
    # The held put never reached the stream: sent again, it is there once.
    "request record put held past the read timeout": Case("timeout", 1, ("request",), 200),
    # Put, and the answer lost: botocore put it again, so the stream holds it twice under one event_id.
    "request record answer lost after the put": Case("lose", 1, ("request",), 200, duplicates=1),
    # An outage: fail closed. No request record, no model call, the reservation given back, the outcome in the DLQ.
    "the audit stream down: 503 before any model call": Case("error", None, None, 503, dead_lettered=1),
    "outcome record refused: the DLQ takes it": Case("error", None, ("response",), 200, dead_lettered=1),
    # The outcome's puts get a few seconds in all (kinesis_audit.py); then the DLQ takes the record.
    "outcome record puts hang: the DLQ takes it": Case("timeout", None, ("response",), 200, dead_lettered=1),
}


@pytest.mark.parametrize("name", CASES)
def test_a_faulted_audit_put_leaves_one_record_of_each_kind(rig: Rig, name: str) -> None:
    case = CASES[name]
    tenant_id, user = rig.caller()
    match = audit_puts(tenant_id, *case.records) if case.records else None
    rig.aws_fault("Kinesis", "PutRecord" if case.records else None, case.kind, count=case.count, match=match)

    sent = rig.send(user, name)

    assert sent.status == case.status, sent
    served = case.status == 200
    assert (rig.upstream_calls() == 0) != served
    run = rig.check(tenant_id, [sent], expect_request_records=served)
    assert run.rules == ["settled" if served else "released"]
    assert (run.dead_lettered, run.duplicates) == (case.dead_lettered, case.duplicates)


# -- puts accepted and dropped: what `gatewayctl audit verify` must find -------------------------------


def verify_flags(rig: Rig, request_id: str) -> dict[str, Any]:
    """Move the stream to the bucket as the cloud's writer does, write the access logs, run `audit verify`."""
    stack = rig.stack
    assert stack.access_log is not None and stack.access_log.writer.flush()
    outputs = stack.outputs
    Pump(rig.kinesis, stack.client("s3"), outputs["AuditStreamName"], outputs["AuditBucketName"]).pump_once()
    today = dt.datetime.now(dt.UTC).date()
    report = auditing.verify_target(stack.target(), today - dt.timedelta(days=1), today).to_dict()
    lists = {kind: entries for kind, entries in report.items() if isinstance(entries, list)}
    return {kind: request_id in {e["request_id"] for e in entries} for kind, entries in lists.items()}


def test_an_outcome_record_accepted_and_dropped_is_found_by_audit_verify(rig: Rig) -> None:
    tenant_id, user = rig.caller()
    rig.aws_fault("Kinesis", "PutRecord", "blackhole", count=1, match=audit_puts(tenant_id, "response"))

    sent = rig.send(user, "outcome record black-holed")

    assert sent.status == 200
    # Its charge comes from the reply the client read: the record that would say it is gone.
    run = rig.check(tenant_id, [sent], lost_outcomes=1, unrecorded=reply_charge(sent))
    assert run.outcomes == []
    flagged = verify_flags(rig, sent.request_id)
    assert flagged["missing"] and flagged["incomplete"]


def test_a_request_record_accepted_and_dropped_is_found_by_audit_verify(rig: Rig) -> None:
    tenant_id, user = rig.caller()
    rig.aws_fault("Kinesis", "PutRecord", "blackhole", count=1, match=audit_puts(tenant_id, "request"))

    sent = rig.send(user, "request record black-holed")

    assert sent.status == 200
    run = rig.check(tenant_id, [sent], lost_requests=1)
    assert run.rules == ["settled"]
    assert verify_flags(rig, sent.request_id)["unrequested"]
