"""The outcome record's time on the response's end is bounded: a stream that just refused the request
record is not retried, and the Kinesis attempts have an overall budget before the DLQ takes the record."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from gateway.adapters.kinesis_audit import AuditUnavailableError, KinesisAuditSink

from tests.integration.audit_helpers import make_exchange
from tests.unit.runtime_fakes import settings


class DownKinesis:
    def __init__(self, hang: float = 0.0) -> None:
        self.puts = 0
        self.hang = hang

    def put_record(self, **kwargs: Any) -> None:
        self.puts += 1
        time.sleep(self.hang)
        raise ConnectionError("kinesis unreachable")


class Dlq:
    def __init__(self) -> None:
        self.bodies: list[str] = []

    def send_message(self, **kwargs: Any) -> None:
        self.bodies.append(kwargs["MessageBody"])


async def no_sleep(delay: float) -> None:
    return None


def test_a_failed_request_record_sends_the_outcome_straight_to_the_dlq() -> None:
    kinesis, dlq = DownKinesis(), Dlq()
    sink = KinesisAuditSink(settings(), kinesis=kinesis, sqs=dlq, sleep=no_sleep)
    exchange = make_exchange(outcome="error")

    async def run() -> None:
        with pytest.raises(AuditUnavailableError):
            await sink.record_request(exchange)
        await sink.record_outcome(exchange)

    asyncio.run(run())
    assert kinesis.puts == 1  # the request record only: no retries of a stream that just failed
    assert len(dlq.bodies) == 1 and '"event_type":"error"' in dlq.bodies[0]


def test_other_requests_outcomes_still_try_the_stream() -> None:
    kinesis, dlq = DownKinesis(), Dlq()
    sink = KinesisAuditSink(settings(), kinesis=kinesis, sqs=dlq, sleep=no_sleep, retry_delays=(0.0,))
    asyncio.run(sink.record_outcome(make_exchange(outcome="error")))
    assert kinesis.puts == 2 and len(dlq.bodies) == 1


def test_the_outcome_records_stream_attempts_have_an_overall_budget_then_the_dlq() -> None:
    kinesis, dlq = DownKinesis(hang=0.5), Dlq()
    sink = KinesisAuditSink(settings(), kinesis=kinesis, sqs=dlq, sleep=no_sleep, outcome_budget_seconds=0.8)
    started = time.monotonic()
    asyncio.run(sink.record_outcome(make_exchange(outcome="error")))
    elapsed = time.monotonic() - started

    assert len(dlq.bodies) == 1
    assert kinesis.puts == 2  # the second put ran out of time; two more were never tried
    assert elapsed < 1.6  # four hung puts take 2 s (asyncio.run also joins the stray put's thread)
