"""gatewayctl as a person runs it, in fresh processes against a local stack that `make local-up` started:
`make local-up` returns once the stack is up, `health` passes on it, and the README's examples run
as written. The stack runs on free ports with its own state directory and home (nothing of the
user's is read or written)."""

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

    def run(self, *args: str, cwd: Path = REPO, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(GATEWAYCTL), *args], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=120, **kwargs
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
    stack.env["GATEWAY_PASSWORD"] = alice["password"]  # login reads it where it would ask

    results = []
    for line in commands:
        argv = shlex.split(line, comments=True)
        results.append((line, stack.run(*argv[1:], stdin=subprocess.DEVNULL)))

    failed = [(line, r.returncode, r.stdout[-500:], r.stderr[-500:]) for line, r in results if r.returncode != 0]
    assert failed == []
    outputs = {line.split("#")[0].strip(): r.stdout for line, r in results}
    assert outputs['.venv/bin/gatewayctl chat "Hello"'].strip() == "Emulated reply to: Hello"
    assert "peter@initech.example" in outputs["gatewayctl principal list initech"]
