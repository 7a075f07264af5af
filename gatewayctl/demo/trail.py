"""Step 5: the audit trail of every call above (the query the `audit` command runs), then verify."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatewayctl import auditing
from gatewayctl.demo.model import StepResult
from gatewayctl.local import processes
from gatewayctl.local.pump import Pump

if TYPE_CHECKING:
    from gatewayctl.demo.runner import Demo


def show(demo: Demo, result: StepResult) -> None:
    query = auditing.query_for(demo.target)
    ids = [c.request_id for c in demo.calls if c.request_id]
    marks = ", ".join("?" for _ in ids)
    tenants = sorted({c.tenant for c in demo.calls})
    tmarks = ", ".join("?" for _ in tenants)
    records_sql = (
        "SELECT request_id, tenant, event_type, status, model_alias, provider, region, attempt_count, "
        f"quota_decision FROM audit_events WHERE tenant IN ({tmarks}) AND request_id IN ({marks}) "
        "ORDER BY event_time, event_type"
    )
    witness_sql = f"SELECT request_id, status FROM access_logs WHERE request_id IN ({marks})"
    pump = _own_pump(demo)
    demo.out.line("The gateway put a request record and an outcome record on the audit stream (Kinesis)")
    demo.out.line("for each call; the pump moves them to the Object Lock bucket, as Firehose does.")
    with demo.out.waiting(f"Waiting for the audit records of {len(ids)} requests to reach S3"):
        deadline = time.monotonic() + 30
        while True:
            if pump is not None:
                pump.pump_once()
            rows = query(records_sql, [*tenants, *ids]).dicts()
            witnessed = {r["request_id"] for r in query(witness_sql, ids).dicts()}
            outcomes = {r["request_id"] for r in rows if r["event_type"] != "request"}
            if (outcomes >= set(ids) and witnessed >= set(ids)) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    label = {c.request_id: c.label for c in demo.calls}
    demo.out.line("gatewayctl audit query (DuckDB over the bucket here, Athena in the cloud; the same SQL):")
    demo.out.line(f"  {records_sql}".replace("?, ", "").replace("(?)", "(...)"))
    order = {c.request_id: i for i, c in enumerate(demo.calls)}
    rows.sort(key=lambda r: (order.get(r["request_id"], len(order)), r["event_type"] != "request"))
    demo.out.table(
        [{"demo step": label.get(r["request_id"], "?"), **r} for r in rows],
        [
            "demo step",
            "event_type",
            "status",
            "tenant",
            "model_alias",
            "region",
            "attempt_count",
            "quota_decision",
        ],
    )
    by_id: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_id.setdefault(r["request_id"], {})[r["event_type"]] = r
    for call in demo.calls:
        got = by_id.get(call.request_id, {})
        outcome = got.get(call.outcome) or {}
        # A policy refusal is decided before the request record is written (its one record is
        # the denial); a served or quota-refused request has a request record and an outcome.
        needs_request = call.outcome == "response" or call.status == 429
        demo.check(
            result,
            outcome.get("status") == call.status
            and ("request" in got or not needs_request)
            and call.request_id in witnessed,
            f"{call.label}: "
            + ("a request record, " if needs_request else "")
            + f"a {call.outcome} record with status {call.status}, and an access-log line",
        )
    quota_denied = next((by_id.get(c.request_id, {}).get("denied") for c in demo.calls if c.status == 429), None)
    demo.check(
        result,
        quota_denied is not None and str(quota_denied.get("quota_decision") or "").startswith("refused"),
        f"the 429's record holds the quota decision ({(quota_denied or {}).get('quota_decision')})",
    )
    _show_failover_attempts(demo, result, query)
    _verify(demo, result)


def _show_failover_attempts(demo: Demo, result: StepResult, query: Any) -> None:
    rid, first, second = (demo.failover.get(k) for k in ("request_id", "first", "second"))
    if not rid:
        demo.check(result, False, "the failover request's attempts are recorded (step 4 made no request)")
        return
    (row,) = query(
        "SELECT region, attempt_count, attempts FROM audit_events "
        "WHERE tenant = ? AND request_id = ? AND event_type = 'response'",
        ["acme", rid],
    ).dicts() or [{"region": None, "attempt_count": None, "attempts": []}]
    attempts = row["attempts"] or []
    shown = " -> ".join(
        f"{a['provider']} {a['region']} " + (f"{a['error']} ({a['status']})" if a.get("error") else "served")
        for a in attempts
    )
    demo.out.line(f"4 failover, its attempts as recorded: {shown or '(none)'}")
    demo.check(
        result,
        row["region"] == second
        and row["attempt_count"] == 2
        and len(attempts) == 2
        and attempts[0]["region"] == first
        and bool(attempts[0].get("error"))
        and attempts[1]["region"] == second
        and not attempts[1].get("error"),
        f"the failover is recorded: {first} throttled, then {second} served",
    )


def _verify(demo: Demo, result: StepResult) -> None:
    today = dt.datetime.now(dt.UTC).date()
    since = min(demo.started_at.date(), today)
    demo.out.line(f"gatewayctl audit verify --from {since} --to {today}:")
    report = auditing.verify_target(demo.target, since, today).to_dict()
    demo.out.table([{k: report[k] for k in ("ok", "witnessed", "audited", "objects_checked", "duplicates")}])
    for kind in ("missing", "incomplete", "extra", "unlocked"):
        if report[kind]:
            demo.out.line(f"{kind}: {report[kind][:5]}", indent=4)
    demo.check(
        result,
        report["ok"] and report["witnessed"] >= len(demo.calls),
        "verify is clean: every witnessed request has its records, none is unwitnessed, every object is locked",
    )


def _own_pump(demo: Demo) -> Any:
    """The stack's pump moves records every few seconds; if it is not running, pump here instead
    (from the same checkpoint, so nothing is written twice)."""
    pid = demo.state.get("pump_pid")
    if pid and processes.alive(int(pid)):
        return None
    log_dir = demo.state.get("log_dir")
    return Pump(
        demo.target.client("kinesis"),
        demo.target.client("s3"),
        demo.target.output("AuditStreamName"),
        demo.target.output("AuditBucketName"),
        Path(log_dir) / "pump-checkpoint.json" if log_dir else None,
    )
