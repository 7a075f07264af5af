# ruff: noqa: F811  (pytest fixtures imported from audit_helpers are parameters here)
"""`gatewayctl gdpr export|erase` and `audit query|verify` through the CLI, against a moto server."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from dataclasses import dataclass

import pytest
from botocore.exceptions import ClientError
from gateway.adapters.kinesis_audit import KinesisAuditSink
from gateway.domain.pseudonym import pseudonym
from gateway.models.exchange import Principal

from gatewayctl import admin as tenancy
from gatewayctl import auditing as trail
from gatewayctl import target as target_module
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
    pool_id = res.client("cognito-idp").create_user_pool(PoolName=f"pool-{res.bucket}")["UserPool"]["Id"]
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
            "UserPoolId": pool_id,
            "InvokeScope": "gateway/invoke",
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


@dataclass
class Person:
    username: str  # what Cognito holds: the e-mail
    sub: str  # the principal id
    pseudonym: str
    refresh_token: str
    app_client: str


def seed(res, tgt, people: dict[str, int]) -> dict[str, Person]:
    """Cognito users registered as principals, signed in, with n served requests each."""
    tenancy.create_tenant(tgt, "acme")
    ddb, idp = tgt.client("dynamodb"), tgt.client("cognito-idp")
    pool_id = tgt.output("UserPoolId")
    app_client = idp.create_user_pool_client(
        UserPoolId=pool_id, ClientName="web", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
    )["UserPoolClient"]["ClientId"]
    sink = KinesisAuditSink(res.settings(), kinesis=res.client("kinesis"), sqs=res.client("sqs"))
    found = {}
    exchanges = []
    for name, n in people.items():
        username = f"{name}@example.com"
        created = idp.admin_create_user(
            UserPoolId=pool_id,
            Username=username,
            UserAttributes=[{"Name": "email", "Value": username}],
            MessageAction="SUPPRESS",
        )["User"]
        sub = next(a["Value"] for a in created["Attributes"] if a["Name"] == "sub")
        idp.admin_set_user_password(UserPoolId=pool_id, Username=username, Password="Passw0rd!x", Permanent=True)
        tokens = idp.initiate_auth(
            ClientId=app_client,
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": "Passw0rd!x"},
        )["AuthenticationResult"]
        tenancy.add_principal(tgt, "acme", sub, ["basic_user"])
        item = ddb.get_item(TableName=res.tenants_table, Key=trail.principal_key(sub))["Item"]
        alias = pseudonym(item["pseudonym_secret"]["S"], sub)
        found[name] = Person(username, sub, alias, tokens["RefreshToken"], app_client)
        ddb.put_item(
            TableName=res.usage_table,
            Item={
                "pk": {"S": f"USAGE#acme#P#{sub}"},
                "sk": {"S": "day#2026-11-23"},
                "tokens": {"N": "30"},
            },
        )
        for i in range(n):
            ex = make_exchange(tenant="acme", pseudonym=alias, started_at=T0 + i)
            ex.principal = Principal(sub, "acme", ("basic_user",), alias)
            exchanges.append(ex)

    async def run():
        for ex in exchanges:
            await sink.record_request(ex)
            await sink.record_outcome(ex)

    asyncio.run(run())
    Pump(res.client("kinesis"), res.client("s3"), res.stream, res.bucket).pump_once()
    for ex in exchanges:
        write_access_log(
            res.client("s3"), res.bucket, request_id=ex.meta.request_id, method="POST",
            path="/v1/messages", status=200, request_time=ex.started_at,
        )  # fmt: skip
    return found


@pytest.fixture
def aws_calls(local_target, monkeypatch) -> list[str]:
    """The operation names of every AWS call the CLI's clients make, in order."""
    calls: list[str] = []
    make_client = Target.client

    def recording_client(self, service):
        client = make_client(self, service)
        client.meta.events.register("before-call.*.*", lambda model, **_: calls.append(model.name))
        return client

    monkeypatch.setattr(Target, "client", recording_client)
    return calls


WRITES = ("Delete", "Put", "Update", "Admin", "Create", "Batch", "Sign")


def writes(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith(WRITES) and c != "AdminGetUser"]


def object_versions(s3, bucket) -> list[tuple[str, str, str]]:
    versions = s3.list_object_versions(Bucket=bucket).get("Versions", [])
    return sorted((v["Key"], v["VersionId"], v["ETag"]) for v in versions)


def test_export_then_erase_leaves_the_trail_but_nothing_that_links_to_the_person(
    audit_resources, local_target, aws_calls, capsys
):
    res, tgt = audit_resources, local_target
    people = seed(res, tgt, {"alice": 3, "bob": 2})
    alice, bob = people["alice"], people["bob"]
    s3, idp, pool_id = res.client("s3"), res.client("cognito-idp"), tgt.output("UserPoolId")

    code, out = cli(capsys, "gdpr", "export", alice.sub)
    assert code == 0
    export = json.loads(out)
    assert export["pseudonym"] == alice.pseudonym
    assert len(export["records"]) == 6  # 3 requests + 3 responses
    assert {r["principal"] for r in export["records"]} == {alice.pseudonym}
    assert {r["event_type"] for r in export["records"]} == {"request", "response"}
    assert export["principal"]["tenant_id"] == "acme" and "pseudonym_secret" not in export["principal"]

    before = object_versions(s3, res.bucket)
    assert cli(capsys, "gdpr", "erase", alice.sub)[0] == 2  # needs --yes
    aws_calls.clear()
    code, out = cli(capsys, "--json", "gdpr", "erase", alice.sub, "--yes")
    assert code == 0
    report = json.loads(out)
    assert report["kind"] == "user" and report["tenant_id"] == "acme"
    assert [(d["store"], d["what"], d["id"]) for d in report["deleted"]] == [
        ("cognito", "user (after global sign-out)", alice.username),
        ("dynamodb", "usage window", f"USAGE#acme#P#{alice.sub} day#2026-11-23"),
        ("dynamodb", "principal and pseudonym secret", alice.sub),
    ]
    # Signed out before deletion; the Cognito identity goes before the secret (a rerun can finish).
    assert writes(aws_calls) == ["AdminUserGlobalSignOut", "AdminDeleteUser", "DeleteItem", "DeleteItem"]

    # The Cognito user, with her e-mail, is gone, and her refresh token no longer works.
    with pytest.raises(ClientError) as gone:
        idp.admin_get_user(UserPoolId=pool_id, Username=alice.username)
    assert gone.value.response["Error"]["Code"] == "UserNotFoundException"
    assert idp.list_users(UserPoolId=pool_id, Filter=f'sub = "{alice.sub}"')["Users"] == []
    with pytest.raises(ClientError) as refused:
        idp.initiate_auth(
            ClientId=alice.app_client,
            AuthFlow="REFRESH_TOKEN_AUTH",
            AuthParameters={"REFRESH_TOKEN": alice.refresh_token},
        )
    assert refused.value.response["Error"]["Code"] == "NotAuthorizedException"
    # The immutable trail is untouched: the same objects, versions and contents.
    assert object_versions(s3, res.bucket) == before
    code, out = cli(capsys, "gdpr", "export", alice.sub)
    after = json.loads(out)
    assert code == 0 and after["records"] == [] and after["pseudonym"] is None and after["principal"] is None
    # Nothing left in the tables or the pool names alice; the trail never did.
    ddb = res.client("dynamodb")
    for table in (res.tenants_table, res.usage_table):
        items = json.dumps(ddb.scan(TableName=table)["Items"])
        assert alice.sub not in items and "alice" not in items
    assert "alice" not in json.dumps(idp.list_users(UserPoolId=pool_id)["Users"], default=str)
    for key in trail.list_keys(s3, res.bucket, ""):
        assert b"alice" not in trail.read_object(s3, res.bucket, key)
        assert alice.sub.encode() not in trail.read_object(s3, res.bucket, key)
    # Her records are still there, counted under a pseudonym that nothing can recompute any more.
    counts = trail.duckdb_query(
        s3, res.bucket, "SELECT principal, count(*) FROM audit_events GROUP BY 1"
    ).rows
    assert dict(counts) == {alice.pseudonym: 6, bob.pseudonym: 4}
    # Others are unaffected.
    assert len(json.loads(cli(capsys, "gdpr", "export", bob.sub)[1])["records"]) == 4
    assert idp.admin_get_user(UserPoolId=pool_id, Username=bob.username)["Username"] == bob.username


def test_erase_refuses_unknown_and_malformed_ids_and_a_second_run_writes_nothing(
    audit_resources, local_target, aws_calls, capsys
):
    res, tgt = audit_resources, local_target
    alice = seed(res, tgt, {"alice": 1})["alice"]
    tables = {t: res.client("dynamodb").scan(TableName=t)["Items"] for t in (res.tenants_table, res.usage_table)}

    # An id that is a Cognito app client but no principal (the pool's own web client): never deleted.
    for unknown in ("0b0e8f1c-0000-4000-8000-000000000000", alice.app_client):
        aws_calls.clear()
        code, out = cli(capsys, "gdpr", "erase", unknown, "--yes")
        assert code == 1 and out == ""
        assert writes(aws_calls) == []
    aws_calls.clear()
    assert cli(capsys, "gdpr", "erase", 'x" or sub ^= "', "--yes")[0] == 1
    assert aws_calls == []  # refused before any call
    assert res.client("cognito-idp").describe_user_pool_client(
        UserPoolId=tgt.output("UserPoolId"), ClientId=alice.app_client
    )["UserPoolClient"]["ClientName"] == "web"
    assert {t: res.client("dynamodb").scan(TableName=t)["Items"] for t in tables} == tables

    # The table output lists exactly what was deleted; a second run finds nothing and writes nothing.
    code, out = cli(capsys, "gdpr", "erase", alice.sub, "--yes")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["STORE", "WHAT", "ID"] and len(lines) == 4
    assert alice.username in lines[1]
    aws_calls.clear()
    assert cli(capsys, "gdpr", "erase", alice.sub, "--yes")[0] == 1
    assert writes(aws_calls) == []


def test_erase_finishes_an_erasure_cut_short(audit_resources, local_target, capsys):
    """The Cognito user went but the tables did not (a failure midway): a rerun deletes the rest."""
    res, tgt = audit_resources, local_target
    alice = seed(res, tgt, {"alice": 1})["alice"]
    res.client("cognito-idp").admin_delete_user(UserPoolId=tgt.output("UserPoolId"), Username=alice.username)

    code, out = cli(capsys, "--json", "gdpr", "erase", alice.sub, "--yes")

    assert code == 0
    assert [d["what"] for d in json.loads(out)["deleted"]] == ["usage window", "principal and pseudonym secret"]
    assert json.loads(cli(capsys, "gdpr", "export", alice.sub)[1])["principal"] is None


def test_erasing_a_machine_principal_deletes_its_app_client(audit_resources, local_target, capsys):
    res, tgt = audit_resources, local_target
    tenancy.create_tenant(tgt, "acme")
    client_id = tenancy.create_client(tgt, "acme", "batch-job", ["basic_user"])["client_id"]

    code, out = cli(capsys, "--json", "gdpr", "erase", client_id, "--yes")

    assert code == 0
    report = json.loads(out)
    assert report["kind"] == "client"
    assert [(d["what"], d["id"]) for d in report["deleted"]] == [
        ("app client", client_id),
        ("principal and pseudonym secret", client_id),
    ]
    with pytest.raises(ClientError) as gone:
        res.client("cognito-idp").describe_user_pool_client(UserPoolId=tgt.output("UserPoolId"), ClientId=client_id)
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"


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
        res.client("s3"), res.bucket, request_id="never-audited", method="POST",
        path="/v1/messages", status=200, request_time=T0,
    )  # fmt: skip
    code, out = cli(capsys, "--json", "audit", "verify", "--from", "2026-11-23", "--to", "2026-11-23")
    report = json.loads(out)
    assert code == 1 and [m["request_id"] for m in report["missing"]] == ["never-audited"]


def test_export_and_erase_by_email_and_the_report_of_what_remains(audit_resources, local_target, capsys):
    res, tgt = audit_resources, local_target
    alice = seed(res, tgt, {"alice": 2, "bob": 1})["alice"]
    ddb, s3 = res.client("dynamodb"), res.client("s3")
    # What a deployed stack has: point-in-time recovery and a lifecycle expiry on the audit bucket.
    ddb.update_continuous_backups(
        TableName=res.tenants_table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
    )
    s3.put_bucket_lifecycle_configuration(
        Bucket=res.bucket,
        LifecycleConfiguration={"Rules": [{"ID": "expire", "Status": "Enabled", "Filter": {"Prefix": ""},
                                           "Expiration": {"Days": 400}}]},
    )  # fmt: skip

    code, out = cli(capsys, "gdpr", "export", alice.username)  # her e-mail, as a request names her
    assert code == 0
    export = json.loads(out)
    assert export["principal_id"] == alice.sub and export["pseudonym"] == alice.pseudonym
    assert len(export["records"]) == 4

    capsys.readouterr()
    assert main(["--target", "local", "gdpr", "export", "nobody@example.com"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == "gatewayctl: error: no principal and no Cognito user named 'nobody@example.com'\n"

    code, out = cli(capsys, "--json", "gdpr", "erase", alice.username, "--yes")
    assert code == 0
    report = json.loads(out)
    assert report["principal_id"] == alice.sub
    assert [d["what"] for d in report["deleted"]] == [
        "user (after global sign-out)", "usage window", "principal and pseudonym secret"
    ]  # fmt: skip
    remains = {r["what"]: r for r in report["remains"]}
    assert all(set(r) == {"store", "what", "holds", "kept_for", "linkable"} for r in report["remains"])
    records = remains["audit records (immutable)"]
    assert records["store"] == f"S3 {res.bucket}/audit/"
    assert records["kept_for"] == "Object Lock GOVERNANCE for 1 days; expired by lifecycle after 400 days"
    assert records["linkable"].startswith("no: the pseudonym secret is deleted")
    client_info = remains["source IP and user agent in those audit records"]
    assert "pseudonymised under the principal's secret" in client_info["linkable"]
    assert "or not recorded at all, as the tenant's setting says" in client_info["linkable"]
    access_logs = remains["API access logs (immutable)"]
    assert "no principal or client id" in access_logs["holds"] and "request_id" in access_logs["holds"]
    assert remains["audit records on their way to the bucket"]["kept_for"] == "24 hours"
    backups = remains["the deleted principal item (with its pseudonym secret) and usage windows, in backups"]
    assert backups["kept_for"] == (
        f"{res.tenants_table}: up to 35 days; {res.usage_table}: none (point-in-time recovery is off)"
    )
    assert backups["linkable"].startswith("yes, until the window has passed")
    assert "the gateway's log lines" in remains and "the user and its attributes are deleted" in remains

    # Without --json: what was deleted on stdout (as before), what remains on stderr, as a table.
    bob = "bob@example.com"
    capsys.readouterr()
    assert main(["--target", "local", "gdpr", "erase", bob, "--yes"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split() == ["STORE", "WHAT", "ID"] and bob in out
    remaining = err.split("what remains after the erasure:\n")[1].splitlines()
    assert remaining[:4] == [
        f"- audit records (immutable) (S3 {res.bucket}/audit/)",
        "    holds: " + records["holds"],
        "    kept for: " + records["kept_for"],
        "    linkable: " + records["linkable"],
    ]
    assert len([line for line in remaining if line.startswith("- ")]) == len(report["remains"])
