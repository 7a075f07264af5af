"""The audit sink: audit records to the Kinesis audit stream (request steps 4 and 7, docs/ARCHITECTURE.md).

- `record_request` is on the critical path and fails closed: if the `request` record cannot be put,
  it raises AuditUnavailableError (a 503) and the model is never called.
- `record_outcome` must not lose a record and must not fail the request: it retries with backoff,
  then sends the record to the audit dead-letter queue (SQS); if even that fails, the record goes to
  the function's log as a last copy. It never raises.
- Records of requests that Vertex served are mirrored to Google Cloud Logging when the environment
  turns it on: written alongside the outcome record, after the client has its reply, and awaited
  (within MIRROR_BUDGET_SECONDS) before the response ends; a failing mirror never fails the record.

Each Kinesis record is one compact JSON object and a newline, so whatever concatenates records
(Firehose, the local pump) writes newline-delimited JSON without a delimiter processor.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from gateway import observability
from gateway.adapters.aws import client
from gateway.adapters.aws_loop import call
from gateway.domain.errors import ServiceUnavailableError
from gateway.models.audit import AuditRecord
from gateway.models.exchange import Exchange
from gateway.settings import Settings

log = logging.getLogger("gateway.audit")

# Delays between outcome attempts: 4 puts over about 1.4 s (plus jitter) before the DLQ takes it.
OUTCOME_RETRY_DELAYS = (0.1, 0.3, 1.0)
# Overall time for the outcome record's Kinesis attempts (puts and delays): the response's end waits
# for it, so after this the DLQ takes the record. A put still running then may land too: consumers
# deduplicate on event_id.
OUTCOME_BUDGET_SECONDS = 5.0
# How long the response's end waits for the Cloud Logging copy of a record (written alongside the put).
MIRROR_BUDGET_SECONDS = 3.0


class AuditUnavailableError(ServiceUnavailableError):
    """The request record could not be written: the gateway refuses to call the model unaudited."""

    def __init__(self, message: str = "the audit trail is unavailable; the request was not sent") -> None:
        super().__init__(message)


class KinesisAuditSink:
    def __init__(
        self,
        settings: Settings,
        *,
        kinesis: Any = None,
        sqs: Any = None,
        mirror: Any = None,
        retry_delays: Sequence[float] = OUTCOME_RETRY_DELAYS,
        outcome_budget_seconds: float = OUTCOME_BUDGET_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        metrics: Any = None,
        mirror_budget_seconds: float = MIRROR_BUDGET_SECONDS,
    ) -> None:
        self._settings = settings
        self._kinesis = kinesis
        self._sqs = sqs
        if mirror is None and settings.audit_mirror_cloud_logging and settings.vertex_project:
            from gateway.adapters.cloud_logging import (
                CloudLoggingMirror,
            )  # light: Google imports wait for a write

            mirror = CloudLoggingMirror(settings)
        self._mirror = mirror
        self._retry_delays = tuple(retry_delays)
        self._outcome_budget = outcome_budget_seconds
        self._mirror_budget = mirror_budget_seconds
        self._sleep = sleep
        # EMF counts with the Environment dimension, which the stack's alarms select on.
        self._metrics = metrics or observability.Metrics(settings.env)
        self._mirror_tasks: set[asyncio.Task[Any]] = set()
        # Requests whose request record just failed (the stream is down): their outcome record goes
        # straight to the DLQ instead of retrying a stream that just failed.
        self._unrecorded: set[str] = set()

    # Clients are built on first use (not at import or construction): the app starts before any call.
    @property
    def kinesis(self) -> Any:
        if self._kinesis is None:
            # Short timeouts: the request record is on the critical path, and a stuck put must end in a 503.
            self._kinesis = client("kinesis", self._settings.region, connect_timeout=2, read_timeout=3)
        return self._kinesis

    @property
    def sqs(self) -> Any:
        if self._sqs is None:
            self._sqs = client("sqs", self._settings.region, connect_timeout=2, read_timeout=5)
        return self._sqs

    async def record_request(self, exchange: Exchange) -> None:
        record = AuditRecord.from_exchange(exchange, "request")
        try:
            await self._put(record)
        except Exception as exc:  # any failure to write means: do not call the model
            log.error("audit request record not written (request %s): %r", record.request_id, exc)
            self._unrecorded.add(exchange.event_id)
            raise AuditUnavailableError() from exc

    async def record_outcome(self, exchange: Exchange) -> None:
        try:
            record = AuditRecord.from_exchange(exchange, exchange.outcome or "error")
        except Exception:  # a bug in building the record must not fail the request either
            log.exception("audit outcome record could not be built (request %s)", exchange.meta.request_id)
            return
        # The mirror's copy is written alongside and awaited too (the response ends after this, and a
        # frozen Lambda would lose a write still in flight), within its own budget.
        mirrored = None
        if self._mirror is not None and record.provider == "vertex":
            mirrored = asyncio.ensure_future(self._mirror_write(record))
        try:
            await self._deliver(exchange, record)
        finally:
            if mirrored is not None:
                await self._await_mirror(mirrored)

    async def _deliver(self, exchange: Exchange, record: AuditRecord) -> None:
        if exchange.event_id in self._unrecorded:
            self._unrecorded.discard(exchange.event_id)
            await self._dead_letter(record)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._outcome_budget
        for attempt, delay in enumerate((*self._retry_delays, None)):
            try:
                async with asyncio.timeout_at(deadline):
                    await self._put(record)
                return
            except TimeoutError:
                log.warning("audit %s record: stream attempts out of time", record.event_type)
                break
            except Exception as exc:
                log.warning(
                    "audit %s record put failed (attempt %d): %r", record.event_type, attempt + 1, exc
                )
            if delay is None:
                break
            pause = delay * (1 + random.random() / 2)
            if loop.time() + pause >= deadline:
                break
            await self._sleep(pause)
        await self._dead_letter(record)

    async def _put(self, record: AuditRecord) -> None:
        await call(
            self.kinesis,
            "put_record",
            StreamName=self._settings.audit_stream,
            Data=(record.to_json() + "\n").encode(),
            PartitionKey=record.tenant_id,
        )

    async def _dead_letter(self, record: AuditRecord) -> None:
        body = record.to_json()
        try:
            await call(
                self.sqs,
                "send_message",
                QueueUrl=self._settings.audit_dlq_url,
                MessageBody=body,
                MessageAttributes={
                    "event_type": {"DataType": "String", "StringValue": record.event_type},
                    "tenant_id": {"DataType": "String", "StringValue": record.tenant_id},
                },
            )
        except Exception as exc:
            # Last copy: the function's log group keeps it, for an operator to replay.
            log.error("audit record unsent to stream and DLQ (%r): %s", exc, body)
            self._metrics.count("AuditUndeliverable")
            return
        self._metrics.count("AuditDeadLettered")

    async def _mirror_write(self, record: AuditRecord) -> None:
        try:
            await self._mirror.write(record)
        except Exception as exc:  # the mirror is a copy: never let it affect the request
            log.warning("cloud logging mirror failed: %r", exc)

    async def _await_mirror(self, task: asyncio.Future[None]) -> None:
        done, _ = await asyncio.wait({task}, timeout=self._mirror_budget)
        if not done:  # past its budget the copy is left to finish on its own
            log.warning("cloud logging mirror still writing after %.1f s; the response ends", self._mirror_budget)
            self._metrics.count("AuditMirrorLate")
            self._mirror_tasks.add(task)  # type: ignore[arg-type]
            task.add_done_callback(self._mirror_tasks.discard)  # type: ignore[arg-type]

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for background mirror writes (shutdown and tests)."""
        if self._mirror_tasks:
            await asyncio.wait(set(self._mirror_tasks), timeout=timeout)
