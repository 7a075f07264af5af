"""`gatewayctl demo` end to end, as `make demo` runs it (the smoke run `.ci/run` exercises through
`make test`): a fresh process, its own .local directory and free ports, the local stack started and
stopped by the demo itself; then the demo's reporting: a step that does not show what it claims
fails the demo."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gatewayctl.demo import Demo, Out, StepResult
from gatewayctl.local.processes import alive, free_port_run
from gatewayctl.target import Target

REPO = Path(__file__).resolve().parents[2]


def steps_of(stdout: str) -> dict[int, str]:
    """Each step's output, by number (from its heading to the next)."""
    parts = re.split(r"^== (\d)/6 ", stdout, flags=re.M)
    return {int(parts[i]): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_gatewayctl_demo_shows_all_six_steps_and_leaves_nothing_running(tmp_path):
    local_dir = tmp_path / ".local"
    base = free_port_run(10)
    ports = {"gateway": base, "moto": base + 1, "bedrock-control": base + 2, "vertex": base + 3}
    flags = [x for name, port in ports.items() for x in (f"--{name}-port", str(port))]
    flags += ["--bedrock-base-port", str(base + 4)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # not the harness's moto
    env["GATEWAY_LOCAL_DIR"] = str(local_dir)

    def demo() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "gatewayctl.cli", "demo", *flags],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )

    run = demo()
    # `make demo` twice: a new stack in the same .local (its logs, the pump's checkpoint) shows it all again.
    again = demo()

    out = run.stdout
    assert run.returncode == 0, f"stdout:\n{out}\nstderr:\n{run.stderr}"
    assert again.returncode == 0, f"stdout:\n{again.stdout}\nstderr:\n{again.stderr}"
    assert "demo: 6/6 steps showed what they should" in again.stdout
    assert "demo: 6/6 steps showed what they should" in out
    assert "NOT SHOWN" not in out and "FAILED" not in out
    assert f"gateway: http://127.0.0.1:{base}" in out
    steps = steps_of(out)
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    for number, text in steps.items():
        assert f"step {number}: OK" in text

    # 1. streamed through the SDK, in more than one piece
    deltas = int(re.search(r"(\d+) text deltas", steps[1]).group(1))
    assert deltas > 1 and "reply: Emulated reply to: Tell me what a gateway for Claude does" in steps[1]
    # 2. two refusals, no model call
    assert steps[2].count("-> 403 permission_error") == 2
    assert "upstream calls: none" in steps[2]
    # 3. two 200s, then the 429 with retry-after (a fresh stack: nothing used yet)
    assert re.search(r"request 1: 200 .*\n.*request 2: 200 .*\n.*request 3: 429 rate_limit_error", steps[3])
    assert re.search(r"retry-after \d+s", steps[3])
    # 4. one call to each region of the residency
    assert "{'us-east-1': 1, 'us-west-2': 1}" in steps[4]
    # 5. the audit rows, the recorded attempts, verify clean
    assert "bedrock us-east-1 ThrottlingException (429) -> bedrock us-west-2 served" in steps[5]
    assert re.search(r"4 failover +response +200 +acme +claude-haiku-4-5 +us-west-2 +2 ", steps[5])
    assert re.search(r"3 quota 429 +denied +429 .* refused", steps[5])
    verify = re.search(r"OK +WITNESSED +AUDITED.*\n +(\w+) +(\d+) +(\d+)", steps[5])
    assert verify and verify.group(1) == "True" and int(verify.group(2)) == 7 == int(verify.group(3))
    # 6. the export file: alice's records by pseudonym, none naming her
    export_file = max(local_dir.glob("gdpr-export-*.json"), key=lambda p: p.stat().st_mtime)
    export = json.loads(export_file.read_text())
    sub = export["principal_id"]
    assert export["principal"]["display_name"] == "alice@acme.example"
    assert {r["event_type"] for r in export["records"]} == {"request", "response", "denied"}
    assert len(export["records"]) == 4 and all(
        r["principal"] == export["pseudonym"] for r in export["records"]
    )
    assert sub not in json.dumps(export["records"]) and "alice" not in json.dumps(export["records"])
    assert oct(export_file.stat().st_mode & 0o777) == "0o600"

    # The demo stopped the stack it started: no state, no process, every port free again.
    stopped = re.search(r"local stack \(pid (\d+), audit pump pid (\d+)\) stopped", out)
    assert stopped, out
    assert not (local_dir / "stack.json").exists()
    assert not any(alive(int(pid)) for pid in stopped.groups())
    assert all(port_free(p) for p in range(base, base + 8))


# -- the demo's reporting: a step that does not show what it should fails the demo ----------------


def bare_demo() -> Demo:
    target = Target(kind="local", region="us-east-1", outputs={}, local={"endpoint": "http://x"})
    demo = Demo(target, out=Out(sys.stdout))
    demo.seed = lambda: {}  # no stack here: the steps are replaced below
    return demo


@pytest.mark.parametrize("how", ["check", "raise"])
def test_a_step_that_does_not_show_what_it_claims_fails_the_demo(capsys, how):
    demo = bare_demo()

    def shows(result: StepResult) -> None:
        demo.check(result, True, "it showed it")

    def does_not(result: StepResult) -> None:
        if how == "raise":
            raise RuntimeError("the gateway answered 500")
        demo.check(result, True, "part of it")
        demo.check(result, False, "the region 2 reply")

    for name in ("step_stream", "step_refused", "step_quota", "step_audit", "step_gdpr"):
        setattr(demo, name, shows)
    demo.step_failover = does_not

    assert demo.run() is False
    out = capsys.readouterr().out
    assert "demo: 5/6 steps showed what they should" in out
    assert "step 4: FAILED" in out and "step 5: OK" in out
    if how == "raise":
        assert "FAILED: RuntimeError: the gateway answered 500" in out
    else:
        assert "[NOT SHOWN] the region 2 reply" in out
        assert "step 4 (A throttled region, served by failover): the region 2 reply" in out


def test_every_step_shown_passes(capsys):
    demo = bare_demo()
    for name in ("step_stream", "step_refused", "step_quota", "step_failover", "step_audit", "step_gdpr"):
        setattr(demo, name, lambda result: demo.check(result, True, "shown"))

    assert demo.run() is True
    assert "demo: 6/6 steps showed what they should" in capsys.readouterr().out


def test_a_step_with_no_evidence_at_all_is_not_a_pass(capsys):
    demo = bare_demo()
    for name in ("step_stream", "step_refused", "step_quota", "step_failover", "step_audit", "step_gdpr"):
        setattr(demo, name, lambda result: demo.check(result, True, "shown"))
    demo.step_gdpr = lambda result: None  # claims nothing

    assert demo.run() is False
    assert "step 6: FAILED" in capsys.readouterr().out


def test_the_demo_against_a_stack_in_this_process(tmp_path):
    """The same six steps as `gatewayctl demo`, against a LocalStack started here (resources named for
    env `demo`, so they sit beside the worker's own stack in moto), with the pump run by the demo."""
    import io

    from gatewayctl.local.stack import LocalStack, StackOptions

    environ = dict(os.environ)  # a stack sets its moto endpoint here; the worker's stack needs its own back
    stack = LocalStack(StackOptions(env="demo"))
    try:
        stack.start()
        out = io.StringIO()
        ok = Demo(stack.target(), out=Out(out), export_dir=tmp_path).run()
    finally:
        stack.stop()
        os.environ.clear()
        os.environ.update(environ)

    text = out.getvalue()
    assert ok, text
    assert "demo: 6/6 steps showed what they should" in text and "NOT SHOWN" not in text
    assert "bedrock us-east-1 ThrottlingException (429) -> bedrock us-west-2 served" in text
    [export] = tmp_path.glob("gdpr-export-*.json")
    assert oct(export.stat().st_mode & 0o777) == "0o600"
    assert json.loads(export.read_text())["principal"]["display_name"] == "alice@acme.example"
