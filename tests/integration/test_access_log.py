"""The local stack's access-log stage (gatewayctl/local/access_log.py): the witness line is written off
the request path, batched, and never lost when the writer closes; the stack serves it."""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

import anthropic
import pytest

from gatewayctl import auditing as trail
from gatewayctl.local.access_log import AccessLogMiddleware, AccessLogWriter, access_log_entry
from gatewayctl.local.servers import ThreadedServer, bind, port_of
from stacks.definitions import ACCESS_LOGS_PREFIX


class SlowS3:
    """The real S3 client, with every put_object taking `delay` seconds longer (counted), or, with
    `held`, not returning until the test sets it."""

    def __init__(self, real: Any, delay: float, *, fail: bool = False, held: threading.Event | None = None) -> None:
        self._real, self.delay, self.fail, self.held = real, delay, fail, held
        self.puts = 0
        self._lock = threading.Lock()

    def put_object(self, **kwargs: Any) -> Any:
        if self.held is not None:
            self.held.wait(120)
        time.sleep(self.delay)
        with self._lock:
            self.puts += 1
        if self.fail:
            raise ConnectionError("S3 is down")
        return self._real.put_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def logged_ids(stack) -> set[str]:
    result = trail.duckdb_query(
        stack.client("s3"), stack.outputs["AuditBucketName"], "SELECT request_id FROM access_logs"
    )
    return {row[0] for row in result.rows}


def test_the_stack_serves_the_access_log_stage(local_stack):
    assert local_stack.access_log is not None
    assert local_stack.access_log.app is local_stack.authorizer
    with pytest.raises(anthropic.AuthenticationError) as refused:
        anthropic.Anthropic(base_url=local_stack.endpoint, auth_token="nope", max_retries=0).messages.create(
            model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert local_stack.access_log.writer.flush(10)
    assert refused.value.response.headers["request-id"] in logged_ids(local_stack)


def test_a_slow_s3_adds_no_latency_and_lines_are_batched(local_stack, make_tenant, make_user):
    """Concurrent clients while every S3 put is held: all their requests complete (none waits for a put,
    nor for an event-loop executor thread that a put holds: the app's DynamoDB and Kinesis calls need
    them), and the lines queued meanwhile go out together once the puts are let through."""
    clients, each = 4, 4
    held = threading.Event()
    slow = SlowS3(local_stack.client("s3"), 0.0, held=held)
    staged = AccessLogMiddleware(copy.copy(local_stack.authorizer), slow, local_stack.outputs["AuditBucketName"])
    sock = bind(0)
    server = ThreadedServer(staged, [sock], name="access-log-test").start()
    user = make_user(make_tenant())
    ids: list[str] = []

    def run(index: int) -> None:
        client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port_of(sock)}", auth_token=user.token, max_retries=0)
        for i in range(each):
            raw = client.messages.with_raw_response.create(
                model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": f"{index}-{i}"}]
            )
            ids.append(raw.headers["request-id"])

    try:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        # Every request answered while no put could finish: none waited for one.
        finished_while_held = [thread.is_alive() for thread in threads].count(False)
        held.set()
        assert staged.writer.flush(30)
    finally:
        held.set()
        server.stop()
        staged.writer.close()

    assert finished_while_held == clients and len(ids) == clients * each
    assert set(ids) <= logged_ids(local_stack)
    assert slow.puts < len(ids)  # the lines that queued during a slow put went out together


def test_close_writes_what_is_queued_and_a_failing_s3_is_reported_not_hung(local_stack, capsys):
    bucket = local_stack.outputs["AuditBucketName"]
    writer = AccessLogWriter(SlowS3(local_stack.client("s3"), 0.2), bucket)
    entries = [
        access_log_entry(
            request_id=f"queued-{i}-{time.time_ns()}",
            method="GET",
            path="/v1/models",
            status=200,
        )  # fmt: skip
        for i in range(3)
    ]
    for entry in entries:
        writer.submit(entry)
    writer.close()
    assert {e["request_id"] for e in entries} <= logged_ids(local_stack)
    late = access_log_entry(request_id=f"late-{time.time_ns()}", method="GET", path="/", status=200)
    writer.submit(late)  # after close (a request finishing while the stack stops): written, not lost
    assert late["request_id"] in logged_ids(local_stack)

    failing = AccessLogWriter(SlowS3(local_stack.client("s3"), 0.0, fail=True), bucket, retries=2)
    failing.submit(access_log_entry(request_id="lost-1", method="GET", path="/", status=200))
    assert failing.flush(10)
    failing.close()
    assert "access log: 1 line(s) not written (lost-1" in capsys.readouterr().err
    keys = list(trail.list_keys(local_stack.client("s3"), bucket, ACCESS_LOGS_PREFIX))
    assert keys  # the earlier lines are there; the failed one is not
    assert "lost-1" not in logged_ids(local_stack)
