"""The real CDK CLI synthesizes offline from app.py, and cfn-lint passes on what it writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.infrastructure

ROOT = Path(__file__).resolve().parents[2]
CDK = ROOT / ".tools" / "node_modules" / ".bin" / "cdk"


def test_cdk_cli_synth_and_cfn_lint(tmp_path):
    assert CDK.exists(), "the pinned CDK CLI is missing: run `make install`"
    env = {
        **os.environ,
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "CDK_DISABLE_VERSION_CHECK": "1",
        "CDK_CLI_NOTICES": "false",
    }
    synth = subprocess.run(
        [
            str(CDK),
            "synth",
            "--app",
            f"{sys.executable} app.py",
            "-c",
            "env=dev",
            "--output",
            str(tmp_path),
            "--quiet",
            "--no-notices",
            "--no-version-reporting",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert synth.returncode == 0, synth.stderr[-3000:]
    templates = sorted(tmp_path.glob("*.template.json"))
    assert [t.name for t in templates] == [
        "claude-gateway-dev-stateful.template.json",
        "claude-gateway-dev-stateless.template.json",
    ]
    lint = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), *map(str, templates)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert lint.returncode == 0, lint.stdout[-3000:]
