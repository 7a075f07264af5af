"""`gatewayctl audit replay-failures` through the real CLI, against this worker's stack: a discarded Kinesis
batch is read again from the stream and written with the audit writer; a staged access-log object the
AccessLogWriter failed on is written again; what is gone is reported, and its message kept unless told."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayctl.local.stack import LocalStack
from gatewayctl.local.state import write_state


def _drain(stack: LocalStack) -> None:
    # Not PurgeQueue: it may run once a minute only.
    sqs, url = stack.client("sqs"), stack.outputs["AuditWriterFailuresUrl"]
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def failures(backing_stack: LocalStack) -> Iterator[LocalStack]:
    _drain(backing_stack)
    yield backing_stack
    _drain(backing_stack)


@pytest.fixture
def state_dir(backing_stack: LocalStack, tmp_path: Path) -> Path:
    write_state(tmp_path / "stack.json", backing_stack.state())
    return tmp_path


def _fail(stack: LocalStack, body: dict) -> None:
    stack.client("sqs").send_message(QueueUrl=stack.outputs["AuditWriterFailuresUrl"], MessageBody=json.dumps(body))


def _left(stack: LocalStack) -> int:
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.outputs["AuditWriterFailuresUrl"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def _put_records(stack: LocalStack, tenant: str, count: int) -> list[tuple[str, str, str]]:
    """(event id, shard, sequence number) of each record put, in order, all on one shard (one partition key)."""
    kinesis, stream = stack.client("kinesis"), stack.outputs["AuditStreamName"]
    now = dt.datetime.now(dt.UTC).isoformat()
    out = []
    for _ in range(count):
        event_id = str(uuid.uuid4())
        record = {"event_id": event_id, "tenant_id": tenant, "event_time": now, "record_type": "outcome"}
        put = kinesis.put_record(StreamName=stream, Data=(json.dumps(record) + "\n").encode(), PartitionKey=tenant)
        out.append((event_id, put["ShardId"], put["SequenceNumber"]))
    return out


def _batch_failure(stack: LocalStack, shard: str, start: str, end: str, size: int) -> dict:
    """The on-failure record Lambda sends for a discarded Kinesis batch (its documented shape)."""
    stream = stack.outputs["AuditStreamName"]
    return {
        "requestContext": {"requestId": str(uuid.uuid4()), "condition": "RetryAttemptsExhausted"},
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": dt.datetime.now(dt.UTC).isoformat(),
        "KinesisBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": start,
            "endSequenceNumber": end,
            "batchSize": size,
            "streamArn": f"arn:aws:kinesis:{stack.options.region}:123456789012:stream/{stream}",
        },
    }


def _written_event_ids(stack: LocalStack, tenant: str) -> list[str]:
    s3, bucket = stack.client("s3"), stack.outputs["AuditBucketName"]
    ids = []
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"audit/tenant={tenant}/").get("Contents", [])
    for item in listed:
        body = gzip.decompress(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
        ids += [json.loads(line)["event_id"] for line in body.splitlines()]
        head = s3.head_object(Bucket=bucket, Key=item["Key"])
        assert head["ObjectLockMode"] == stack.options.object_lock_mode
    return ids


def test_a_discarded_batch_is_written_again_from_the_stream(failures, state_dir, run_gatewayctl):
    # Given five records on the stream, of which the writer gave up on the middle three
    tenant = f"replay-{uuid.uuid4().hex[:8]}"
    records = _put_records(failures, tenant, 5)
    (_, shard, start), (_, _, end) = records[1], records[3]
    _fail(failures, _batch_failure(failures, shard, start, end, 3))

    # When the operator replays the queue
    result = run_gatewayctl(state_dir, "--json", "audit", "replay-failures")

    # Then exactly those three are in the bucket, locked, and the message is gone
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)
    assert row["kind"] == "stream" and row["outcome"] == "replayed" and row["records"] == 3 and row["deleted"]
    assert sorted(_written_event_ids(failures, tenant)) == sorted(r[0] for r in records[1:4])
    assert _left(failures) == 0


def test_a_dry_run_writes_and_deletes_nothing(failures, state_dir, run_gatewayctl):
    tenant = f"replay-{uuid.uuid4().hex[:8]}"
    [(_, shard, seq)] = _put_records(failures, tenant, 1)
    _fail(failures, _batch_failure(failures, shard, seq, seq, 1))

    result = run_gatewayctl(state_dir, "--json", "audit", "replay-failures", "--dry-run")

    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)
    assert row["records"] == 1 and "dry run" in row["detail"] and not row["deleted"]
    assert _written_event_ids(failures, tenant) == []
    assert _left(failures) == 1


def test_what_the_stream_no_longer_holds_is_reported_and_kept(failures, state_dir, run_gatewayctl):
    # Given a failure naming a shard the stream does not have (resharded away, or aged out)
    _fail(failures, _batch_failure(failures, "shardId-000000000099", "1", "2", 2))
    _fail(failures, {"something": "else"})

    result = run_gatewayctl(state_dir, "--json", "audit", "replay-failures")

    assert result.returncode == 1
    rows = {r["kind"]: r for r in json.loads(result.stdout)}
    assert rows["stream"]["outcome"] == "lost" and "no longer holds them" in rows["stream"]["detail"]
    assert rows["?"]["outcome"] == "unrecognized"
    assert not any(r["deleted"] for r in rows.values())
    assert _left(failures) == 2

    # and --forget-lost deletes the lost one after reporting it, never the unrecognized one
    forgot = run_gatewayctl(state_dir, "--json", "audit", "replay-failures", "--forget-lost")
    assert forgot.returncode == 1
    assert {r["kind"]: r["deleted"] for r in json.loads(forgot.stdout)} == {"stream": True, "?": False}


def test_a_staged_access_log_is_written_again_and_an_expired_one_reported(failures, state_dir, run_gatewayctl):
    # Given a staged access-log object (as Firehose leaves it) the AccessLogWriter failed on, and one expired
    s3 = failures.client("s3")
    staging = f"staging-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=staging)
    request_id = str(uuid.uuid4())
    millis = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    line = {"request_id": request_id, "request_time": millis, "status": 200, "http_method": "POST"}
    s3.put_object(Bucket=staging, Key="staged/one.gz", Body=gzip.compress(json.dumps(line).encode()))
    for key in ("staged/one.gz", "staged/expired.gz"):
        event = {"detail-type": "Object Created", "detail": {"bucket": {"name": staging}, "object": {"key": key}}}
        _fail(failures, {"requestPayload": event, "requestContext": {"condition": "RetriesExhausted"}})

    result = run_gatewayctl(state_dir, "--json", "audit", "replay-failures")

    assert result.returncode == 1
    rows = {r["source"]: r for r in json.loads(result.stdout)}
    replayed, expired = rows[f"s3://{staging}/staged/one.gz"], rows[f"s3://{staging}/staged/expired.gz"]
    assert (replayed["outcome"], replayed["records"], replayed["deleted"]) == ("replayed", 1, True)
    assert (expired["outcome"], expired["deleted"]) == ("lost", False)
    day = dt.datetime.fromtimestamp(millis / 1000, dt.UTC).strftime("%Y-%m-%d")
    bucket = failures.outputs["AuditBucketName"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"access-logs/dt={day}/").get("Contents", [])]
    bodies = [gzip.decompress(s3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys]
    assert any(request_id.encode() in body for body in bodies)
