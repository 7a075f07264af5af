"""The audit bucket's objects: list them, read them (gzip or not), and the partition in a key."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any


class AuditError(Exception):
    """A query, verification or GDPR request that could not run (the message says why)."""


def list_keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"]


def read_object(s3: Any, bucket: str, key: str) -> bytes:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body


def read_json_lines(s3: Any, bucket: str, key: str) -> Iterator[dict[str, Any]]:
    for line in read_object(s3, bucket, key).splitlines():
        if line.strip():
            yield json.loads(line)


def partition_of_key(key: str) -> dict[str, str]:
    """{'tenant': ..., 'dt': ...} from audit/tenant=<id>/dt=<date>/<name>."""
    return dict(part.split("=", 1) for part in key.split("/") if "=" in part)
