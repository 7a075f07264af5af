# ruff: noqa: F811  (pytest fixtures imported from audit_helpers are parameters here)
"""The audit writer against a moto server: the cloud handlers (lambda_src/audit_writer/handler.py) and the
local pump and access log write the same bytes through the same functions; what they write reads back with
the DuckDB queries; every put carries a checksum, and the Object Lock bucket refuses one without."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json

import boto3
import pytest
from audit_writer import handler
from audit_writer.writer import Retention
from botocore.config import Config
from botocore.exceptions import ClientError
from gateway.models.audit import AuditRecord

from gatewayctl import auditing as trail
from gatewayctl.local.access_log import access_log_entry, write_access_logs
from gatewayctl.local.pump import Pump
from stacks.audit_queries import NAMED_QUERIES
from stacks.definitions import ACCESS_LOGS_PREFIX, AUDIT_RECORDS_PREFIX
from tests.integration.audit_helpers import (  # noqa: F401  (fixtures)
    REGION,
    FaultyClient,
    audit_moto,
    audit_resources,
    make_exchange,
)

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC).timestamp()


def _locked_bucket(res, suffix: str) -> str:
    s3 = res.client("s3")
    name = f"{res.bucket}-{suffix}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket=name,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    return name


def _records(tenants=("acme", "globex", "acme", "initech")) -> list[bytes]:
    out = []
    for i, tenant in enumerate(tenants):
        ex = make_exchange(tenant=tenant, started_at=T0 + i, input_tokens=10 + i, output_tokens=20 + i)
        out += [(AuditRecord.from_exchange(ex, kind).to_json() + "\n").encode() for kind in ("request", "response")]
    return out


def _environ(bucket: str, mode: str = "GOVERNANCE", days: int = 1) -> dict[str, str]:
    return {"AUDIT_BUCKET": bucket, "AUDIT_OBJECT_LOCK_MODE": mode, "AUDIT_RETENTION_DAYS": str(days)}


def _shard_events(res) -> list[dict]:
    """What Lambda's event source mapping hands the writer: one batch per shard, records in order."""
    kinesis = res.client("kinesis")
    events = []
    for shard in kinesis.list_shards(StreamName=res.stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=res.stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records = kinesis.get_records(ShardIterator=iterator, Limit=1000)["Records"]
        if records:
            events.append(
                {
                    "Records": [
                        {
                            "eventSource": "aws:kinesis",
                            "kinesis": {
                                "data": base64.b64encode(r["Data"]).decode(),
                                "sequenceNumber": r["SequenceNumber"],
                                "partitionKey": r["PartitionKey"],
                            },
                        }
                        for r in records
                    ]
                }
            )
    return events


def _objects(s3, bucket: str, prefix: str) -> list[tuple[str, bytes]]:
    """(folder, body) of every object under `prefix`, sorted: what two writers can be compared on."""
    out = []
    for key in trail.list_keys(s3, bucket, prefix):
        out.append((key.rsplit("/", 1)[0], s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    return sorted(out)


def test_the_pump_and_the_cloud_writer_put_the_same_bytes_and_queries_read_them(audit_resources):
    res = audit_resources
    kinesis, s3 = res.client("kinesis"), res.client("s3")
    for data in _records():
        kinesis.put_record(StreamName=res.stream, Data=data, PartitionKey=json.loads(data)["tenant_id"])

    # Locally: the pump. In the cloud: the Kinesis handler, batch by batch, into another locked bucket.
    assert Pump(kinesis, s3, res.stream, res.bucket).pump_once() == 8
    cloud = _locked_bucket(res, "cloud")
    for event in _shard_events(res):
        assert handler.kinesis_handler(event, s3=s3, environ=_environ(cloud)) == {"batchItemFailures": []}

    local_objects = _objects(s3, res.bucket, AUDIT_RECORDS_PREFIX)
    cloud_objects = _objects(s3, cloud, AUDIT_RECORDS_PREFIX)
    assert local_objects == cloud_objects
    assert {folder for folder, _ in cloud_objects} == {
        f"audit/tenant={t}/dt=2026-11-23" for t in ("acme", "globex", "initech")
    }
    sql = NAMED_QUERIES["usage_by_day"][1]
    for tenant in ("acme", "globex", "initech"):
        local_rows = trail.duckdb_query(s3, res.bucket, sql, [tenant]).dicts()
        cloud_rows = trail.duckdb_query(s3, cloud, sql, [tenant]).dicts()
        assert local_rows == cloud_rows and len(cloud_rows) == 1
    (acme,) = trail.duckdb_query(s3, cloud, sql, ["acme"]).dicts()
    assert (acme["responses"], acme["input_tokens"], acme["output_tokens"]) == (2, 10 + 12, 20 + 22)


def test_records_end_with_exactly_one_newline_and_no_blank_lines(audit_resources):
    res = audit_resources
    s3 = res.client("s3")
    records = _records(("acme",))
    # With and without their newline, a CRLF, blank records and runs of newlines: what a stream may hold.
    ragged = [records[0].rstrip(b"\n"), b"\n\n", records[1].rstrip(b"\n") + b"\r\n\n\n", b""]
    event = {
        "Records": [
            {"kinesis": {"data": base64.b64encode(d).decode(), "sequenceNumber": str(i)}} for i, d in enumerate(ragged)
        ]
    }
    handler.kinesis_handler(event, s3=s3, environ=_environ(res.bucket))
    ((_, body),) = _objects(s3, res.bucket, AUDIT_RECORDS_PREFIX)
    text = gzip.decompress(body)
    assert text.endswith(b"}\n") and b"\n\n" not in text and b"\r" not in text
    assert [json.loads(line)["event_type"] for line in text.split(b"\n")[:-1]] == ["request", "response"]


def _recording(s3):
    """The client's PutObject headers, as sent on the wire."""
    sent: list[dict[str, str]] = []
    s3.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent.append({k.lower(): v for k, v in request.headers.items()})
    )
    return sent


def test_an_object_without_a_checksum_is_refused_and_the_writer_always_sends_one(audit_resources):
    res = audit_resources
    # A client that adds no checksum of its own (botocore's default since 1.36 adds a CRC32).
    plain = boto3.client(
        "s3",
        region_name=REGION,
        endpoint_url=res.endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(request_checksum_calculation="when_required"),
    )
    sent = _recording(plain)
    with pytest.raises(ClientError) as refused:
        plain.put_object(Bucket=res.bucket, Key="audit/tenant=acme/dt=2026-11-23/unchecked.json.gz", Body=b"x")
    # moto enforces S3's rule, under its own error code (S3 answers InvalidRequest, "Content-MD5 OR
    # x-amz-checksum- HTTP header is required for Put Object requests with Object Lock parameters").
    error = refused.value.response["Error"]
    assert error["Code"] in ("InvalidRequest", "MissingUploadObjectWithObjectLockHeaders")
    assert "Content-MD5" in error["Message"]
    assert not any(k.startswith("x-amz-checksum-") or k == "content-md5" for k in sent[-1])

    # The same bare client through the writer: the checksum is explicit, so it is sent and accepted.
    keys = handler.kinesis_handler(
        {"Records": [{"kinesis": {"data": base64.b64encode(_records(("acme",))[0]).decode(), "sequenceNumber": "1"}}]},
        s3=plain,
        environ=_environ(res.bucket),
    )
    assert keys == {"batchItemFailures": []}
    assert sent[-1].get("x-amz-sdk-checksum-algorithm") == "SHA256" or "x-amz-checksum-sha256" in sent[-1]


def test_the_writer_sets_the_retention_it_is_given_not_the_buckets_default(audit_resources):
    res = audit_resources
    s3 = res.client("s3")
    before = dt.datetime.now(dt.UTC)
    event = {
        "Records": [
            {"kinesis": {"data": base64.b64encode(r).decode(), "sequenceNumber": "1"}} for r in _records(("acme",))
        ]
    }
    handler.kinesis_handler(event, s3=s3, environ=_environ(res.bucket, "GOVERNANCE", days=3))
    (key,) = trail.list_keys(s3, res.bucket, AUDIT_RECORDS_PREFIX)
    head = s3.head_object(Bucket=res.bucket, Key=key)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert before + dt.timedelta(days=3) - dt.timedelta(minutes=5) <= until <= before + dt.timedelta(days=3, minutes=5)
    with pytest.raises(ClientError):
        s3.delete_object(Bucket=res.bucket, Key=key, VersionId=head["VersionId"])


def test_a_group_that_fails_is_reported_from_its_first_record_and_the_rest_is_written(audit_resources):
    res = audit_resources
    s3 = FaultyClient(res.client("s3"), lambda op, kw: op == "put_object" and "tenant=globex" in kw["Key"])
    records = _records(("acme", "globex", "acme", "globex"))
    event = {
        "Records": [
            {"kinesis": {"data": base64.b64encode(r).decode(), "sequenceNumber": f"seq-{i:03d}"}}
            for i, r in enumerate(records)
        ]
    }
    result = handler.kinesis_handler(event, s3=s3, environ=_environ(res.bucket))
    # records 2 and 3 are globex's first request and response: Lambda retries the shard from there.
    assert result == {"batchItemFailures": [{"itemIdentifier": "seq-002"}]}
    assert [f for f, _ in _objects(res.client("s3"), res.bucket, AUDIT_RECORDS_PREFIX)] == [
        "audit/tenant=acme/dt=2026-11-23"
    ]


def _entries() -> list[dict[str, str]]:
    return [
        access_log_entry(
            request_id=f"req-{i}", method="POST", path="/v1/messages", status=200, request_time=T0 + i * 3600
        )
        for i in range(3)
    ] + [
        access_log_entry(
            request_id="req-next-day", method="GET", path="/v1/models", status=200, request_time=T0 + 86400
        )
    ]


def test_staged_access_logs_are_written_by_the_same_writer_as_the_local_access_log(audit_resources):
    res = audit_resources
    s3 = res.client("s3")
    entries = _entries()
    # Firehose's staged object: the access-log records concatenated, gzip-compressed.
    staging = f"{res.bucket}-staging"
    s3.create_bucket(Bucket=staging)
    staged = gzip.compress(b"".join(json.dumps(e).encode() for e in entries))
    s3.put_object(Bucket=staging, Key="staged/2026/11/23/10/x.gz", Body=staged)
    cloud = _locked_bucket(res, "cloud")
    event = {
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": staging}, "object": {"key": "staged/2026/11/23/10/x.gz"}},
    }

    result = handler.staged_access_logs_handler(event, s3=s3, environ=_environ(cloud))
    write_access_logs(s3, res.bucket, entries)  # the local stack's access log, same lines

    assert result["lines"] == 4 and len(result["objects"]) == 2
    assert _objects(s3, cloud, ACCESS_LOGS_PREFIX) == _objects(s3, res.bucket, ACCESS_LOGS_PREFIX)
    rows = trail.duckdb_query(s3, cloud, "SELECT request_id, CAST(dt AS VARCHAR) FROM access_logs ORDER BY 1").rows
    assert rows == [
        ("req-0", "2026-11-23"),
        ("req-1", "2026-11-23"),
        ("req-2", "2026-11-23"),
        ("req-next-day", "2026-11-24"),
    ]
    for _, body in _objects(s3, cloud, ACCESS_LOGS_PREFIX):
        for line in gzip.decompress(body).splitlines():
            assert not {"source_ip", "user_agent"} & set(json.loads(line))


def test_retention_from_the_environment_is_both_or_neither():
    assert Retention.from_env({}) is None
    assert Retention.from_env(_environ("b", "COMPLIANCE", 2557)) == Retention("COMPLIANCE", 2557)
    for broken in ({"AUDIT_OBJECT_LOCK_MODE": "GOVERNANCE"}, {**_environ("b"), "AUDIT_OBJECT_LOCK_MODE": "LEGAL"}):
        with pytest.raises(ValueError):
            Retention.from_env(broken)
