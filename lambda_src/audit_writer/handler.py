"""The audit writer's Lambda entry points (Python 3.13, arm64; boto3 from the Lambda runtime).

- `kinesis_handler`: a Kinesis event source on the audit stream (ReportBatchItemFailures, bisect on error).
  It writes the batch with `writer.write_batch`, the function the local pump calls too. A group that
  could not be written is reported from its first record, so Lambda retries from there.
- `staged_access_logs_handler`: an EventBridge "Object Created" event for the access-log staging bucket,
  where Firehose leaves API Gateway's access logs. It reads the staged object, splits it into one JSON
  object per line and writes them with `writer.write_access_logs`, as the local stack's access log does.

Environment: AUDIT_BUCKET, AUDIT_OBJECT_LOCK_MODE, AUDIT_RETENTION_DAYS.
"""

from __future__ import annotations

import base64
import gzip
import os
from typing import Any

from audit_writer.writer import Retention, split_json_objects, write_access_logs, write_batch

_clients: dict[str, Any] = {}


def _s3() -> Any:
    if "s3" not in _clients:
        import boto3  # the Lambda runtime's; imported on first use so tests need no AWS configuration

        _clients["s3"] = boto3.client("s3")
    return _clients["s3"]


def kinesis_handler(event: dict[str, Any], context: Any = None, *, s3: Any = None, environ: Any = None) -> dict:
    environ = os.environ if environ is None else environ
    records = event.get("Records", [])
    data = [base64.b64decode(r["kinesis"]["data"]) for r in records]
    failed: list[int] = []
    write_batch(
        s3 or _s3(), environ["AUDIT_BUCKET"], data, retention=Retention.from_env(environ), failed=failed
    )
    if not failed:
        return {"batchItemFailures": []}
    # Lambda resumes the shard from the lowest reported sequence number: everything after it is retried.
    first = min(failed)
    return {"batchItemFailures": [{"itemIdentifier": records[first]["kinesis"]["sequenceNumber"]}]}


def staged_access_logs_handler(
    event: dict[str, Any], context: Any = None, *, s3: Any = None, environ: Any = None
) -> dict:
    environ = os.environ if environ is None else environ
    client = s3 or _s3()
    detail = event["detail"]
    staged = client.get_object(Bucket=detail["bucket"]["name"], Key=detail["object"]["key"])["Body"].read()
    if staged[:2] == b"\x1f\x8b":  # Firehose's GZIP compression
        staged = gzip.decompress(staged)
    lines = split_json_objects(staged)
    keys = write_access_logs(client, environ["AUDIT_BUCKET"], lines, retention=Retention.from_env(environ))
    # A failed put raises: the asynchronous invocation is retried, then sent to the on-failure destination.
    return {"lines": len(lines), "objects": keys}
