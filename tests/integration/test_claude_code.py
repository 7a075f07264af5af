"""Claude Code (npm @anthropic-ai/claude-code, pinned in .tools/package.json) through the local stack, as
its users run it: `claude -p` with ANTHROPIC_BASE_URL at the gateway and `gatewayctl token` as its
apiKeyHelper, from a directory that is not the checkout. With its default model (served by Bedrock's
Messages-API endpoint), with a tool call (Read), with thinking, as a power_user and as a role with tools
but without high_tokens (its max_tokens clamped to 4096). Each run checks the reply and the caller's
audit records.

Claude Code runs with non-essential traffic off (no lookups of api.anthropic.com) and no retries, so
it talks only to the gateway; its home and config directory are the test's own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.integration.test_gatewayctl_cli import GATEWAYCTL, REPO, RunningStack, clean_env, make

pytestmark = pytest.mark.integration
CLAUDE = REPO / ".tools" / "node_modules" / ".bin" / "claude"
TENANT = "acme"


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Any:
    root = tmp_path_factory.mktemp("claude-code")
    env = {**clean_env(root / "home"), "GATEWAY_LOCAL_DIR": str(root / ".local")}
    up = make("local-up", env, "LOCAL_ARGS=--free-ports")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        running = RunningStack(env, json.loads((root / ".local" / "stack.json").read_text()), up)
        # A role with tools but not high_tokens, for alice.
        for args in (
            (
                "role",
                "define",
                TENANT,
                "coder",
                *(f"--permission={p}" for p in ("read", "write", "haiku", "sonnet", "opus", "tools")),
            ),
            ("principal", "roles", "alice@acme.example", "--role", "coder"),
        ):
            done = running.run(*args)
            assert done.returncode == 0, done.stderr
        yield running
    finally:
        make("local-down", env)


def user(stack: Any, name: str) -> dict[str, str]:
    return next(u for u in stack.state["demo"]["users"] if u["username"] == name)


class ClaudeCode:
    """One person's Claude Code: its own home, settings with the apiKeyHelper, a project directory."""

    def __init__(self, stack: Any, root: Path, username: str) -> None:
        self.stack = stack
        self.home = root / "home"
        self.project = root / "project"  # not the checkout
        (self.home / ".claude").mkdir(parents=True)
        self.project.mkdir()
        (self.project / "notes.txt").write_text("the answer is 42\n")
        # No GATEWAY_LOCAL_DIR: `gatewayctl token` finds the stack from the pointer `local up` left.
        self.env = {k: v for k, v in stack.env.items() if k != "GATEWAY_LOCAL_DIR"}
        self.env.update(
            HOME=str(self.home),
            CLAUDE_CONFIG_DIR=str(self.home / ".claude"),
            ANTHROPIC_BASE_URL=stack.state["endpoint"].rstrip("/"),
            CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
            DISABLE_AUTOUPDATER="1",
            DISABLE_TELEMETRY="1",
            DISABLE_ERROR_REPORTING="1",
            CLAUDE_CODE_MAX_RETRIES="0",
        )
        self.env["XDG_CONFIG_HOME"] = stack.env["XDG_CONFIG_HOME"]  # where `local up` left its pointer
        # The README's helper line, with this checkout's path.
        (line,) = set(__import__("re").findall(r'"apiKeyHelper": "([^"]+)"', (REPO / "README.md").read_text()))
        helper = line.replace("/path/to/claude-gateway", str(REPO))
        assert helper.split()[0] == str(GATEWAYCTL)
        (self.home / ".claude" / "settings.json").write_text(json.dumps({"apiKeyHelper": helper}))
        person = user(stack, username)
        login = subprocess.run(
            [str(GATEWAYCTL), "login", "--username", person["username"], "--password", person["password"]],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        assert login.returncode == 0, login.stderr

    def run(self, prompt: str, *args: str) -> dict[str, Any]:
        done = subprocess.run(
            [str(CLAUDE), "-p", prompt, "--output-format", "json", *args],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=180,
        )
        assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
        return json.loads(done.stdout)


def audit_records(stack: Any, principal_sub: str, since: float) -> list[dict[str, Any]]:
    """The caller's records on the audit stream (under their tenant and pseudonym), written since `since`."""
    aws = dict(region_name=stack.state["region"], endpoint_url=stack.state["moto_endpoint"],
               aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    ddb = boto3.client("dynamodb", **aws)
    item = ddb.get_item(
        TableName=stack.state["outputs"]["TenantsTableName"],
        Key={"pk": {"S": f"PRINCIPAL#{principal_sub}"}, "sk": {"S": "PRINCIPAL"}},
    )["Item"]
    secret = item["pseudonym_secret"]["S"]
    pseudonym = hmac.new(bytes.fromhex(secret), principal_sub.encode(), hashlib.sha256).hexdigest()
    kinesis = boto3.client("kinesis", **aws)
    stream = stack.state["outputs"]["AuditStreamName"]
    records = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="AT_TIMESTAMP", Timestamp=since
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            records += [json.loads(r["Data"]) for r in page["Records"]]
            iterator = page.get("NextShardIterator") if page["Records"] else None
    return [r for r in records if r["tenant_id"] == TENANT and r["principal"] == pseudonym]


def outcomes(stack: Any, sub: str, since: float, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while True:
        found = [r for r in audit_records(stack, sub, since) if r["event_type"] != "request"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_default_model_as_a_power_user(stack, tmp_path) -> None:
    claude = ClaudeCode(stack, tmp_path, "bob@acme.example")
    since = time.time() - 1
    result = claude.run("Say hello to the gateway")

    assert result["is_error"] is False and "Emulated reply" in result["result"]
    records = outcomes(stack, user(stack, "bob@acme.example")["sub"], since, 1)
    assert records and all(r["event_type"] == "response" and r["status"] == 200 for r in records)
    # Claude Code's default model is served by Bedrock's Messages-API endpoint.
    [main] = [r for r in records if r["model_alias"] == "claude-opus-5-5"]
    assert main["provider"] == "bedrock" and main["upstream_model_id"].startswith("anthropic.claude-opus-5-5")


def test_a_tool_call_runs_read_and_sends_its_result_back(stack, tmp_path) -> None:
    claude = ClaudeCode(stack, tmp_path, "bob@acme.example")
    since = time.time() - 1
    result = claude.run(
        f"Please use the Read tool on {claude.project}/notes.txt",
        "--model",
        "claude-sonnet-4-6",
        "--allowedTools",
        "Read",
    )

    assert result["is_error"] is False and result["num_turns"] >= 2
    records = outcomes(stack, user(stack, "bob@acme.example")["sub"], since, 2)
    assert len(records) >= 2 and {r["event_type"] for r in records} == {"response"}
    # the answers asked for tools; each later request carried their results
    assert records[-1]["input_tokens"] > records[0]["input_tokens"]
    control = stack.state["bedrock"]["control_url"]
    recent = json.loads(
        subprocess.run(["curl", "-s", f"{control}/_emulator/requests"], capture_output=True, text=True).stdout
    )["recent"]
    results = [
        block
        for r in recent
        for message in r["body"].get("messages", [])
        if isinstance(message.get("content"), list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]
    assert any("the answer is 42" in json.dumps(block) for block in results), json.dumps(results)[:2000]


def test_thinking_comes_back_as_thinking(stack, tmp_path) -> None:
    claude = ClaudeCode(stack, tmp_path, "bob@acme.example")
    since = time.time() - 1
    done = subprocess.run(
        [
            str(CLAUDE),
            "-p",
            "Think about the gateway",
            "--model",
            "claude-haiku-4-5",
            "--output-format",
            "stream-json",
            "--verbose",
        ],  # fmt: skip
        cwd=claude.project,
        env={**claude.env, "MAX_THINKING_TOKENS": "2048"},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    blocks = [b for e in events if e.get("type") == "assistant" for b in e["message"]["content"]]
    assert any(b["type"] == "thinking" for b in blocks), blocks
    records = outcomes(stack, user(stack, "bob@acme.example")["sub"], since, 1)
    assert all(r["status"] == 200 for r in records)
    assert any(r["model_alias"] == "claude-haiku-4-5" for r in records)


def test_a_role_without_high_tokens_is_clamped_not_refused(stack, tmp_path) -> None:
    claude = ClaudeCode(stack, tmp_path, "alice@acme.example")
    since = time.time() - 1
    result = claude.run("Say hello from a coder")

    assert result["is_error"] is False and "Emulated reply" in result["result"]
    records = outcomes(stack, user(stack, "alice@acme.example")["sub"], since, 1)
    assert records and all(r["event_type"] == "response" and r["status"] == 200 for r in records)
    # Claude Code asks for its model's largest output; without high_tokens the upstream got 4096.
    control = stack.state["bedrock"]["control_url"]
    recent = json.loads(
        subprocess.run(["curl", "-s", f"{control}/_emulator/requests"], capture_output=True, text=True).stdout
    )["recent"]
    assert any(r["body"].get("max_tokens") == 4096 for r in recent)
