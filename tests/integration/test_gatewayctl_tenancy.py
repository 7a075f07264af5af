"""gatewayctl's tenancy library and commands against a moto server: what they write, and that bad
operator input is refused with a clear error, a non-zero exit, and nothing written."""

from __future__ import annotations

import json

import pytest

from gatewayctl import admin as tenancy
from gatewayctl import cli
from gatewayctl.output import CommandError
from tests.integration import test_tenancy_support as support

moto_url, moto_tables = support.moto_url, support.moto_tables  # fixtures


def _all_items(t) -> list[dict]:
    ddb = t.client("dynamodb")
    out = []
    for table in (t.target.outputs["TenantsTableName"], t.target.outputs["UsageTableName"]):
        out += ddb.scan(TableName=table)["Items"]
    return sorted(out, key=lambda i: (i["pk"]["S"], i["sk"]["S"]))


def test_tenant_lifecycle(moto_tables):
    target = moto_tables.target
    created = tenancy.create_tenant(
        target,
        "acme",
        name="Acme",
        residency="eu",
        allowed_models=["claude-sonnet-4-5-20250929", "claude-haiku-4-5"],
        limits={"requests_per_minute": 50, "usd_per_month": 12.5},
        consent_required=True,
        notice="Data stays in the EU.",
    )
    assert created["allowed_models"] == ["claude-haiku-4-5", "claude-sonnet-4-5"]  # ids normalised to aliases
    assert created["limits"] == {"requests_per_minute": 50, "usd_per_month": 12.5}

    updated = tenancy.update_tenant(
        target, "acme", limits={"requests_per_minute": None, "tokens_per_day": 1000}
    )
    assert updated["limits"] == {"usd_per_month": 12.5, "tokens_per_day": 1000}
    assert tenancy.suspend_tenant(target, "acme")["status"] == "suspended"
    assert tenancy.get_tenant(target, "acme")["status"] == "suspended"
    assert tenancy.suspend_tenant(target, "acme", suspended=False)["status"] == "active"
    assert [t["tenant_id"] for t in tenancy.list_tenants(target)] == ["acme"]

    with pytest.raises(CommandError, match="already exists"):
        tenancy.create_tenant(target, "acme")


def test_principals_roles_and_secrets(moto_tables):
    target = moto_tables.target
    tenancy.create_tenant(target, "acme")
    tenancy.define_role(target, "acme", "analyst", ["read", "write", "haiku"])
    p = tenancy.add_principal(target, "acme", "sub-1", ["analyst", "viewer"])
    assert p["roles"] == ["analyst", "viewer"] and "pseudonym_secret" not in p

    raw = moto_tables.client("dynamodb").get_item(
        TableName=target.outputs["TenantsTableName"],
        Key={"pk": {"S": "PRINCIPAL#sub-1"}, "sk": {"S": "PRINCIPAL"}},
    )["Item"]
    assert len(raw["pseudonym_secret"]["S"]) == 64
    assert raw["tenant_pk"]["S"] == "TENANT#acme" and raw["tenant_sk"]["S"] == "PRINCIPAL#sub-1"

    assert tenancy.set_roles(target, "sub-1", ["power_user"])["roles"] == ["power_user"]
    assert tenancy.set_consent(target, "sub-1")["consent_given_at"]
    shown = tenancy.get_tenant(target, "acme")
    assert shown["roles"]["analyst"] == ["haiku", "read", "write"]
    assert [p["principal_id"] for p in shown["principals"]] == ["sub-1"]
    tenancy.remove_principal(target, "sub-1")
    assert tenancy.get_tenant(target, "acme")["principals"] == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t: tenancy.add_principal(t, "nope", "sub-9", ["viewer"]), "unknown tenant 'nope'"),
        (lambda t: tenancy.add_principal(t, "acme", "sub-9", ["wizard"]), "unknown role"),
        (
            lambda t: tenancy.add_principal(t, "acme", "sub-9", ["viewer"], limits={"tokens_per_day": -5}),
            "must not be negative",
        ),
        (
            lambda t: tenancy.create_tenant(t, "beta", limits={"requests_per_minute": -1}),
            "must not be negative",
        ),
        (lambda t: tenancy.create_tenant(t, "beta", limits={"bananas": 1}), "unknown limits"),
        (lambda t: tenancy.create_tenant(t, "beta", residency="mars"), "unknown residency"),
        (lambda t: tenancy.create_tenant(t, "beta", allowed_models=["gpt-4"]), "unknown model"),
        (lambda t: tenancy.create_tenant(t, "has space"), "invalid tenant id"),
        (lambda t: tenancy.update_tenant(t, "nope", name="x"), "unknown tenant"),
        (
            lambda t: tenancy.update_tenant(t, "acme", limits={"tokens_per_minute": -1}),
            "must not be negative",
        ),
        (lambda t: tenancy.suspend_tenant(t, "nope"), "unknown tenant"),
        (lambda t: tenancy.define_role(t, "acme", "r", ["read", "fly"]), "unknown permissions"),
        (lambda t: tenancy.define_role(t, "nope", "r", ["read"]), "unknown tenant"),
        (lambda t: tenancy.set_roles(t, "sub-1", ["wizard"]), "unknown role"),
        (lambda t: tenancy.set_roles(t, "ghost", ["viewer"]), "unknown principal"),
        (lambda t: tenancy.remove_principal(t, "ghost"), "unknown principal"),
        (lambda t: tenancy.add_principal(t, "acme", "sub-1", ["viewer"]), "already exists"),
        (lambda t: tenancy.create_client(t, "nope", "batch", ["viewer"]), "unknown tenant"),
        (lambda t: tenancy.create_client(t, "acme", "batch", ["wizard"]), "unknown role"),
        (lambda t: tenancy.usage(t, "nope"), "unknown tenant"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(moto_tables, call, message):
    target = moto_tables.target
    tenancy.create_tenant(target, "acme", limits={"tokens_per_minute": 100})
    tenancy.add_principal(target, "acme", "sub-1", ["viewer"])
    clients_before = moto_tables.client("cognito-idp").list_user_pool_clients(
        UserPoolId=target.outputs["UserPoolId"], MaxResults=60
    )["UserPoolClients"]
    before = _all_items(moto_tables)

    with pytest.raises(CommandError, match=message):
        call(target)

    assert _all_items(moto_tables) == before
    assert (
        moto_tables.client("cognito-idp").list_user_pool_clients(
            UserPoolId=target.outputs["UserPoolId"], MaxResults=60
        )["UserPoolClients"]
        == clients_before
    )


def test_create_client_makes_a_client_credentials_app_client_and_its_principal(moto_tables):
    target = moto_tables.target
    tenancy.create_tenant(target, "acme")
    made = tenancy.create_client(target, "acme", "batch", ["basic_user"])
    assert made["client_secret"] and made["kind"] == "client"
    described = moto_tables.client("cognito-idp").describe_user_pool_client(
        UserPoolId=target.outputs["UserPoolId"], ClientId=made["client_id"]
    )["UserPoolClient"]
    assert described["AllowedOAuthFlows"] == ["client_credentials"]
    assert described["AllowedOAuthScopes"] == ["gateway/invoke"]
    assert tenancy.get_principal(target, made["client_id"])["tenant_id"] == "acme"


def test_usage_is_empty_for_a_new_tenant(moto_tables):
    tenancy.create_tenant(moto_tables.target, "acme", limits={"requests_per_minute": 7})
    report = tenancy.usage(moto_tables.target, "acme")
    minute = next(w for w in report["windows"] if w["window"] == "minute")
    assert minute["requests"] == {"used": 0, "limit": 7, "remaining": 7}


def test_usage_of_a_hot_tenant_adds_its_pools(moto_tables):
    """A hot tenant's pools took budget from its window item (counted there as used) and hold it,
    negative, until leases draw it: usage is the two summed, as GET /v1/usage reports it."""
    from gateway.domain import quota
    from gateway.models import usage_items

    tenancy.create_tenant(moto_tables.target, "acme", limits={"requests_per_minute": 1000})
    now = 1_790_000_000.0  # one instant for both the items and the report: no minute boundary between them
    sk = quota.window_at("minute", now).sk
    pk = usage_items.tenant_pk("acme")
    ddb, table = moto_tables.client("dynamodb"), moto_tables.target.outputs["UsageTableName"]
    # 40 served plainly, plus 2 pools that each took 100 of which leases drew 30 and 5.
    for key, requests in ((pk, 240), (usage_items.pool_pk(pk, 0), -70), (usage_items.pool_pk(pk, 9), -95)):
        ddb.put_item(TableName=table, Item={"pk": {"S": key}, "sk": {"S": sk}, "requests": {"N": str(requests)}})
    report = tenancy.usage(moto_tables.target, "acme", now=now)
    minute = next(w for w in report["windows"] if w["window"] == "minute")
    assert minute["requests"] == {"used": 75, "limit": 1000, "remaining": 925}


# -- the commands: the same library behind argparse, exit codes and output ----------------------


@pytest.fixture
def run_cli(moto_tables, monkeypatch, capsys):
    monkeypatch.setattr("gatewayctl.target.resolve", lambda args: moto_tables.target)

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_commands_round_trip(run_cli, moto_tables):
    code, out, _ = run_cli(
        "--json",
        "tenant",
        "create",
        "acme",
        "--residency",
        "eu",
        "--limit",
        "requests_per_minute=5",
        "--model",
        "claude-haiku-4-5",
    )
    assert code == 0 and json.loads(out)["limits"] == {"requests_per_minute": 5}
    assert (
        run_cli("role", "define", "acme", "analyst", "--permission", "read", "--permission", "write")[0] == 0
    )
    assert run_cli("principal", "add", "acme", "sub-1", "--role", "analyst")[0] == 0
    code, out, _ = run_cli("tenant", "show", "acme")
    assert code == 0 and "acme" in out and "sub-1" in out
    code, out, _ = run_cli("--json", "client", "create", "acme", "batch", "--role", "basic_user")
    assert code == 0 and json.loads(out)["client_secret"]
    code, out, _ = run_cli("usage", "show", "acme")
    assert code == 0 and "minute" in out
    code, out, _ = run_cli("--json", "tenant", "suspend", "acme")
    assert json.loads(out)["status"] == "suspended"
    code, out, _ = run_cli("--json", "tenant", "list")
    assert [t["tenant_id"] for t in json.loads(out)] == ["acme"]


@pytest.mark.parametrize(
    "argv",
    [
        ("principal", "add", "nope", "sub-2", "--role", "viewer"),
        ("principal", "add", "acme", "sub-2", "--role", "wizard"),
        ("tenant", "update", "acme", "--limit", "tokens_per_day=-3"),
        ("tenant", "create", "beta", "--limit", "requests_per_minute=-1"),
        ("tenant", "create", "beta", "--limit", "requests_per_minute"),
        ("usage", "show", "nope"),
    ],
)
def test_bad_commands_exit_non_zero_and_write_nothing(run_cli, moto_tables, argv):
    assert run_cli("tenant", "create", "acme")[0] == 0
    before = _all_items(moto_tables)
    code, _, err = run_cli(*argv)
    assert code != 0
    assert err.startswith("gatewayctl: error:")
    assert _all_items(moto_tables) == before


def test_the_console_script_against_a_local_stack_file(moto_tables, tmp_path):
    """The installed `gatewayctl` in a fresh process, finding the stack through .local/stack.json."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    target = moto_tables.target
    (tmp_path / "stack.json").write_text(
        json.dumps({"region": target.region, "outputs": target.outputs, "moto_endpoint": target.endpoint_url})
    )
    env = {
        **os.environ,
        "GATEWAY_LOCAL_DIR": str(tmp_path),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    script = Path(sys.executable).with_name("gatewayctl")

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(script), *argv], env=env, capture_output=True, text=True, timeout=60)

    created = run("--json", "tenant", "create", "acme", "--limit", "requests_per_minute=5")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["limits"] == {"requests_per_minute": 5}
    refused = run("principal", "add", "nope", "sub-1", "--role", "viewer")
    assert refused.returncode == 1
    assert refused.stderr.strip() == "gatewayctl: error: unknown tenant 'nope'"
    assert tenancy.list_principals(target, "nope") == []


def test_principals_by_email_with_their_cognito_names_listed(run_cli, moto_tables):
    idp, pool_id = moto_tables.client("cognito-idp"), moto_tables.target.outputs["UserPoolId"]
    email = "dana@acme.example"
    created = idp.admin_create_user(
        UserPoolId=pool_id, Username=email, UserAttributes=[{"Name": "email", "Value": email}], MessageAction="SUPPRESS"
    )["User"]
    sub = next(a["Value"] for a in created["Attributes"] if a["Name"] == "sub")
    assert run_cli("tenant", "create", "acme")[0] == 0

    code, out, _ = run_cli("--json", "principal", "add", "acme", email, "--role", "basic_user")
    assert code == 0
    added = json.loads(out)
    assert added["principal_id"] == sub and added["display_name"] == email
    assert run_cli("principal", "add", "acme", "sub-1", "--role", "viewer")[0] == 0  # an id Cognito does not know
    client_id = json.loads(run_cli("--json", "client", "create", "acme", "batch", "--role", "viewer")[1])["client_id"]
    code, out, _ = run_cli("--json", "principal", "roles", email, "--role", "power_user")
    assert code == 0 and json.loads(out)["principal_id"] == sub and json.loads(out)["roles"] == ["power_user"]

    code, out, _ = run_cli("--json", "principal", "list", "acme")
    listed = {p["principal_id"]: (p["username"], p["email"]) for p in json.loads(out)}
    assert listed == {sub: (email, email), "sub-1": (None, None), client_id: (None, None)}
    code, out, _ = run_cli("principal", "list", "acme")
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["PRINCIPAL_ID", "USERNAME", "EMAIL"]
    assert next(r for r in rows if r.startswith(sub)).split()[1:3] == [email, email]
    code, out, _ = run_cli("tenant", "show", "acme")
    assert code == 0 and email in out

    before = _all_items(moto_tables)
    code, out, err = run_cli("principal", "add", "acme", "nobody@acme.example", "--role", "viewer")
    assert code == 1 and out == ""
    assert err == "gatewayctl: error: no principal and no Cognito user named 'nobody@acme.example'\n"
    assert _all_items(moto_tables) == before
