"""gatewayctl as a person (or Claude Code) runs it, in fresh processes against a local stack that
`make local-up` started: `make local-up` returns once the stack is up, `health` passes on it, the
README's examples run as written, and `gatewayctl token` works from any directory with no terminal,
for the local stack and for the cloud. The stack runs on free ports with its own state directory and
home (nothing of the user's is read or written)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

REPO = Path(__file__).resolve().parents[2]
GATEWAYCTL = Path(sys.executable).with_name("gatewayctl")  # the console script `make install` made


@dataclass
class RunningStack:
    env: dict[str, str]  # the environment every command here runs with
    state: dict
    up: subprocess.CompletedProcess

    def run(self, *args: str, cwd: Path = REPO, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(GATEWAYCTL), *args],
            cwd=cwd,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=120,
            **kwargs,
        )

    def cognito(self):
        return boto3.client(
            "cognito-idp",
            region_name=self.state["region"],
            endpoint_url=self.state["moto_endpoint"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


def clean_env(home: Path) -> dict[str, str]:
    """This process's environment without any AWS setting (the harness points those at its own moto),
    with a home of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GATEWAY_", "XDG_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache"))
    return env


def make(target: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    # -o install: the checkout is installed already (make test installs first); never reinstall here.
    return subprocess.run(
        ["make", "--no-print-directory", "-o", "install", target, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[RunningStack]:
    root = tmp_path_factory.mktemp("cli")
    env = {**clean_env(root / "home"), "GATEWAY_LOCAL_DIR": str(root / ".local")}
    up = make("local-up", env, "LOCAL_ARGS=--free-ports")  # returns: it must not block
    try:
        state = json.loads((root / ".local" / "stack.json").read_text()) if up.returncode == 0 else {}
        yield RunningStack(env, state, up)
    finally:
        down = make("local-down", env)
        assert down.returncode == 0, down.stderr


def test_make_local_up_returns_once_the_stack_is_up(stack):
    assert stack.up.returncode == 0, stack.up.stdout + stack.up.stderr
    assert "local stack up: http://127.0.0.1:" in stack.up.stdout
    status = stack.run("local", "status", "--json")
    assert status.returncode == 0, status.stdout
    assert json.loads(status.stdout)["healthy"] is True


def test_health_passes_on_a_healthy_local_stack(stack):
    result = stack.run("health", "--json")

    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(result.stdout)
    assert {r["provider"] for r in rows} == {"bedrock", "vertex"}
    assert all(r["healthy"] and r["error"] is None for r in rows), rows


def readme_commands() -> list[str]:
    """Every gatewayctl command line in the README's bash blocks that names no placeholder (<...>)."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [
        line
        for line in lines
        if line.startswith(("gatewayctl ", ".venv/bin/gatewayctl ")) and "<" not in line and "$(" not in line
    ]


def test_the_readme_examples_run_as_written(stack, tmp_path):
    commands = readme_commands()
    first_words = {" ".join(shlex.split(c, comments=True)[1:3]) for c in commands}
    assert {"login --username", "chat Hello", "tenant create", "principal add", "gdpr export", "gdpr erase"} <= (
        first_words
    )
    alice = next(u for u in stack.state["demo"]["users"] if u["username"] == "alice@acme.example")
    # Given the person the README adds exists in Cognito (people are invited there first)
    stack.cognito().admin_create_user(
        UserPoolId=stack.state["cognito"]["user_pool_id"],
        Username="peter@initech.example",
        UserAttributes=[{"Name": "email", "Value": "peter@initech.example"}],
        MessageAction="SUPPRESS",
    )
    env = {**stack.env, "GATEWAY_PASSWORD": alice["password"]}  # login reads it where it would ask

    results = []
    for line in commands:
        argv = shlex.split(line, comments=True)
        results.append((line, stack.run(*argv[1:], env=env, stdin=subprocess.DEVNULL)))

    failed = [(line, r.returncode, r.stdout[-500:], r.stderr[-500:]) for line, r in results if r.returncode != 0]
    assert failed == []
    outputs = {line.split("#")[0].strip(): r.stdout for line, r in results}
    assert outputs['.venv/bin/gatewayctl chat "Hello"'].strip() == "Emulated reply to: Hello"
    assert "peter@initech.example" in outputs["gatewayctl principal list initech"]


# -- `gatewayctl token` as Claude Code's apiKeyHelper --------------------------------------------


def helper(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The helper line as Claude Code runs it: the absolute command, another directory, stdin closed."""
    command = " ".join(shlex.quote(a) for a in (str(GATEWAYCTL), *args))
    return subprocess.run(
        ["bash", "-c", f"exec 0<&-; {command}"], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_token_works_from_any_directory_with_stdin_closed(stack, tmp_path):
    import anthropic
    import jwt

    elsewhere = tmp_path / "some-project"
    elsewhere.mkdir()
    # No GATEWAY_LOCAL_DIR: the stack is found from the pointer `local up` left in the config dir.
    env = {k: v for k, v in stack.env.items() if k != "GATEWAY_LOCAL_DIR"}
    alice = next(u for u in stack.state["demo"]["users"] if u["username"] == "alice@acme.example")

    # The README's helper line, with this checkout for its placeholder path.
    (line,) = re.findall(r'"apiKeyHelper": "([^"]+)"', (REPO / "README.md").read_text())
    command = shlex.split(line.replace("/path/to/claude-gateway", str(REPO)))
    assert command[0] == str(GATEWAYCTL) and command[1:] == ["token"]

    logged_in = helper(env, elsewhere, "login", "--username", alice["username"], "--password", alice["password"])
    token = helper(env, elsewhere, *command[1:])

    assert logged_in.returncode == 0, logged_in.stderr
    assert token.returncode == 0, token.stderr
    assert token.stderr == "" and token.stdout.count("\n") == 1  # only the token on stdout
    jwks = jwt.PyJWKClient(stack.state["cognito"]["jwks_url"])
    claims = jwt.decode(
        token.stdout.strip(),
        jwks.get_signing_key_from_jwt(token.stdout.strip()).key,
        algorithms=["RS256"],
        issuer=stack.state["cognito"]["issuer"],
    )
    assert claims["token_use"] == "access" and claims["username"] == alice["username"]
    reply = anthropic.Anthropic(
        base_url=stack.state["endpoint"], auth_token=token.stdout.strip(), max_retries=0
    ).messages.create(model="claude-haiku-4-5", max_tokens=20, messages=[{"role": "user", "content": "via helper"}])
    assert reply.content[0].text == "Emulated reply to: via helper"


def test_login_without_a_terminal_never_waits_for_one(stack, tmp_path):
    env = {k: v for k, v in stack.env.items() if k != "GATEWAY_LOCAL_DIR"}

    no_password = helper(env, tmp_path, "login", "--username", "alice@acme.example")
    no_username = helper(env, tmp_path, "login")

    assert no_password.returncode == 1 and no_password.stdout == ""
    assert no_password.stderr == (
        "gatewayctl: error: no terminal to ask for the password: pass --password or set GATEWAY_PASSWORD\n"
    )
    assert no_username.returncode == 1
    assert no_username.stderr == "gatewayctl: error: no terminal to ask for the user name: pass --username\n"


class FakeTokenEndpoint:
    """A Cognito domain's /oauth2/token that answers the refresh_token grant; it records every request."""

    def __init__(self, *, refuse: bool = False) -> None:
        import http.server
        import threading
        import urllib.parse

        self.requests: list[tuple[str, str, dict[str, str]]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                form = {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}
                fake.requests.append(("POST", self.path, form))
                ok = not refuse and self.path == "/oauth2/token" and form.get("grant_type") == "refresh_token"
                answer = {"access_token": "refreshed.access.token", "id_token": "i", "expires_in": 3600}
                self.send_response(200 if ok else 400)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(answer if ok else {"error": "invalid_grant"}).encode())

            def do_GET(self):  # noqa: N802
                fake.requests.append(("GET", self.path, {}))
                self.send_response(404)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def saved_cloud_login(home: Path, token_endpoint: str, **extra) -> Path:
    """The state `gatewayctl login` saves for the cloud (env dev), with an access token past its expiry."""
    path = home / ".config" / "claude-gateway" / "login-dev.json"
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps(
            {
                "access_token": "old.access.token",
                "refresh_token": "refresh-1",
                "expires_at": 0,
                "client_id": "people-client-id",
                "username": "dana",
                "env": "dev",
                "region": "eu-west-1",
                "domain": token_endpoint.removesuffix("/oauth2/token"),
                "token_endpoint": token_endpoint,
                "scope": "gateway/invoke",
                "endpoint": "https://gateway.example/prod/",
                **extra,
            }
        )
    )
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("refuse", [False, True])
def test_cloud_token_refreshes_from_the_saved_login_with_no_aws_credentials(tmp_path, refuse):
    endpoint = FakeTokenEndpoint(refuse=refuse)
    home = tmp_path / "home"
    saved = saved_cloud_login(home, f"{endpoint.url}/oauth2/token")
    # No AWS variable at all, and no local stack to find: the cloud target, from the saved login only.
    env = {**clean_env(home), "GATEWAY_LOCAL_DIR": str(tmp_path / "no-stack"), "AWS_EC2_METADATA_DISABLED": "true"}
    try:
        first = helper(env, tmp_path, "token")
        second = helper(env, tmp_path, "token")
    finally:
        endpoint.close()

    grant = {"grant_type": "refresh_token", "client_id": "people-client-id", "refresh_token": "refresh-1"}
    if refuse:
        assert first.returncode == 1 and first.stdout == ""
        assert first.stderr.startswith("gatewayctl: error: the token endpoint refused the refresh (HTTP 400")
        assert first.stderr.rstrip().endswith("run `gatewayctl login` again") and first.stderr.count("\n") == 1
        assert endpoint.requests[0] == ("POST", "/oauth2/token", grant)
        return
    assert first.returncode == 0, first.stderr
    assert first.stdout == "refreshed.access.token\n" and first.stderr == ""
    assert second.stdout == "refreshed.access.token\n"  # fresh now: no second refresh
    assert endpoint.requests == [("POST", "/oauth2/token", grant)]  # and nothing else was asked of anyone
    assert oct(saved.stat().st_mode & 0o777) == "0o600"
    assert json.loads(saved.read_text())["access_token"] == "refreshed.access.token"
