"""Pins the logical ids of the stateful resources: a refactor that renames one would replace a table or the
audit bucket (data loss, or a stack that cannot update because the resource is retained)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.infrastructure

PINNED = {
    "DataKey": "AWS::KMS::Key",
    "AuditKey": "AWS::KMS::Key",
    "TenantsTable": "AWS::DynamoDB::Table",
    "UsageTable": "AWS::DynamoDB::Table",
    "AuditStream": "AWS::Kinesis::Stream",
    "AuditBucket": "AWS::S3::Bucket",
    "AuditLogBucket": "AWS::S3::Bucket",
    "AthenaResultsBucket": "AWS::S3::Bucket",
    "AuditDlq": "AWS::SQS::Queue",
    # Since the audit writer replaced Firehose's delivery of audit records (docs/decisions/audit-delivery.md):
    "AccessLogStagingBucket": "AWS::S3::Bucket",
    "AuditWriterFailures": "AWS::SQS::Queue",
}


def test_stateful_logical_ids_are_pinned(synthesized):
    resources = synthesized.stateful.to_json()["Resources"]
    assert {logical_id: resources.get(logical_id, {}).get("Type") for logical_id in PINNED} == PINNED


def test_every_retained_resource_is_pinned(synthesized):
    resources = synthesized.stateful.to_json()["Resources"]
    stateful_types = set(PINNED.values())
    unpinned = sorted(i for i, r in resources.items() if r["Type"] in stateful_types and i not in PINNED)
    assert unpinned == []
