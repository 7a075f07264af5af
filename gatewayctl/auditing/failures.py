"""Replaying the AuditWriterFailures queue: what the audit writers gave up on, written again with the same
writer (audit_writer.writer), from where it still is.

A message is one of two kinds (docs/audit.md):
- a Kinesis batch the AuditWriter's event source mapping discarded: `KinesisBatchInfo` names the shard and
  the sequence-number range (https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html).
  The records are read again from the stream (GetShardIterator AT_SEQUENCE_NUMBER, GetRecords up to the
  range's end) and written with `write_batch`. What the stream no longer holds (it keeps records for
  `audit_stream_retention_hours`) is reported as lost: nothing else holds those records.
- an access-log object the AccessLogWriter failed on (an asynchronous invocation's failure record, whose
  `requestPayload` is the EventBridge "Object Created" event): the staged object is read again and written
  with the writer's own handler. A staged object that has expired (7 days) is reported as lost.

The retention is the audit bucket's default Object Lock retention, which the stack sets from the
environment's `object_lock_mode` and `audit_retention_days`, the values the cloud writers are given; if it
cannot be read, the objects get that default anyway. A message is deleted only once everything it names
is written; lost ones stay (and are reported on every run) unless `forget_lost` is given.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

REPLAYED, PARTLY_LOST, LOST, FAILED, UNKNOWN = "replayed", "partly lost", "lost", "failed", "unrecognized"
DRY = "dry run: nothing written"


@dataclass
class Replay:
    message_id: str
    kind: str  # "stream" or "access-log" (or "?" when unrecognized)
    source: str
    outcome: str
    records: int = 0
    detail: str | None = None
    deleted: bool = False

    def row(self) -> dict[str, Any]:
        return asdict(self)


def replay_failures(target: Any, *, forget_lost: bool = False, dry_run: bool = False) -> list[dict[str, Any]]:
    from audit_writer.writer import Retention

    s3, bucket = target.client("s3"), target.output("AuditBucketName")
    retention = bucket_retention(s3, bucket, Retention)
    return [
        r.row()
        for r in replay(
            target.client("sqs"),
            target.output("AuditWriterFailuresUrl"),
            kinesis=target.client("kinesis"),
            stream=target.output("AuditStreamName"),
            s3=s3,
            bucket=bucket,
            retention=retention,
            forget_lost=forget_lost,
            dry_run=dry_run,
        )
    ]


def bucket_retention(s3: Any, bucket: str, retention_type: Any) -> Any:
    """The bucket's default Object Lock retention as the writer's Retention; None when it cannot be read."""
    try:
        rule = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]["Rule"]
        default = rule["DefaultRetention"]
    except Exception:  # no permission, or no default: the bucket's default (if any) applies to the puts
        return None
    days = default.get("Days") or 365 * int(default.get("Years") or 0)
    return retention_type(mode=default["Mode"], days=int(days)) if days else None


def replay(
    sqs: Any,
    queue_url: str,
    *,
    kinesis: Any,
    stream: str,
    s3: Any,
    bucket: str,
    retention: Any,
    forget_lost: bool = False,
    dry_run: bool = False,
) -> list[Replay]:
    done: list[Replay] = []
    kept: dict[str, str] = {}  # message id -> receipt handle, made visible again when the run ends
    try:
        while True:
            # Invisible while the run lasts, so that each message is handled once even when it is kept.
            messages = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=300
            ).get("Messages", [])
            fresh = [m for m in messages if m["MessageId"] not in kept]
            if not fresh:
                return done
            for message in fresh:
                result = replay_message(
                    message, kinesis=kinesis, stream=stream, s3=s3, bucket=bucket, retention=retention, dry_run=dry_run
                )
                if not dry_run and (result.outcome == REPLAYED or (forget_lost and result.outcome == LOST)):
                    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                    result.deleted = True
                else:
                    kept[message["MessageId"]] = message["ReceiptHandle"]
                done.append(result)
    finally:
        for handle in kept.values():
            sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=0)


def replay_message(
    message: dict[str, Any], *, kinesis: Any, stream: str, s3: Any, bucket: str, retention: Any, dry_run: bool
) -> Replay:
    message_id = message["MessageId"]
    try:
        body = json.loads(message["Body"])
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("KinesisBatchInfo"), dict):
        return replay_batch(message_id, body["KinesisBatchInfo"], kinesis, stream, s3, bucket, retention, dry_run)
    detail = (body or {}).get("requestPayload", {}).get("detail") if isinstance(body, dict) else None
    if isinstance(detail, dict) and "bucket" in detail and "object" in detail:
        return replay_staged(message_id, body["requestPayload"], s3, bucket, retention, dry_run)
    return Replay(message_id, "?", "-", UNKNOWN, detail="neither a Kinesis batch nor an access-log object")


def replay_batch(
    message_id: str,
    info: dict[str, Any],
    kinesis: Any,
    stream: str,
    s3: Any,
    bucket: str,
    retention: Any,
    dry_run: bool,
) -> Replay:
    from audit_writer.writer import write_batch

    shard, start, end = info.get("shardId"), info.get("startSequenceNumber"), info.get("endSequenceNumber")
    source = f"{shard} {start}..{end}"
    named = str(info.get("streamArn", "")).rsplit("/", 1)[-1]
    if named and named != stream:
        return Replay(message_id, "stream", source, FAILED, detail=f"names stream {named}, not {stream}")
    try:
        records, first = read_range(kinesis, stream, shard, start, end)
    except Exception as exc:  # an unknown or deleted shard, a sequence number the stream no longer has
        return Replay(message_id, "stream", source, LOST, detail=f"the stream no longer holds them: {exc}")
    if not records:
        return Replay(message_id, "stream", source, LOST, detail="the stream no longer holds them (aged out)")
    outcome, detail = REPLAYED, None
    if first != start:
        outcome = PARTLY_LOST
        detail = f"the stream starts at {first}: the records before it aged out"
    if dry_run:
        return Replay(message_id, "stream", source, outcome, len(records), "; ".join(filter(None, [detail, DRY])))
    try:
        write_batch(s3, bucket, records, retention=retention)
    except Exception as exc:
        return Replay(message_id, "stream", source, FAILED, len(records), f"writing failed: {exc}")
    return Replay(message_id, "stream", source, outcome, len(records), detail)


def read_range(kinesis: Any, stream: str, shard: str, start: str, end: str) -> tuple[list[bytes], str | None]:
    """The records of one shard from `start` through `end` (sequence numbers compare as integers within a
    shard), and the sequence number of the first one read."""
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard, ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=start
    )["ShardIterator"]
    records: list[bytes] = []
    first = None
    while iterator:
        page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
        for record in page["Records"]:
            if int(record["SequenceNumber"]) > int(end):
                return records, first
            first = first or record["SequenceNumber"]
            records.append(record["Data"])
        if not page["Records"] and not page.get("MillisBehindLatest"):
            break  # at the tip of the shard
        iterator = page.get("NextShardIterator")
    return records, first


def replay_staged(
    message_id: str, event: dict[str, Any], s3: Any, bucket: str, retention: Any, dry_run: bool
) -> Replay:
    from audit_writer.handler import staged_access_logs_handler

    detail = event["detail"]
    source = f"s3://{detail['bucket'].get('name')}/{detail['object'].get('key')}"
    environ = {"AUDIT_BUCKET": bucket}
    if retention is not None:
        environ |= {"AUDIT_OBJECT_LOCK_MODE": retention.mode, "AUDIT_RETENTION_DAYS": str(retention.days)}
    if dry_run:
        try:
            s3.head_object(Bucket=detail["bucket"]["name"], Key=detail["object"]["key"])
        except Exception as exc:
            return Replay(message_id, "access-log", source, LOST, detail=f"the staged object is gone: {exc}")
        return Replay(message_id, "access-log", source, REPLAYED, detail=f"still staged; {DRY}")
    try:
        result = staged_access_logs_handler(event, s3=s3, environ=environ)
    except s3.exceptions.NoSuchKey:
        return Replay(message_id, "access-log", source, LOST, detail="the staged object has expired")
    except Exception as exc:
        return Replay(message_id, "access-log", source, FAILED, detail=f"writing failed: {exc}")
    return Replay(message_id, "access-log", source, REPLAYED, result["lines"])
