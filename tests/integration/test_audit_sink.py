# ruff: noqa: F811  (pytest fixtures imported from audit_helpers are parameters here)
"""KinesisAuditSink against a moto server over HTTP, with faults injected into the real clients."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random

import pytest
from gateway.adapters.kinesis_audit import AuditUnavailableError, KinesisAuditSink
from gateway.domain.errors import ServiceUnavailableError
from gateway.models.audit import AuditRecord
from gateway.observability import Metrics

from tests.integration.audit_helpers import (  # noqa: F401  (fixtures)
    FaultyClient,
    audit_moto,
    audit_resources,
    make_exchange,
    read_stream,
)

pytestmark = pytest.mark.integration


def no_sleep(_: float):
    return asyncio.sleep(0)


def records_in(res) -> list[AuditRecord]:
    return [AuditRecord.from_json(data) for data in read_stream(res.client("kinesis"), res.stream)]


def dlq_bodies(res) -> list[str]:
    sqs = res.client("sqs")
    bodies = []
    while True:
        msgs = sqs.receive_message(QueueUrl=res.dlq_url, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            return bodies
        for m in msgs:
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=res.dlq_url, ReceiptHandle=m["ReceiptHandle"])


def test_request_and_outcome_records_reach_the_stream_partitioned_by_tenant(audit_resources):
    res = audit_resources
    sink = KinesisAuditSink(res.settings(), kinesis=res.client("kinesis"), sqs=res.client("sqs"))
    ex = make_exchange(tenant="globex")

    async def run():
        await sink.record_request(ex)
        await sink.record_outcome(ex)

    asyncio.run(run())
    raw = read_stream(res.client("kinesis"), res.stream)
    assert all(data.endswith(b"\n") and data.count(b"\n") == 1 for data in raw)
    records = sorted(records_in(res), key=lambda r: r.event_type)
    assert [r.event_type for r in records] == ["request", "response"]
    assert {r.request_id for r in records} == {ex.meta.request_id}
    assert {r.tenant_id for r in records} == {"globex"}
    assert records[1].output_tokens == 20 and records[1].cost_usd == ex.cost_usd


def test_request_record_failure_is_a_503_and_nothing_is_written(audit_resources):
    res = audit_resources
    kinesis = FaultyClient(res.client("kinesis"), lambda op, kw: op == "put_record")
    sink = KinesisAuditSink(res.settings(), kinesis=kinesis, sqs=res.client("sqs"))
    with pytest.raises(AuditUnavailableError) as caught:
        asyncio.run(sink.record_request(make_exchange()))
    assert isinstance(caught.value, ServiceUnavailableError) and caught.value.status == 503
    assert records_in(res) == []
    assert dlq_bodies(res) == []  # a request record is never dead-lettered: the request is refused instead


def test_outcome_is_retried_then_written(audit_resources):
    res = audit_resources
    failures = iter([True, True, False])
    kinesis = FaultyClient(res.client("kinesis"), lambda op, kw: op == "put_record" and next(failures))
    delays: list[float] = []

    async def sleep(d):
        delays.append(d)

    sink = KinesisAuditSink(res.settings(), kinesis=kinesis, sqs=res.client("sqs"), sleep=sleep)
    asyncio.run(sink.record_outcome(make_exchange(outcome="error")))
    assert kinesis.calls.count("put_record") == 3
    assert len(delays) == 2 and delays[1] > delays[0]  # backoff grows
    assert [r.event_type for r in records_in(res)] == ["error"]
    assert dlq_bodies(res) == []


def metrics() -> tuple[Metrics, io.StringIO]:
    out = io.StringIO()
    return Metrics("test", stream=out), out


def test_outcome_that_keeps_failing_goes_to_the_dlq_with_a_metric(audit_resources):
    res = audit_resources
    kinesis = FaultyClient(res.client("kinesis"), lambda op, kw: op == "put_record")
    counter, out = metrics()
    sink = KinesisAuditSink(
        res.settings(), kinesis=kinesis, sqs=res.client("sqs"), sleep=no_sleep, metrics=counter
    )
    ex = make_exchange(outcome="denied")
    asyncio.run(sink.record_outcome(ex))  # never raises
    assert kinesis.calls.count("put_record") == 4
    bodies = dlq_bodies(res)
    assert len(bodies) == 1
    dead = AuditRecord.from_json(bodies[0])
    assert dead == AuditRecord.from_exchange(ex, "denied")
    (line,) = out.getvalue().splitlines()
    metric = json.loads(line)
    assert metric["AuditDeadLettered"] == 1 and metric["Environment"] == "test"
    # Exactly the dimension set the stack's alarm selects on.
    assert metric["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ClaudeGateway"
    assert metric["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Environment"]]


def test_outcome_never_raises_even_when_the_dlq_fails_and_logs_the_record(audit_resources, caplog):
    res = audit_resources
    kinesis = FaultyClient(res.client("kinesis"), lambda op, kw: True)
    sqs = FaultyClient(res.client("sqs"), lambda op, kw: True)
    counter, out = metrics()
    sink = KinesisAuditSink(res.settings(), kinesis=kinesis, sqs=sqs, sleep=no_sleep, metrics=counter)
    ex = make_exchange()
    with caplog.at_level(logging.ERROR, logger="gateway.audit"):
        asyncio.run(sink.record_outcome(ex))
    kept = [r.getMessage() for r in caplog.records if "unsent" in r.getMessage()]
    assert len(kept) == 1
    record = AuditRecord.from_json(kept[0].split(": ", 1)[1])
    assert record == AuditRecord.from_exchange(ex, "response")
    assert json.loads(out.getvalue())["AuditUndeliverable"] == 1


def test_random_faults_lose_no_outcome_record(audit_resources):
    """Across many outcomes with random put failures, stream + DLQ hold every record exactly once."""
    res = audit_resources
    rng = random.Random(7)
    kinesis = FaultyClient(res.client("kinesis"), lambda op, kw: op == "put_record" and rng.random() < 0.75)
    sink = KinesisAuditSink(
        res.settings(), kinesis=kinesis, sqs=res.client("sqs"), sleep=no_sleep, metrics=metrics()[0]
    )
    exchanges = [
        make_exchange(tenant=f"t{i % 3}", outcome=("response", "error", "denied")[i % 3]) for i in range(30)
    ]

    async def run():
        await asyncio.gather(*(sink.record_outcome(ex) for ex in exchanges))

    asyncio.run(run())
    streamed = [r.event_id for r in records_in(res)]
    dead = [AuditRecord.from_json(b).event_id for b in dlq_bodies(res)]
    expected = {AuditRecord.from_exchange(ex, ex.outcome).event_id for ex in exchanges}
    assert dead, "the fault rate should have dead-lettered some records"
    assert sorted(streamed + dead) == sorted(expected)
