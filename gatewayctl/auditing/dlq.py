"""The audit dead-letter queue: records the gateway could not put on the stream, put back on it.

The same code serves `gatewayctl audit redrive-dlq` (cloud and local) and the local audit pump.
"""

from __future__ import annotations

import json
from typing import Any

# Kinesis needs a partition key; a body that names no usable tenant still goes back on the stream.
MALFORMED_PARTITION_KEY = "_malformed"


def redrive_dlq(target: Any) -> int:
    """Redrive the target's audit DLQ onto its audit stream; returns the number of records redriven."""
    return len(
        redrive(
            target.client("sqs"),
            target.output("AuditDlqUrl"),
            target.client("kinesis"),
            target.output("AuditStreamName"),
        )
    )


def redrive(sqs: Any, queue_url: str, kinesis: Any, stream: str) -> list[str]:
    """Put each dead-lettered record back on the stream, then delete it; returns the bodies redriven.

    A message is deleted only after its put succeeded, so a failure part way leaves the rest in the
    queue for the next run. Records keep their event_id, so readers can drop duplicates.
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
            kinesis.put_record(
                StreamName=stream,
                Data=(body.rstrip("\n") + "\n").encode(),
                PartitionKey=partition_key(body),
            )
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            redriven.append(body)


def partition_key(body: str) -> str:
    """The record's tenant, as the gateway keys its puts; MALFORMED_PARTITION_KEY when it has none."""
    try:
        tenant = json.loads(body).get("tenant_id")
    except (ValueError, AttributeError):
        return MALFORMED_PARTITION_KEY
    if not isinstance(tenant, str) or not tenant or "/" in tenant:
        return MALFORMED_PARTITION_KEY
    return tenant
