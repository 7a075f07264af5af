# ruff: noqa: F811  (pytest fixtures imported from audit_helpers are parameters here)
"""The audit trail end to end against a moto server: sink -> Kinesis -> pump -> Object Lock bucket ->
DuckDB queries, DLQ redrive, immutability, `verify` against the access-log witness."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import random

import pytest
from botocore.exceptions import ClientError
from gateway.adapters.kinesis_audit import KinesisAuditSink
from gateway.models.audit import AuditRecord
from gateway.observability import Metrics

from gatewayctl import auditing as trail
from gatewayctl.local.access_log import write_access_log
from gatewayctl.local.pump import Pump, drain_dlq, put_locked_object, write_batch
from stacks.audit_queries import NAMED_QUERIES
from stacks.definitions import AUDIT_RECORDS_PREFIX
from tests.integration.audit_helpers import (  # noqa: F401  (fixtures)
    FaultyClient,
    audit_moto,
    audit_resources,
    make_exchange,
)

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 11, 23)
T0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC).timestamp()


def no_sleep(_: float):
    return asyncio.sleep(0)


def record_all(sink, exchanges, *, outcomes=True):
    async def run():
        for ex in exchanges:
            await sink.record_request(ex)
        if outcomes:
            await asyncio.gather(*(sink.record_outcome(ex) for ex in exchanges))

    asyncio.run(run())


def query(res, sql, params=()):
    return trail.duckdb_query(res.client("s3"), res.bucket, sql, params)


def witness(res, exchanges, **overrides):
    s3 = res.client("s3")
    for ex in exchanges:
        fields = {
            "request_id": ex.meta.request_id,
            "method": "POST",
            "path": "/v1/messages",
            "status": ex.status or 200,
            "request_time": ex.started_at,
            **overrides,
        }
        write_access_log(s3, res.bucket, **fields)


def test_pump_writes_partitioned_locked_objects_once(audit_resources):
    res = audit_resources
    sink = KinesisAuditSink(res.settings(), kinesis=res.client("kinesis"), sqs=res.client("sqs"))
    exchanges = [make_exchange(tenant=t, started_at=T0 + i) for i, t in enumerate(["acme", "globex", "acme"])]
    record_all(sink, exchanges)
    s3 = res.client("s3")
    pump = Pump(res.client("kinesis"), s3, res.stream, res.bucket)
    assert pump.pump_once() == 6
    assert pump.pump_once() == 0  # it resumes after what it wrote
    keys = list(trail.list_keys(s3, res.bucket, AUDIT_RECORDS_PREFIX))
    assert {k.rsplit("/", 1)[0] for k in keys} == {
        "audit/tenant=acme/dt=2026-11-23",
        "audit/tenant=globex/dt=2026-11-23",
    }
    for key in keys:
        head = s3.head_object(Bucket=res.bucket, Key=key)
        assert head["ObjectLockMode"] == "GOVERNANCE" and head["ObjectLockRetainUntilDate"]
        for record in trail.read_json_lines(s3, res.bucket, key):
            assert f"tenant={record['tenant_id']}/" in key


def test_audit_objects_cannot_be_deleted_or_overwritten(audit_resources):
    res = audit_resources
    s3 = res.client("s3")
    line = AuditRecord.from_exchange(make_exchange(), "request").to_json().encode()
    (key,) = write_batch(s3, res.bucket, [line])
    version = s3.head_object(Bucket=res.bucket, Key=key)["VersionId"]
    original = s3.get_object(Bucket=res.bucket, Key=key, VersionId=version)["Body"].read()
    with pytest.raises(ClientError) as denied:
        s3.delete_object(Bucket=res.bucket, Key=key, VersionId=version)
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    # Writing the same key only adds a version on top: the locked version stays as it was.
    put_locked_object(s3, res.bucket, key, b"forged")
    assert s3.get_object(Bucket=res.bucket, Key=key, VersionId=version)["Body"].read() == original
    with pytest.raises(ClientError):
        s3.delete_object(Bucket=res.bucket, Key=key, VersionId=version)


def test_queries_return_the_right_tenants_tokens_and_costs(audit_resources):
    res = audit_resources
    sink = KinesisAuditSink(res.settings(), kinesis=res.client("kinesis"), sqs=res.client("sqs"))
    rng = random.Random(3)
    exchanges = [
        make_exchange(
            tenant=rng.choice(["acme", "globex", "initech"]),
            input_tokens=rng.randint(1, 500),
            output_tokens=rng.randint(1, 500),
            started_at=T0 + i,
        )
        for i in range(24)
    ]
    exchanges += [make_exchange(tenant="acme", outcome="denied", started_at=T0 + 30)]
    exchanges += [make_exchange(tenant="globex", outcome="error", started_at=T0 + 31)]
    record_all(sink, exchanges)
    Pump(res.client("kinesis"), res.client("s3"), res.stream, res.bucket).pump_once()

    counts = query(res, "SELECT event_type, count(*) FROM audit_events GROUP BY event_type ORDER BY 1").rows
    assert counts == [("denied", 1), ("error", 1), ("request", 26), ("response", 24)]

    served = [ex for ex in exchanges if ex.outcome == "response"]
    for tenant in ("acme", "globex", "initech"):
        mine = [ex for ex in served if ex.principal.tenant_id == tenant]
        (row,) = query(res, NAMED_QUERIES["usage_by_day"][1], [tenant]).dicts()
        assert row["tenant"] == tenant
        assert row["dt"] == "2026-11-23"
        assert row["responses"] == len(mine)
        assert row["input_tokens"] == sum(ex.usage.input_tokens for ex in mine)
        assert row["output_tokens"] == sum(ex.usage.output_tokens for ex in mine)
        assert row["cost_usd"] == pytest.approx(sum(ex.cost_usd for ex in mine), abs=1e-6)

    assert query(res, NAMED_QUERIES["denials"][1], ["acme"]).dicts()[0]["quota_decision"] == "refused:minute"
    assert query(res, NAMED_QUERIES["denials"][1], ["globex"]).rows == []
    assert query(res, NAMED_QUERIES["errors"][1], ["globex"]).dicts()[0]["status"] == 500
    for tenant in ("acme", "globex", "initech"):
        assert query(res, NAMED_QUERIES["requests_without_outcome"][1], [tenant, tenant]).rows == []
    acme = [ex for ex in exchanges if ex.principal.tenant_id == "acme"]
    mine = query(res, NAMED_QUERIES["principal_records"][1], ["acme", "ps-1"]).rows
    assert len(mine) == 2 * len(acme)  # make_exchange's default pseudonym


def test_failovers_query_finds_multi_attempt_requests(audit_resources):
    from gateway.models.exchange import Attempt

    res = audit_resources
    ex = make_exchange(started_at=T0)
    ex.attempts = [
        Attempt("bedrock", "us-east-1", "m", error="ThrottlingException", status=429),
        *ex.attempts,
    ]
    plain = make_exchange(started_at=T0 + 1)
    lines = [AuditRecord.from_exchange(e, "response").to_json().encode() for e in (ex, plain)]
    write_batch(res.client("s3"), res.bucket, lines)
    rows = query(res, NAMED_QUERIES["failovers"][1], ["acme"]).dicts()
    assert [(r["request_id"], r["attempt_count"]) for r in rows] == [(ex.meta.request_id, 2)]
    attempts = query(res, "SELECT attempts FROM audit_events WHERE request_id = ?", [ex.meta.request_id]).rows
    assert attempts[0][0][0] == {
        "provider": "bedrock",
        "region": "us-east-1",
        "error": "ThrottlingException",
        "status": 429,
        "possibly_billed": False,
    }


def test_random_outcome_faults_dlq_redrive_loses_nothing(audit_resources):
    res = audit_resources
    rng = random.Random(11)
    kinesis = FaultyClient(
        res.client("kinesis"),
        # Only outcome puts fail (request records must succeed, or the request would be refused).
        lambda op, kw: (
            op == "put_record" and b'"event_type":"request"' not in kw["Data"] and rng.random() < 0.8
        ),
    )
    sink = KinesisAuditSink(
        res.settings(),
        kinesis=kinesis,
        sqs=res.client("sqs"),
        sleep=no_sleep,
        metrics=Metrics("test", stream=io.StringIO()),
    )
    n = 40
    exchanges = [make_exchange(tenant=f"t{i % 4}", started_at=T0 + i) for i in range(n)]
    record_all(sink, exchanges)
    drained = drain_dlq(res.client("sqs"), res.dlq_url, res.client("kinesis"), res.stream)
    assert drained, "the fault rate should have dead-lettered some outcome records"
    Pump(res.client("kinesis"), res.client("s3"), res.stream, res.bucket).pump_once()
    rows = query(
        res, "SELECT event_type, count(DISTINCT request_id), count(*) FROM audit_events GROUP BY 1 ORDER BY 1"
    )
    assert rows.rows == [("request", n, n), ("response", n, n)]


def test_verify_passes_on_a_complete_locked_trail_and_reports_gaps(audit_resources):
    res = audit_resources
    s3 = res.client("s3")
    sink = KinesisAuditSink(res.settings(), kinesis=res.client("kinesis"), sqs=res.client("sqs"))
    exchanges = [make_exchange(started_at=T0 + i) for i in range(5)]
    record_all(sink, exchanges)
    Pump(res.client("kinesis"), s3, res.stream, res.bucket).pump_once()
    witness(res, exchanges)
    # Refused by the authorizer: API Gateway logs it, the gateway never sees it, no record expected.
    write_access_log(
        s3, res.bucket, request_id="unauth-1", method="POST", path="/v1/messages",
        status=401, error_type="UNAUTHORIZED", request_time=T0,
    )  # fmt: skip
    report = trail.verify(s3, res.bucket, DAY, DAY, now=dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC))
    assert report.ok, report.to_dict()
    assert report.witnessed == 5 and report.audited == 5 and report.objects_checked >= 1

    # A witnessed request with no records, a request record with no outcome and a record with no witness.
    witness(res, [make_exchange(started_at=T0 + 50, request_id="lost-1")])
    half = make_exchange(started_at=T0 + 60, request_id="half-1")
    record_all(sink, [half], outcomes=False)
    witness(res, [half])
    ghost = make_exchange(started_at=T0 + 70, request_id="ghost-1")
    record_all(sink, [ghost])
    Pump(res.client("kinesis"), s3, res.stream, res.bucket).pump_once()
    report = trail.verify(s3, res.bucket, DAY, DAY, now=dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC))
    assert not report.ok
    assert {m["request_id"] for m in report.missing} == {"lost-1", "half-1"}
    assert [m["request_id"] for m in report.incomplete] == ["half-1"]
    assert [m["request_id"] for m in report.extra] == ["ghost-1"]
    # Retention that has run out is reported too.
    late = trail.verify(s3, res.bucket, DAY, DAY, now=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    assert late.unlocked and all("expired" in u["problem"] for u in late.unlocked)


def test_verify_reports_a_model_call_without_its_request_record(audit_resources):
    """The request record is written before any model call: an outcome with upstream tries and no request
    record means the trail lost it (the stream accepted it and dropped it, say)."""
    res = audit_resources
    s3 = res.client("s3")
    called, refused = make_exchange(started_at=T0 + 80), make_exchange(started_at=T0 + 81, outcome="denied")
    lines = [AuditRecord.from_exchange(ex, ex.outcome).to_json().encode() for ex in (called, refused)]
    write_batch(s3, res.bucket, lines)
    witness(res, [called, refused])

    report = trail.verify(s3, res.bucket, DAY, DAY, now=dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC))

    assert not report.ok
    assert [u["request_id"] for u in report.unrequested] == [called.meta.request_id]  # a refusal needs none
    assert report.to_dict()["unrequested"] == report.unrequested


def test_verify_reports_objects_without_object_lock(audit_resources):
    res = audit_resources
    s3 = res.client("s3")
    bucket = res.bucket + "-nolock"
    s3.create_bucket(Bucket=bucket)
    ex = make_exchange(started_at=T0)
    lines = [AuditRecord.from_exchange(ex, t).to_json().encode() for t in ("request", "response")]
    write_batch(s3, bucket, lines)
    write_access_log(
        s3, bucket, request_id=ex.meta.request_id, method="POST", path="/v1/messages", status=200,
        request_time=T0,
    )  # fmt: skip
    report = trail.verify(s3, bucket, DAY, DAY)
    assert not report.ok
    assert [u["problem"] for u in report.unlocked] == ["no object lock retention"]
    assert not report.missing and not report.extra


def test_pump_runs_as_a_process_configured_by_env_and_redrives_the_dlq(audit_resources):
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    res = audit_resources
    sink = KinesisAuditSink(res.settings(), kinesis=res.client("kinesis"), sqs=res.client("sqs"))
    exchanges = [make_exchange(tenant="acme", started_at=T0 + i) for i in range(3)]
    record_all(sink, exchanges, outcomes=False)
    dead = AuditRecord.from_exchange(exchanges[0], "response").to_json()
    res.client("sqs").send_message(QueueUrl=res.dlq_url, MessageBody=dead)
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), str(root / "lambda_src")]),
        "AWS_ENDPOINT_URL": res.endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AUDIT_STREAM": res.stream,
        "AUDIT_BUCKET": res.bucket,
        "AUDIT_DLQ_URL": res.dlq_url,
        "PUMP_REDRIVE_DLQ": "true",
        "PUMP_INTERVAL": "0.2",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gatewayctl.local.pump"], env=env, cwd=root,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        counts: list[tuple] = []
        while time.monotonic() < deadline:
            counts = query(res, "SELECT event_type, count(*) FROM audit_events GROUP BY 1 ORDER BY 1").rows
            if counts == [("request", 3), ("response", 1)]:
                break
            time.sleep(0.3)
        assert counts == [("request", 3), ("response", 1)]
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0  # SIGTERM ends its loop cleanly
