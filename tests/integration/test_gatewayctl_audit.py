# ruff: noqa: F811  (pytest fixtures imported from audit_helpers are parameters here)
"""`gatewayctl audit redrive-dlq` against a moto server: the cloud path's own redrive (gatewayctl/auditing/dlq.py)."""

from __future__ import annotations

import json

import pytest

from gatewayctl import target as target_module
from gatewayctl.cli import main
from gatewayctl.target import Target
from tests.integration.audit_helpers import REGION, audit_moto, audit_resources  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration


@pytest.fixture
def dlq_target(audit_resources, monkeypatch) -> Target:
    res = audit_resources
    tgt = Target(
        kind="cloud",  # the cloud code path, against moto's endpoint
        region=REGION,
        endpoint_url=res.endpoint,
        outputs={"AuditStreamName": res.stream, "AuditDlqUrl": res.dlq_url, "AuditBucketName": res.bucket},
    )
    monkeypatch.setattr(Target, "client", lambda self, service: res.client(service))
    monkeypatch.setattr(target_module, "resolve", lambda args: tgt)
    return tgt


def stream_records(res) -> list[tuple[str, bytes]]:
    kinesis = res.client("kinesis")
    out = []
    for shard in kinesis.list_shards(StreamName=res.stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=res.stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        out += [(r["PartitionKey"], r["Data"]) for r in kinesis.get_records(ShardIterator=iterator)["Records"]]
    return out


def test_redrive_puts_every_dead_lettered_record_back_on_the_stream_and_empties_the_queue(
    audit_resources, dlq_target, capsys
):
    res = audit_resources
    sqs = res.client("sqs")
    bodies = [
        json.dumps({"event_id": "e1", "tenant_id": "acme", "event_time": "2026-11-23T09:00:00.000Z"}),
        json.dumps({"event_id": "e2", "tenant_id": "globex", "event_time": "2026-11-23T09:00:01.000Z"}) + "\n",
        "not json at all",
    ]
    for body in bodies:
        sqs.send_message(QueueUrl=res.dlq_url, MessageBody=body)

    code = main(["--json", "audit", "redrive-dlq"])

    assert code == 0
    assert json.loads(capsys.readouterr().out) == {"redriven": 3}
    assert sqs.receive_message(QueueUrl=res.dlq_url, MaxNumberOfMessages=10).get("Messages", []) == []
    records = stream_records(res)
    assert sorted(records) == sorted(
        [
            ("acme", bodies[0].encode() + b"\n"),  # one record per line, as the gateway puts them
            ("globex", bodies[1].encode()),
            ("_malformed", b"not json at all\n"),
        ]
    )
