# ruff: noqa: F811  (pytest fixtures imported from audit_helpers are parameters here)
"""`gatewayctl gdpr export|erase` and `audit query|verify` through the CLI, against a moto server."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from gateway.adapters.kinesis_audit import KinesisAuditSink
from gateway.domain.ports import Principal
from gateway.domain.pseudonym import pseudonym

from gatewayctl import audit as trail
from gatewayctl import target as target_module
from gatewayctl import tenancy
from gatewayctl.cli import main
from gatewayctl.local.access_log import write_access_log
from gatewayctl.local.pump import Pump
from gatewayctl.target import Target
from tests.integration.audit_helpers import (  # noqa: F401  (fixtures)
    REGION,
    audit_moto,
    audit_resources,
    make_exchange,
)

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC).timestamp()


@pytest.fixture
def local_target(audit_resources, monkeypatch) -> Target:
    res = audit_resources
    tgt = Target(
        kind="local",
        region=REGION,
        endpoint_url=res.endpoint,
        outputs={
            "TenantsTableName": res.tenants_table,
            "UsageTableName": res.usage_table,
            "AuditStreamName": res.stream,
            "AuditDlqUrl": res.dlq_url,
            "AuditBucketName": res.bucket,
        },
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setattr(target_module, "resolve", lambda args: tgt)
    return tgt


def cli(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["--target", "local", *argv])
    return code, capsys.readouterr().out


def seed(res, tgt, people: dict[str, int]) -> dict[str, str]:
    """Principals with n served requests each; returns principal id -> pseudonym."""
    tenancy.create_tenant(tgt, "acme")
    ddb = tgt.client("dynamodb")
    sink = KinesisAuditSink(res.settings(), kinesis=res.client("kinesis"), sqs=res.client("sqs"))
    names = {}
    exchanges = []
    for person, n in people.items():
        tenancy.add_principal(tgt, "acme", person, ["basic_user"])
        item = ddb.get_item(TableName=res.tenants_table, Key=trail.principal_key(person))["Item"]
        names[person] = pseudonym(item["pseudonym_secret"]["S"], person)
        ddb.put_item(
            TableName=res.usage_table,
            Item={
                "pk": {"S": f"USAGE#acme#P#{person}"},
                "sk": {"S": "day#2026-11-23"},
                "tokens": {"N": "30"},
            },
        )
        for i in range(n):
            ex = make_exchange(tenant="acme", pseudonym=names[person], started_at=T0 + i)
            ex.principal = Principal(person, "acme", ("basic_user",), names[person])
            exchanges.append(ex)

    async def run():
        for ex in exchanges:
            await sink.record_request(ex)
            await sink.record_outcome(ex)

    asyncio.run(run())
    Pump(res.client("kinesis"), res.client("s3"), res.stream, res.bucket).pump_once()
    for ex in exchanges:
        write_access_log(
            res.client("s3"), res.bucket, request_id=ex.meta.request_id, ip="127.0.0.1", method="POST",
            path="/v1/messages", status=200, request_time=ex.started_at,
        )  # fmt: skip
    return names


def object_versions(s3, bucket) -> list[tuple[str, str, str]]:
    versions = s3.list_object_versions(Bucket=bucket).get("Versions", [])
    return sorted((v["Key"], v["VersionId"], v["ETag"]) for v in versions)


def test_export_then_erase_leaves_the_trail_but_nothing_that_links_to_the_person(
    audit_resources, local_target, capsys
):
    res, tgt = audit_resources, local_target
    names = seed(res, tgt, {"alice": 3, "bob": 2})
    s3 = res.client("s3")

    code, out = cli(capsys, "gdpr", "export", "alice")
    assert code == 0
    export = json.loads(out)
    assert export["pseudonym"] == names["alice"]
    assert len(export["records"]) == 6  # 3 requests + 3 responses
    assert {r["principal"] for r in export["records"]} == {names["alice"]}
    assert {r["event_type"] for r in export["records"]} == {"request", "response"}
    assert export["principal"]["tenant_id"] == "acme" and "pseudonym_secret" not in export["principal"]

    before = object_versions(s3, res.bucket)
    assert cli(capsys, "gdpr", "erase", "alice")[0] == 2  # needs --yes
    code, _ = cli(capsys, "--json", "gdpr", "erase", "alice", "--yes")
    assert code == 0

    # The immutable trail is untouched: the same objects, versions and contents.
    assert object_versions(s3, res.bucket) == before
    code, out = cli(capsys, "gdpr", "export", "alice")
    after = json.loads(out)
    assert code == 0 and after["records"] == [] and after["pseudonym"] is None and after["principal"] is None
    # Nothing left in the tables names alice; the trail never did.
    ddb = res.client("dynamodb")
    for table in (res.tenants_table, res.usage_table):
        assert "alice" not in json.dumps(ddb.scan(TableName=table)["Items"])
    for key in trail.list_keys(s3, res.bucket, ""):
        assert b"alice" not in trail.read_object(s3, res.bucket, key)
    # Her records are still there, counted under a pseudonym that nothing can recompute any more.
    counts = trail.duckdb_query(
        s3, res.bucket, "SELECT principal, count(*) FROM audit_events GROUP BY 1"
    ).rows
    assert dict(counts) == {names["alice"]: 6, names["bob"]: 4}
    # Others are unaffected.
    assert len(json.loads(cli(capsys, "gdpr", "export", "bob")[1])["records"]) == 4


def test_audit_query_and_verify_commands(audit_resources, local_target, capsys):
    res, tgt = audit_resources, local_target
    seed(res, tgt, {"carol": 2})
    code, out = cli(capsys, "--json", "audit", "query", "--named", "usage_by_day", "--param", "acme")
    rows = json.loads(out)
    assert code == 0 and rows == [
        {
            "tenant": "acme",
            "dt": "2026-11-23",
            "responses": 2,
            "input_tokens": 20,
            "output_tokens": 40,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "cost_usd": pytest.approx(2 * (10 * 3 + 20 * 15) / 1_000_000),
        }
    ]
    code, out = cli(
        capsys, "audit", "query", "SELECT count(*) AS n FROM audit_events WHERE tenant = ?", "--param", "acme"
    )
    assert code == 0 and out.split() == ["N", "4"]
    assert cli(capsys, "audit", "query", "SELECT nope FROM audit_events")[0] == 1
    assert cli(capsys, "audit", "query", "--named", "principal_records")[0] == 1  # missing --param

    code, out = cli(capsys, "--json", "audit", "verify", "--from", "2026-11-23")
    assert code == 0 and json.loads(out)["ok"] is True
    write_access_log(
        res.client("s3"), res.bucket, request_id="never-audited", ip="x", method="POST",
        path="/v1/messages", status=200, request_time=T0,
    )  # fmt: skip
    code, out = cli(capsys, "--json", "audit", "verify", "--from", "2026-11-23", "--to", "2026-11-23")
    report = json.loads(out)
    assert code == 1 and [m["request_id"] for m in report["missing"]] == ["never-audited"]
