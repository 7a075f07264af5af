"""The audit records on a local stack's Kinesis stream, read back as a consumer would (GetRecords, no pump):
the integration suite's `audit_stream` fixture and the fault suite's rig."""

from __future__ import annotations

import json
import threading
import time
from typing import Any


class AuditStream:
    """The audit records on the stack's Kinesis stream, read with GetRecords as a consumer would.

    Reads each shard from where the last read stopped (AFTER_SEQUENCE_NUMBER), so a worker's tests
    do not re-read the whole stream; records are kept by tenant (tests use a fresh tenant each)."""

    def __init__(self, kinesis: Any, stream: str) -> None:
        self.kinesis, self.stream = kinesis, stream
        self._after: dict[str, str] = {}
        self._by_tenant: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def poll(self) -> None:
        with self._lock:
            for shard in self.kinesis.list_shards(StreamName=self.stream)["Shards"]:
                shard_id = shard["ShardId"]
                position: dict[str, str] = (
                    {
                        "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                        "StartingSequenceNumber": self._after[shard_id],
                    }
                    if shard_id in self._after
                    else {"ShardIteratorType": "TRIM_HORIZON"}
                )
                iterator = self.kinesis.get_shard_iterator(StreamName=self.stream, ShardId=shard_id, **position)[
                    "ShardIterator"
                ]
                while iterator:
                    page = self.kinesis.get_records(ShardIterator=iterator, Limit=1000)
                    for record in page["Records"]:
                        data = json.loads(record["Data"])
                        self._by_tenant.setdefault(data["tenant_id"], []).append(data)
                        self._after[shard_id] = record["SequenceNumber"]
                    if not page["Records"]:
                        break
                    iterator = page.get("NextShardIterator")

    def records(self, tenant_id: str) -> list[dict[str, Any]]:
        self.poll()
        with self._lock:
            return list(self._by_tenant.get(tenant_id, []))

    def outcomes(self, tenant_id: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The tenant's outcome records (response, denied, error), once `count` of them are on the
        stream (they are written after the reply), in the order they were put."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.records(tenant_id) if r["event_type"] != "request"]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)
