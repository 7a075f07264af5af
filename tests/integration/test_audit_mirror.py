"""The Cloud Logging mirror against a loopback fake of the Logging API (entries:write): Vertex-served
records are mirrored, others are not; the copy is awaited within its budget and never fails the audit write."""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import anthropic
import pytest
from gateway.adapters.cloud_logging import LOG_ID, CloudLoggingMirror
from gateway.adapters.kinesis_audit import KinesisAuditSink
from gateway.models.audit import AuditRecord
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gatewayctl.local.servers import ThreadedServer, bind, port_of
from tests.integration.audit_helpers import REGION, make_exchange

pytestmark = pytest.mark.integration


class FakeLogging:
    """entries:write on loopback: records what it was sent; can fail or be slow on demand."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.status = 200
        self.delay = 0.0
        self.lock = threading.Lock()
        self.app = Starlette(routes=[Route("/v2/entries:write", self.write, methods=["POST"])])

    async def write(self, request: Request) -> JSONResponse:
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            self.calls.append({"auth": request.headers.get("authorization"), "body": await request.json()})
        if self.status != 200:
            return JSONResponse(
                {"error": {"code": self.status, "message": "injected"}}, status_code=self.status
            )
        return JSONResponse({})

    @property
    def entries(self) -> list[dict[str, Any]]:
        with self.lock:
            return [e for c in self.calls for e in c["body"]["entries"]]


@pytest.fixture
def fake_logging() -> Iterator[tuple[FakeLogging, str]]:
    fake = FakeLogging()
    sock = bind(0)
    server = ThreadedServer(fake.app, [sock], name="fake-cloud-logging").start()
    yield fake, f"http://127.0.0.1:{port_of(sock)}"
    server.stop()


class StaticCredentials:
    valid = True
    token = "ya29.test-token"


class NullKinesis:
    def __init__(self) -> None:
        self.puts = 0

    def put_record(self, **kwargs: Any) -> dict[str, Any]:
        self.puts += 1
        return {"ShardId": "shard-0", "SequenceNumber": "1"}


def settings_for(endpoint: str):
    from gateway.settings import Settings

    return Settings(
        env="test",
        region=REGION,
        tenants_table="t",
        usage_table="u",
        audit_stream="s",
        audit_dlq_url="q",
        bedrock_regions={"us": ("us-east-1",)},
        vertex_project="gcp-proj",
        vertex_regions={"us": "us-east5"},
        audit_mirror_cloud_logging=True,
        cloud_logging_endpoint=endpoint,
    )


def sink_with_mirror(endpoint: str) -> tuple[KinesisAuditSink, NullKinesis]:
    settings = settings_for(endpoint)
    kinesis = NullKinesis()
    mirror = CloudLoggingMirror(settings, credentials=StaticCredentials())
    return KinesisAuditSink(settings, kinesis=kinesis, sqs=object(), mirror=mirror), kinesis


def test_vertex_served_records_are_mirrored_and_bedrock_ones_are_not(fake_logging):
    fake, url = fake_logging
    sink, kinesis = sink_with_mirror(url)
    vertex = make_exchange(provider="vertex", tenant="acme")
    bedrock = make_exchange(provider="bedrock", tenant="acme")

    async def run():
        await sink.record_outcome(vertex)
        await sink.record_outcome(bedrock)
        await sink.drain()

    asyncio.run(run())
    assert kinesis.puts == 2  # both reach the trail itself
    (entry,) = fake.entries
    assert fake.calls[0]["auth"] == "Bearer ya29.test-token"
    body = fake.calls[0]["body"]
    assert body["logName"] == f"projects/gcp-proj/logs/{LOG_ID}"
    assert body["resource"] == {"type": "global", "labels": {"project_id": "gcp-proj"}}
    expected = AuditRecord.from_exchange(vertex, "response")
    assert entry["jsonPayload"] == expected.to_dict()
    assert entry["insertId"] == expected.event_id and entry["timestamp"] == expected.event_time
    assert entry["labels"] == {
        "tenant_id": "acme",
        "event_type": "response",
        "request_id": vertex.meta.request_id,
    }


def test_a_failing_mirror_never_fails_the_audit_write_and_a_slow_one_is_awaited_within_its_budget(fake_logging):
    """The copy is written before record_outcome returns (the response ends after it: a frozen Lambda
    would lose a write still in flight), but never for longer than its budget, and never fails the put."""
    fake, url = fake_logging
    sink, kinesis = sink_with_mirror(url)
    sink._mirror_budget = 1.5

    async def run() -> tuple[float, int, float]:
        fake.status = 500
        await sink.record_outcome(make_exchange(provider="vertex"))  # no exception
        assert kinesis.puts == 1 and len(fake.calls) == 1
        fake.status, fake.delay = 200, 0.5
        before = len(fake.entries)
        started = time.perf_counter()
        await sink.record_outcome(make_exchange(provider="vertex"))
        awaited = time.perf_counter() - started
        delivered = len(fake.entries) - before  # already there when record_outcome returned
        fake.delay = 5.0
        started = time.perf_counter()
        await sink.record_outcome(make_exchange(provider="vertex"))
        capped = time.perf_counter() - started
        return awaited, delivered, capped

    awaited, delivered, capped = asyncio.run(run())
    assert awaited >= 0.5 and delivered == 1, "record_outcome returned before the mirror's write"
    assert capped < 4.0, f"record_outcome waited {capped:.2f}s for a mirror past its budget"
    assert kinesis.puts == 3


def test_the_sink_builds_the_mirror_only_when_the_environment_turns_it_on(fake_logging):
    _, url = fake_logging
    on = settings_for(url)
    assert isinstance(KinesisAuditSink(on)._mirror, CloudLoggingMirror)
    assert KinesisAuditSink(replace(on, audit_mirror_cloud_logging=False))._mirror is None


def test_through_the_app_a_vertex_served_request_is_mirrored_with_wif_credentials(
    local_stack, make_tenant, make_user, faults, fake_logging
):
    """Every Bedrock region fails, Vertex serves; the app's own sink (built from settings) mirrors the
    record with a token from the emulated Google STS (Workload Identity Federation)."""
    from gateway.app import create_app

    fake, url = fake_logging
    settings = replace(local_stack.settings(), audit_mirror_cloud_logging=True, cloud_logging_endpoint=url)
    authorizer = copy.copy(local_stack.authorizer)
    authorizer.app = create_app(settings)
    sock = bind(0)
    server = ThreadedServer(authorizer, [sock], name="mirror-gateway").start()
    try:
        tenant = make_tenant()
        user = make_user(tenant)
        faults.set_fault("us-east-1", "error", status=503)
        faults.set_fault("us-west-2", "error", status=503)
        client = anthropic.Anthropic(
            base_url=f"http://127.0.0.1:{port_of(sock)}", auth_token=user.token, max_retries=0
        )
        reply = client.messages.create(
            model="claude-haiku-4-5", max_tokens=32, messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.content
        deadline = time.monotonic() + 10
        while not fake.entries and time.monotonic() < deadline:
            time.sleep(0.1)
        (entry,) = [e for e in fake.entries if e["labels"]["tenant_id"] == tenant]
        payload = entry["jsonPayload"]
        assert payload["provider"] == "vertex" and payload["event_type"] == "response"
        assert payload["output_tokens"] == reply.usage.output_tokens
        assert fake.calls[-1]["auth"].startswith("Bearer ") and len(fake.calls[-1]["auth"]) > len("Bearer ")
        assert user.sub not in str(entry)
    finally:
        server.stop()
