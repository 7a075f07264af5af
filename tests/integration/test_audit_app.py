"""The audit path through the app: the local stack (moto, Cognito tokens, Bedrock emulator, the
gateway behind the local authorizer), the anthropic SDK as the client, faults injected into the
app's real Kinesis client, the pump, and `gatewayctl audit query|verify` reading the result."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import pytest
from gateway.adapters.aws import client as botocore_client
from gateway.adapters.kinesis_audit import KinesisAuditSink
from gateway.domain.catalog import load_catalog

from gatewayctl import auditing as trail
from gatewayctl import target as target_module
from gatewayctl.cli import main
from gatewayctl.local.access_log import AccessLogMiddleware
from gatewayctl.local.pump import Pump, drain_dlq
from gatewayctl.local.servers import ThreadedServer, bind, port_of
from tests.integration.audit_helpers import FaultyClient

pytestmark = pytest.mark.integration

MODEL = "claude-haiku-4-5"
_pumps: dict[str, Pump] = {}  # one per stream in this worker, so records are moved exactly once


def pump(stack) -> int:
    stream, bucket = stack.outputs["AuditStreamName"], stack.outputs["AuditBucketName"]
    if stream not in _pumps:
        _pumps[stream] = Pump(stack.client("kinesis"), stack.client("s3"), stream, bucket)
    return _pumps[stream].pump_once()


@pytest.fixture
def serve(local_stack) -> Iterator[Callable[..., str]]:
    """Serve an app behind (a copy of) the stack's authorizer and the access-log stage; returns the URL."""
    servers: list[ThreadedServer] = []

    def start(app: Any = None) -> str:
        authorizer = copy.copy(local_stack.authorizer)
        if app is not None:
            authorizer.app = app
        staged = AccessLogMiddleware(
            authorizer, local_stack.client("s3"), local_stack.outputs["AuditBucketName"]
        )
        sock = bind(0)
        servers.append(ThreadedServer(staged, [sock], name="audit-test-gateway").start())
        return f"http://127.0.0.1:{port_of(sock)}"

    yield start
    for server in servers:
        server.stop()


def app_with(stack, *, kinesis: Any = None, quota: Any = None, retry_delays=(0.01, 0.02, 0.04)):
    from gateway.app import create_app

    settings = stack.settings()
    real = botocore_client("kinesis", settings.region)
    sink = KinesisAuditSink(settings, kinesis=kinesis(real) if kinesis else real, retry_delays=retry_delays)
    return create_app(settings, audit=sink, quota=quota), sink


def sdk(url: str, token: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, auth_token=token, max_retries=0)


def ask(client: anthropic.Anthropic, *, stream: bool = False, model: str = MODEL):
    kwargs = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "Say hello"}]}
    if stream:
        with client.messages.stream(**kwargs) as s:
            return s.get_final_message()
    return client.messages.create(**kwargs)


def records(stack, tenants: list[str]) -> list[dict[str, Any]]:
    marks = ", ".join("?" for _ in tenants)
    sql = f"SELECT * FROM audit_events WHERE tenant IN ({marks}) ORDER BY event_time"
    return trail.duckdb_query(stack.client("s3"), stack.outputs["AuditBucketName"], sql, tenants).dicts()


def wait_for(stack, tenants: list[str], outcomes: int, *, timeout: float = 20.0, dlq: bool = False):
    """Pump (and redrive the DLQ) until the tenants have `outcomes` outcome records; returns all records."""
    deadline = time.monotonic() + timeout
    while True:
        if dlq:
            drain_dlq(stack.client("sqs"), stack.outputs["AuditDlqUrl"], stack.client("kinesis"),
                      stack.outputs["AuditStreamName"])  # fmt: skip
        pump(stack)
        found = records(stack, tenants)
        if sum(r["event_type"] != "request" for r in found) >= outcomes or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def upstream_calls(stack) -> int:
    return sum(c.get("total", 0) for c in stack.request_counts().values())


def test_n_requests_from_several_tenants_leave_n_request_and_n_outcome_records(
    local_stack, make_tenant, make_user, serve, monkeypatch, capsys
):
    url = serve()
    tenants = [make_tenant() for _ in range(3)]
    users = {t: make_user(t) for t in tenants}
    catalog = load_catalog()
    entry = catalog.lookup(MODEL)
    expected: dict[str, dict[str, float]] = {
        t: {"n": 0, "input": 0, "output": 0, "usd": 0.0} for t in tenants
    }
    ids = []
    for i in range(9):
        tenant = tenants[i % 3]
        with sdk(url, users[tenant].token) as client:
            reply = ask(client, stream=i % 2 == 1)
        u = reply.usage
        e = expected[tenant]
        e["n"] += 1
        e["input"] += u.input_tokens
        e["output"] += u.output_tokens
        e["usd"] += entry.cost_usd(
            "us", "bedrock", input_tokens=u.input_tokens, output_tokens=u.output_tokens,
            cache_read_tokens=u.cache_read_input_tokens or 0,
            cache_write_tokens=u.cache_creation_input_tokens or 0, geo_uplift=catalog.geo_uplift,
        )  # fmt: skip
        ids.append(reply.id)

    found = wait_for(local_stack, tenants, 9)
    assert sorted(r["event_type"] for r in found) == ["request"] * 9 + ["response"] * 9
    assert len({r["event_id"] for r in found}) == 18
    by_request: dict[str, set[str]] = {}
    for r in found:
        by_request.setdefault(r["request_id"], set()).add(r["event_type"])
    assert len(by_request) == 9 and all(v == {"request", "response"} for v in by_request.values())

    # `gatewayctl audit query` (DuckDB locally) returns the right tenants, token counts and costs.
    monkeypatch.setattr(target_module, "resolve", lambda args: local_stack.target())
    for tenant in tenants:
        capsys.readouterr()
        assert main(["--json", "audit", "query", "--named", "usage_by_day", "--param", tenant]) == 0
        (row,) = json.loads(capsys.readouterr().out)
        assert row["tenant"] == tenant and row["responses"] == expected[tenant]["n"] == 3
        assert row["input_tokens"] == expected[tenant]["input"]
        assert row["output_tokens"] == expected[tenant]["output"]
        assert row["cost_usd"] == pytest.approx(expected[tenant]["usd"], abs=1e-6)
    # Every record names the tenant and a pseudonym, never the user.
    for r in found:
        assert r["principal"] and users[r["tenant"]].sub not in json.dumps(r, default=str)
        assert r["tenant_id"] == r["tenant"]

    # The access-log witness and the trail agree; every object is under Object Lock.
    today = dt.datetime.now(dt.UTC).date()
    capsys.readouterr()
    code = main(["--json", "audit", "verify", "--from", today.isoformat()])
    report = json.loads(capsys.readouterr().out)
    mine = {r["request_id"] for r in found}
    assert not [m for m in report["missing"] if m["request_id"] in mine]
    assert not [m for m in report["extra"] if m["request_id"] in mine]
    assert not report["unlocked"] and report["witnessed"] >= 9
    assert code in (0, 1)  # other tests in this worker share the bucket; this test's requests are whole


def test_request_record_failure_is_a_503_and_the_model_is_never_called(
    local_stack, make_tenant, make_user, serve, faults
):
    def request_puts_fail(op: str, kw: dict[str, Any]) -> bool:
        return op == "put_record" and b'"event_type":"request"' in kw["Data"]

    app, _ = app_with(local_stack, kinesis=lambda real: FaultyClient(real, request_puts_fail))
    url = serve(app)
    tenant = make_tenant()
    user = make_user(tenant)
    before = upstream_calls(faults)
    with sdk(url, user.token) as client, pytest.raises(anthropic.APIStatusError) as refused:
        ask(client)
    assert refused.value.status_code == 503
    assert upstream_calls(faults) == before
    with sdk(url, user.token) as client, pytest.raises(anthropic.APIStatusError):
        ask(client, stream=True)
    assert upstream_calls(faults) == before


def test_outcome_failures_go_to_the_dlq_and_a_redrive_loses_nothing(
    local_stack, make_tenant, make_user, serve
):
    rng = random.Random(5)
    app, _ = app_with(
        local_stack,
        kinesis=lambda real: FaultyClient(
            real, lambda op, kw: b'"event_type":"request"' not in kw.get("Data", b"") and rng.random() < 0.7
        ),
    )
    url = serve(app)
    tenant = make_tenant()
    user = make_user(tenant)
    sqs = local_stack.client("sqs")
    n = 12
    with sdk(url, user.token) as client:
        for i in range(n):
            ask(client, stream=i % 3 == 0)
    # Before any redrive: some outcome records are in the DLQ, none lost from stream + DLQ.
    deadline = time.monotonic() + 15
    dead: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        for m in sqs.receive_message(QueueUrl=local_stack.outputs["AuditDlqUrl"], MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            body = json.loads(m["Body"])
            if body["tenant_id"] == tenant:
                dead.append(body)
            # Put it back for the redrive (visibility 0), whoever's it is.
            sqs.change_message_visibility(
                QueueUrl=local_stack.outputs["AuditDlqUrl"],
                ReceiptHandle=m["ReceiptHandle"],
                VisibilityTimeout=0,
            )
        if dead:
            break
        time.sleep(0.2)
    assert dead and {d["event_type"] for d in dead} == {"response"}
    found = wait_for(local_stack, [tenant], n, dlq=True)
    counts = {t: sum(r["event_type"] == t for r in found) for t in ("request", "response")}
    assert counts == {"request": n, "response": n}
    assert len({r["event_id"] for r in found}) == 2 * n


def test_every_refusal_past_the_authorizer_has_a_denied_record(local_stack, make_tenant, make_user, serve):
    url = serve()
    tenant = make_tenant(limits={"requests_per_minute": 2})
    user = make_user(tenant)  # basic_user: no opus
    statuses = []
    with sdk(url, user.token) as client:
        for model in ("claude-opus-4-5", MODEL, MODEL, MODEL):
            try:
                ask(client, model=model)
                statuses.append(200)
            except anthropic.APIStatusError as exc:
                statuses.append(exc.status_code)
    assert statuses[0] == 403 and 429 in statuses
    refused = sum(s in (403, 429) for s in statuses)
    found = wait_for(local_stack, [tenant], len(statuses))
    denied = [r for r in found if r["event_type"] == "denied"]
    assert len(denied) == refused
    assert {r["status"] for r in denied} == {403, 429}
    assert any((r["quota_decision"] or "").startswith("refused") for r in denied if r["status"] == 429)
    assert sum(r["event_type"] == "response" for r in found) == statuses.count(200)
    # The authorizer's own refusals never reach the gateway: no record, and verify expects none.
    with pytest.raises(anthropic.AuthenticationError) as unauthorized:
        ask(sdk(url, "not-a-token"))
    rid = unauthorized.value.response.headers["request-id"]
    s3, bucket = local_stack.client("s3"), local_stack.outputs["AuditBucketName"]
    logged = trail.duckdb_query(
        s3, bucket, "SELECT status, error_type FROM access_logs WHERE request_id = ?", [rid]
    )
    assert logged.rows == [("401", "UNAUTHORIZED")]
    today = dt.datetime.now(dt.UTC).date()
    report = trail.verify(s3, bucket, today, today)
    assert rid not in {m["request_id"] for m in report.missing}
    assert not {m["request_id"] for m in report.missing} & {r["request_id"] for r in found}


class Spans:
    """When each slowed call ran (monotonic start and end), from any thread."""

    def __init__(self) -> None:
        self.spans: dict[str, list[tuple[float, float]]] = {}
        self._lock = threading.Lock()

    def add(self, name: str, started: float) -> None:
        with self._lock:
            self.spans.setdefault(name, []).append((started, time.monotonic()))


class SlowQuota:
    """Delays the reservation and records when it ran."""

    def __init__(self, real: Any, delay: float, spans: Spans) -> None:
        self._real, self._delay, self._spans = real, delay, spans

    async def reserve(self, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            await asyncio.sleep(self._delay)
            return await self._real.reserve(*args, **kwargs)
        finally:
            self._spans.add("reserve", started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class SlowKinesis:
    """Delays every put and records when it ran."""

    def __init__(self, real: Any, delay: float, spans: Spans) -> None:
        self._real, self._delay, self._spans = real, delay, spans

    def put_record(self, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            time.sleep(self._delay)
            return self._real.put_record(**kwargs)
        finally:
            self._spans.add("put_record", started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_audit_write_adds_no_serial_round_trip(local_stack, make_tenant, make_user, serve):
    """The reservation and the request record run at the same time, whatever the machine's speed:
    with both slowed, the request record's put starts before the reservation ends, and the other way."""
    from gateway.app import dynamo_services

    delay = 0.5
    spans = Spans()
    settings = local_stack.settings()
    slow_app, _ = app_with(
        local_stack,
        kinesis=lambda real: SlowKinesis(real, delay, spans),
        quota=SlowQuota(dynamo_services(settings, load_catalog())[1], delay, spans),
    )
    slow = serve(slow_app)
    tenant = make_tenant()
    user = make_user(tenant)
    with sdk(slow, user.token) as client:
        ask(client)

    [reserve] = spans.spans["reserve"]
    request_put = spans.spans["put_record"][0]  # the request record; the outcome record comes after
    assert request_put[0] < reserve[1] and reserve[0] < request_put[1], spans.spans
