"""The audit pump: moves audit records from the Kinesis stream to the audit bucket, as the cloud's audit
writer Lambda does (docs/decisions/audit-delivery.md), and redrives the audit dead-letter queue.

It writes through `audit_writer.write_batch`, the very function the cloud writer calls: records grouped
by tenant and day into gzip NDJSON objects under audit/tenant=<id>/dt=<yyyy-mm-dd>/, each put with an
explicit checksum (an Object Lock bucket refuses uploads without an integrity header). With
AUDIT_OBJECT_LOCK_MODE and AUDIT_RETENTION_DAYS set it also sets the retention explicitly, as the cloud
writer does; without them the bucket's default retention applies.

Run it: `python -m gatewayctl.local.pump` (AWS_ENDPOINT_URL, AWS_REGION, AUDIT_STREAM, AUDIT_BUCKET;
optionally PUMP_REDRIVE_DLQ=true with AUDIT_DLQ_URL to redrive the DLQ, PUMP_INTERVAL seconds,
PUMP_CHECKPOINT file); tests call `Pump(...).pump_once()`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit_writer import writer
from audit_writer.writer import Retention, audit_partition

from stacks.definitions import AUDIT_RECORDS_PREFIX

ERRORS_PREFIX = writer.AUDIT_ERRORS_PREFIX
partition_of = audit_partition


def put_locked_object(s3: Any, bucket: str, key: str, body: bytes, **extra: Any) -> None:
    """PutObject with the writer's checksum, which an Object Lock bucket requires (default retention applies)."""
    writer.put_object(s3, bucket, key, body, **extra)


def write_batch(
    s3: Any,
    bucket: str,
    records: Iterable[bytes],
    *,
    prefix: str = AUDIT_RECORDS_PREFIX,
    retention: Retention | None = None,
) -> list[str]:
    """The audit writer's `write_batch` (one code path locally and in the cloud); returns the keys written."""
    return writer.write_batch(s3, bucket, records, prefix=prefix, retention=retention)


@dataclass
class Pump:
    """Reads every shard of the stream from where it last stopped and writes what it read."""

    kinesis: Any
    s3: Any
    stream: str
    bucket: str
    checkpoint_path: Path | None = None
    positions: dict[str, str] = field(default_factory=dict)  # shard id -> last sequence number written
    retention: Retention | None = None  # None: the bucket's default retention

    def __post_init__(self) -> None:
        if self.checkpoint_path and self.checkpoint_path.exists():
            self.positions = json.loads(self.checkpoint_path.read_text())

    def pump_once(self) -> int:
        """Move everything currently in the stream; returns the number of records moved."""
        moved = 0
        for shard in self.kinesis.list_shards(StreamName=self.stream)["Shards"]:
            shard_id = shard["ShardId"]
            data, last = self._read_shard(shard_id)
            if data:
                write_batch(self.s3, self.bucket, data, retention=self.retention)
                self.positions[shard_id] = last
                moved += len(data)
        if moved and self.checkpoint_path:
            self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
            self.checkpoint_path.write_text(json.dumps(self.positions))
        return moved

    def _read_shard(self, shard_id: str) -> tuple[list[bytes], str | None]:
        after = self.positions.get(shard_id)
        options = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after}
            if after
            else {"ShardIteratorType": "TRIM_HORIZON"}
        )
        iterator = self.kinesis.get_shard_iterator(StreamName=self.stream, ShardId=shard_id, **options)[
            "ShardIterator"
        ]
        data: list[bytes] = []
        last = after
        while iterator:
            page = self.kinesis.get_records(ShardIterator=iterator, Limit=1000)
            if not page["Records"]:
                break
            data += [r["Data"] for r in page["Records"]]
            last = page["Records"][-1]["SequenceNumber"]
            iterator = page.get("NextShardIterator")
        return data, last


def drain_dlq(sqs: Any, queue_url: str, kinesis: Any, stream: str) -> list[str]:
    """Redrive the audit DLQ: put each dead-lettered record back on the stream, then delete it.

    Returns the bodies redriven. A message is deleted only after its put succeeded, so a failure
    part way leaves the rest in the queue for the next drain.
    """
    redriven: list[str] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        if not messages:
            return redriven
        for message in messages:
            body = message["Body"]
            part = partition_of(body.encode())
            kinesis.put_record(
                StreamName=stream,
                Data=(body.rstrip("\n") + "\n").encode(),
                PartitionKey=part[0] if part else "_malformed",
            )
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            redriven.append(body)


def main() -> int:
    import boto3

    env = os.environ
    region = env.get("AWS_REGION", "us-east-1")
    kinesis, s3 = boto3.client("kinesis", region_name=region), boto3.client("s3", region_name=region)
    # Redriving the DLQ is opt-in: tests that look for dead-lettered records need them left in place.
    redrive = env.get("PUMP_REDRIVE_DLQ", "").lower() in ("1", "true", "yes") and env.get("AUDIT_DLQ_URL")
    sqs = boto3.client("sqs", region_name=region) if redrive else None
    checkpoint = env.get("PUMP_CHECKPOINT")
    pump = Pump(
        kinesis,
        s3,
        env["AUDIT_STREAM"],
        env["AUDIT_BUCKET"],
        Path(checkpoint) if checkpoint else None,
        retention=Retention.from_env(env),
    )
    interval = float(env.get("PUMP_INTERVAL", "1"))
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    print(
        f"audit pump: {pump.stream} -> s3://{pump.bucket}/{AUDIT_RECORDS_PREFIX} every {interval}s",
        flush=True,
    )
    while not stopping:
        try:
            if sqs is not None:
                drain_dlq(sqs, env["AUDIT_DLQ_URL"], kinesis, pump.stream)
            moved = pump.pump_once()
            if moved:
                print(f"audit pump: moved {moved} records", flush=True)
        except Exception as exc:  # a moto restart or a transient error: try again next round
            print(f"audit pump: {exc!r}", file=sys.stderr, flush=True)
        time.sleep(interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
