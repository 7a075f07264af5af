"""The local stack's API Gateway access log: an independent witness of every request id.

In the cloud, API Gateway writes one JSON line per request (the stack's format holds every field of
stacks.audit_queries.ACCESS_LOG_FORMAT), Firehose stages it, and the audit writer Lambda writes it under
access-logs/dt=<date>/. Locally, `AccessLogMiddleware` (in front of the local authorizer) records one line
per request with the same fields and writes it with the same writer (`audit_writer.write_access_logs`),
so `gatewayctl audit verify` has the same witness to join against. No line holds the caller's address or
user agent: the bucket is immutable, and those identify a person.

The line is written off the request path, as API Gateway's own access logging is: the middleware
hands it to an `AccessLogWriter` (one thread, which writes whatever has queued up as one object per
day), so no request waits for S3 and no S3 put takes one of the event loop's executor threads, which
the app's DynamoDB and Kinesis calls need. `LocalStack.stop()` closes the writer, which writes what
is still queued first, so nothing is lost when the local stack stops.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from audit_writer import writer

from stacks.audit_queries import ACCESS_LOG_FORMAT


def access_log_entry(
    *,
    request_id: str,
    method: str,
    path: str,
    status: int,
    response_length: int = 0,
    error_type: str = "",
    integration_status: str = "",
    request_time: float | None = None,
) -> dict[str, str]:
    """One access-log line as API Gateway renders ACCESS_LOG_FORMAT (every value a string, '-' when empty)."""
    values = {
        "request_id": request_id,
        "request_time": str(int((request_time if request_time is not None else time.time()) * 1000)),
        "http_method": method,
        "resource_path": path,
        "status": str(status),
        "response_length": str(response_length),
        "integration_status": integration_status,
        "error_type": error_type,
    }
    assert values.keys() == ACCESS_LOG_FORMAT.keys(), "keep in step with ACCESS_LOG_FORMAT"
    return {k: (v if v != "" else "-") for k, v in values.items()}


def write_access_log(s3: Any, bucket: str, **fields: Any) -> str:
    """Write one access-log line for a request (fields: those of `access_log_entry`); returns the key."""
    (key,) = write_access_logs(s3, bucket, [access_log_entry(**fields)])
    return key


def write_access_logs(s3: Any, bucket: str, entries: Iterable[dict[str, str]]) -> list[str]:
    """Write access-log lines (from `access_log_entry`) with the audit writer, one object per UTC day;
    returns the keys (access-logs/dt=<yyyy-mm-dd>/<name>.gz, the layout the cloud writer uses)."""
    lines = [json.dumps(e, separators=(",", ":")).encode() for e in entries]
    return writer.write_access_logs(s3, bucket, lines)


class AccessLogWriter:
    """One thread that writes queued access-log lines; what queued up while it wrote goes in one batch.

    `submit` never blocks (once the writer is closed, it writes the line itself). `flush` waits
    until everything submitted so far is in S3 (tests, the demo); `close` flushes and stops the
    thread. A batch that cannot be written is retried a few times, then reported on stderr:
    `audit verify` would then show those requests as unwitnessed.
    """

    def __init__(self, s3: Any, bucket: str, *, max_batch: int = 500, retries: int = 3) -> None:
        self.s3, self.bucket, self.max_batch, self.retries = s3, bucket, max_batch, retries
        self._queue: list[dict[str, str]] = []
        self._pending = 0  # submitted, not yet written (or given up on)
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, entry: dict[str, str]) -> None:
        with self._cond:
            closed = self._closed
            if not closed:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="access-log-writer", daemon=True)
                    self._thread.start()
                self._queue.append(entry)
                self._pending += 1
                self._cond.notify_all()
        if closed:  # a request that finished while the stack stopped: written here, not lost
            self._write([entry])

    def flush(self, timeout: float = 10.0) -> bool:
        """True once every line submitted so far is written (or given up on)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if not self._queue:
                    return  # closed and drained
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            self._write(batch)
            with self._cond:
                self._pending -= len(batch)
                self._cond.notify_all()

    def _write(self, batch: list[dict[str, str]]) -> None:
        for attempt in range(self.retries):
            try:
                write_access_logs(self.s3, self.bucket, batch)
                return
            except Exception as exc:  # noqa: BLE001 - the writer must outlive a failed put
                error = exc
                time.sleep(0.1 * 2**attempt)
        ids = ", ".join(e["request_id"] for e in batch[:5])
        print(f"access log: {len(batch)} line(s) not written ({ids} ...): {error!r}", file=sys.stderr)


class AccessLogMiddleware:
    """Wraps the local authorizer as the API Gateway stage wraps everything: one access-log line per
    request, whether the authorizer refused it or the app answered it.

    The local stack serves `AccessLogMiddleware(authorizer, s3, bucket)` (gatewayctl/local/stack.py).
    The request id is the one the authorizer put on the response (`request-id`), the same id the app
    audits, as $context.requestId is in the cloud. The line is handed to `self.writer` once the
    response is finished; call `self.writer.flush()` to wait for it, `close()` when done.
    """

    def __init__(self, app: Any, s3: Any, bucket: str, *, writer: AccessLogWriter | None = None) -> None:
        self.app = app
        self.s3 = s3
        self.bucket = bucket
        self.writer = writer or AccessLogWriter(s3, bucket)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.time()
        seen: dict[str, Any] = {"status": 500, "request_id": "", "length": 0}

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() in (b"request-id", b"x-amzn-requestid") and not seen["request_id"]:
                        seen["request_id"] = value.decode()
            elif message["type"] == "http.response.body":
                seen["length"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            self.writer.submit(
                access_log_entry(
                    request_id=seen["request_id"] or f"unanswered-{uuid.uuid4()}",
                    method=scope["method"],
                    path=scope["path"],
                    status=seen["status"],
                    response_length=seen["length"],
                    # The local authorizer answers 401 itself, as API Gateway's Cognito authorizer does.
                    error_type="UNAUTHORIZED" if seen["status"] == 401 else "",
                    request_time=started,
                )
            )
