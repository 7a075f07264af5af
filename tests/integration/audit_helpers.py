"""Shared pieces of the audit integration tests: a moto server on an ephemeral port, the audit
resources in it (stream, DLQ, Object Lock bucket, tenants and usage tables), clients that inject
faults, and exchanges to record.

Import the fixtures into a test module with `from tests.integration.audit_helpers import *`-style
explicit names; they do not depend on the local stack's own fixtures.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from gateway.domain.catalog import load_catalog
from gateway.models.exchange import (
    Attempt,
    CallerIdentity,
    Exchange,
    MessagesRequest,
    PolicyDecision,
    Principal,
    RequestMeta,
    Usage,
)
from gateway.settings import Settings

from stacks import definitions

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="session")
def audit_moto() -> Iterator[str]:
    """A moto server on 127.0.0.1:<ephemeral>, one per xdist worker; yields its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class AuditResources:
    endpoint: str
    stream: str
    dlq_url: str
    bucket: str
    tenants_table: str
    usage_table: str

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint, **CREDENTIALS)

    def settings(self, **overrides: Any) -> Settings:
        values = {
            "env": "test",
            "region": REGION,
            "tenants_table": self.tenants_table,
            "usage_table": self.usage_table,
            "audit_stream": self.stream,
            "audit_dlq_url": self.dlq_url,
            "bedrock_regions": {"us": ("us-east-1",)},
            **overrides,
        }
        return Settings(**values)


@pytest.fixture
def audit_resources(audit_moto: str) -> AuditResources:
    """Fresh, uniquely named resources per test (the moto server is shared by the worker's tests)."""
    suffix = uuid.uuid4().hex[:10]
    res = AuditResources(
        endpoint=audit_moto,
        stream=f"audit-{suffix}",
        dlq_url="",
        bucket=f"audit-{suffix}",
        tenants_table=f"tenants-{suffix}",
        usage_table=f"usage-{suffix}",
    )
    kinesis = res.client("kinesis")
    kinesis.create_stream(StreamName=res.stream, ShardCount=2)
    res.dlq_url = res.client("sqs").create_queue(QueueName=f"audit-dlq-{suffix}")["QueueUrl"]
    s3 = res.client("s3")
    s3.create_bucket(Bucket=res.bucket, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket=res.bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    ddb = res.client("dynamodb")
    for name, table in ((res.tenants_table, definitions.TENANTS), (res.usage_table, definitions.USAGE)):
        ddb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": table.partition_key, "AttributeType": "S"},
                {"AttributeName": table.sort_key, "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": table.partition_key, "KeyType": "HASH"},
                {"AttributeName": table.sort_key, "KeyType": "RANGE"},
            ],
        )
    return res


class FaultInjected(Exception):
    """What a faulty client raises instead of calling the service."""


class FaultyClient:
    """A real botocore client whose chosen operations fail when `should_fail(operation, kwargs)` says so."""

    def __init__(self, real: Any, should_fail: Callable[[str, dict[str, Any]], bool], *, delay: float = 0.0):
        self._real = real
        self._should_fail = should_fail
        self._delay = delay
        self._lock = threading.Lock()
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(**kwargs: Any) -> Any:
            with self._lock:
                self.calls.append(name)
            if self._delay:
                time.sleep(self._delay)
            if self._should_fail(name, kwargs):
                raise FaultInjected(f"injected fault in {name}")
            return attr(**kwargs)

        return call


def make_exchange(
    *,
    tenant: str = "acme",
    pseudonym: str = "ps-1",
    outcome: str = "response",
    provider: str = "bedrock",
    input_tokens: int = 10,
    output_tokens: int = 20,
    started_at: float | None = None,
    request_id: str | None = None,
) -> Exchange:
    entry = load_catalog().entries[0]
    body = {"model": entry.alias, "max_tokens": 32, "messages": [{"role": "user", "content": "hello"}]}
    started = time.time() if started_at is None else started_at
    ex = Exchange(
        meta=RequestMeta(
            request_id=request_id or str(uuid.uuid4()), source_ip="127.0.0.1", user_agent="test"
        ),
        identity=CallerIdentity("p-" + pseudonym, "user", "c", frozenset(), {}),
        principal=Principal(
            id="p-" + pseudonym, tenant_id=tenant, roles=("basic_user",), pseudonym=pseudonym
        ),
        request=MessagesRequest(
            model=entry.alias,
            max_tokens=32,
            stream=False,
            uses_tools=False,
            has_images=False,
            estimated_input_tokens=5,
            body=body,
            body_sha256=hashlib.sha256(repr(body).encode()).hexdigest(),
        ),
        decision=PolicyDecision(entry=entry, residency="us", body=body),
        started_at=started,
        quota_decision="granted",
    )
    ex.outcome = outcome  # type: ignore[assignment]
    ex.finished_at = started + 0.2
    if outcome == "response":
        ex.attempts = [Attempt(provider, "us-east-1" if provider == "bedrock" else "us-east5", "model-x")]
        ex.served_by = ex.attempts[-1]
        ex.usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
        ex.cost_usd = round((input_tokens * 3 + output_tokens * 15) / 1_000_000, 8)
        ex.status = 200
        ex.first_byte_at = started + 0.1
        ex.response_sha256 = "f" * 64
    elif outcome == "denied":
        ex.status, ex.error_type, ex.quota_decision = 429, "rate_limit_error", "refused:minute"
    else:
        ex.status, ex.error_type = 500, "api_error"
    return ex


def read_stream(kinesis: Any, stream: str) -> list[bytes]:
    """Every record in the stream, from the start of each shard."""
    out: list[bytes] = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        it = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            page = kinesis.get_records(ShardIterator=it, Limit=1000)
            out += [r["Data"] for r in page["Records"]]
            if not page["Records"]:
                break
            it = page.get("NextShardIterator")
    return out
