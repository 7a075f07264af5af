"""Where gatewayctl finds the local stack and keeps sign-ins, and the cloud login and refresh without
AWS: no sockets (the token endpoint is a function here), the user's config dir replaced by a temporary one."""

from __future__ import annotations

import io
import json
import stat
import sys
from pathlib import Path

import pytest

from gatewayctl import cli, credentials, paths
from gatewayctl import target as target_module
from gatewayctl.commands import login
from gatewayctl.output import CommandError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("GATEWAY_LOCAL_DIR", raising=False)
    return tmp_path / "config" / "claude-gateway"


def test_the_local_stack_is_found_the_same_way_from_any_directory(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the checkout
    assert paths.checkout() == REPO
    assert paths.local_home() == REPO / ".local"
    assert paths.local_state() == REPO / ".local" / "stack.json"  # no pointer: the checkout's

    elsewhere = tmp_path / "stack" / "stack.json"
    elsewhere.parent.mkdir()
    elsewhere.write_text("{}")
    paths.point_to(elsewhere)
    assert paths.local_state() == elsewhere  # the stack `local up` last started
    paths.unpoint(tmp_path / "another" / "stack.json")
    assert paths.local_state() == elsewhere  # a pointer to another stack stays
    elsewhere.unlink()
    assert paths.local_state() == REPO / ".local" / "stack.json"  # a stack that is gone is not followed

    monkeypatch.setenv("GATEWAY_LOCAL_DIR", str(tmp_path / "explicit"))
    assert paths.local_state() == tmp_path / "explicit" / "stack.json"  # always first
    paths.unpoint(elsewhere)
    assert not (config / paths.POINTER).exists()


def test_cloud_token_uses_the_refresh_grant_and_never_cloudformation(config, monkeypatch, capsys):
    monkeypatch.setattr(credentials, "LOCAL_STATE", Path("/nonexistent/stack.json"))
    monkeypatch.setattr(target_module, "load_cloud", lambda *a, **k: pytest.fail("CloudFormation was read"))
    credentials.save_cloud_login(
        "prod",
        region="eu-west-1",
        domain="https://acme.auth.eu-west-1.amazoncognito.com/",
        client_id="people",
        scope="gateway/invoke",
        endpoint="https://gateway.example/",
        tokens={"access_token": "old", "refresh_token": "r1", "expires_at": 0, "client_id": "people"},
    )
    posted = []

    def post(url, form):
        posted.append((url, form))
        return {"access_token": "new", "expires_in": 3600, "refresh_token": "r2"}

    monkeypatch.setattr(credentials, "post_form", post)

    assert cli.main(["--env", "prod", "token"]) == 0
    assert capsys.readouterr().out == "new\n"
    assert posted == [
        (
            "https://acme.auth.eu-west-1.amazoncognito.com/oauth2/token",
            {"grant_type": "refresh_token", "client_id": "people", "refresh_token": "r1"},
        )
    ]
    saved = json.loads((config / "login-prod.json").read_text())
    assert saved["refresh_token"] == "r2" and saved["access_token"] == "new"  # a rotated refresh token is kept
    assert stat.S_IMODE((config / "login-prod.json").stat().st_mode) == 0o600

    assert cli.main(["--env", "staging", "token"]) == 1  # no login for that environment: one line, no prompt
    assert capsys.readouterr().err == (
        "gatewayctl: error: not signed in to the staging gateway: "
        "run `gatewayctl --target cloud --env staging login --domain ...` first\n"
    )


def test_cloud_login_with_flags_saves_what_a_refresh_needs_without_aws(config, monkeypatch, capsys):
    monkeypatch.setattr(target_module, "load_cloud", lambda *a, **k: pytest.fail("CloudFormation was read"))
    monkeypatch.setattr(login, "_interactive", lambda: True)
    seen = {}

    def fake_pkce(target, domain, **kwargs):
        seen.update(client_id=target.output("UserPoolClientId"), scope=target.output("InvokeScope"), domain=domain)
        return {"access_token": "a", "refresh_token": "r", "expires_at": 4102444800, "client_id": "people"}

    monkeypatch.setattr(login, "pkce_login", fake_pkce)

    code = cli.main(
        [
            "--target", "cloud", "login",
            "--domain", "https://acme.auth.eu-central-1.amazoncognito.com",
            "--client-id", "people", "--endpoint", "https://gateway.example/",
        ]
    )  # fmt: skip

    assert code == 0, capsys.readouterr().err
    assert seen == {
        "client_id": "people",
        "scope": "gateway/invoke",
        "domain": "https://acme.auth.eu-central-1.amazoncognito.com",
    }
    saved = json.loads((config / "login-dev.json").read_text())
    assert {k: saved[k] for k in ("region", "token_endpoint", "client_id", "endpoint", "refresh_token")} == {
        "region": "eu-central-1",
        "token_endpoint": "https://acme.auth.eu-central-1.amazoncognito.com/oauth2/token",
        "client_id": "people",
        "endpoint": "https://gateway.example/",
        "refresh_token": "r",
    }
    assert stat.S_IMODE((config / "login-dev.json").stat().st_mode) == 0o600


def test_cloud_login_without_a_terminal_fails_at_once(config, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal
    monkeypatch.setattr(login, "pkce_login", lambda *a, **k: pytest.fail("the sign-in started"))

    code = cli.main(
        ["--target", "cloud", "login", "--domain", "https://x.auth.eu-west-1.amazoncognito.com",
         "--client-id", "people", "--endpoint", "https://gateway.example/"]
    )  # fmt: skip

    assert code == 1
    assert capsys.readouterr().err == (
        "gatewayctl: error: cloud login signs in in a browser and waits for it: run it in a terminal\n"
    )


def test_a_closed_stdin_is_no_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stdin", None)  # what Python has when file descriptor 0 is closed
    assert login._interactive() is False
    with pytest.raises(CommandError, match="no terminal to ask for the password"):
        login._ask("password", input, "pass --password")


def _cloud_target(outputs: dict) -> target_module.Target:
    base = {"UserPoolClientId": "people", "InvokeScope": "gateway/invoke", "ApiEndpoint": "https://gateway.example/"}
    return target_module.Target(kind="cloud", region="eu-central-1", outputs={**base, **outputs})


def test_cloud_login_finds_the_domain_in_the_stack_outputs(config, monkeypatch, capsys):
    domain = "https://acme.auth.eu-central-1.amazoncognito.com"
    monkeypatch.setattr(target_module, "load_cloud", lambda *a, **k: _cloud_target({"CognitoDomainUrl": domain}))
    monkeypatch.setattr(login, "resolve", lambda args: target_module.load_cloud("dev", None))
    monkeypatch.setattr(login, "_interactive", lambda: True)
    seen = {}

    def fake_pkce(target, used, **kwargs):
        seen["domain"] = used
        return {"access_token": "a", "refresh_token": "r", "expires_at": 4102444800, "client_id": "people"}

    monkeypatch.setattr(login, "pkce_login", fake_pkce)

    assert cli.main(["--target", "cloud", "login"]) == 0, capsys.readouterr().err
    assert seen == {"domain": domain}
    assert json.loads((config / "login-dev.json").read_text())["token_endpoint"] == f"{domain}/oauth2/token"


def test_cloud_login_without_the_output_or_domain_says_what_is_missing(config, monkeypatch, capsys):
    monkeypatch.setattr(login, "resolve", lambda args: _cloud_target({}))
    monkeypatch.setattr(login, "pkce_login", lambda *a, **k: pytest.fail("the sign-in started"))

    assert cli.main(["--target", "cloud", "login"]) == 1
    assert "no CognitoDomainUrl output" in capsys.readouterr().err
