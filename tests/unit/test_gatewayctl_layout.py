"""gatewayctl's layout rules: the cloud path never loads the local stack, and the tables' key layout
comes only from the runtime's contract modules (gateway.models.tenant_items, usage_items)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "gatewayctl"
# What only the local stack and its demo use; everything else must run with no local stack code.
LOCAL_ONLY = ("gatewayctl.local", "gatewayctl.demo", "gatewayctl.commands.local", "gatewayctl.commands.demo")


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def is_local_only(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in LOCAL_ONLY)


def test_the_cloud_path_imports_no_local_stack_module():
    cloud = [name for name in module_names() if not is_local_only(name)]
    expected = {"gatewayctl.cli", "gatewayctl.admin.tenants", "gatewayctl.auditing.dlq", "gatewayctl.commands.audit"}
    assert expected <= set(cloud)
    # A fresh interpreter: this process may have imported the local stack already.
    script = (
        "import importlib, json, sys\n"
        f"for name in {cloud!r}:\n"
        "    importlib.import_module(name)\n"
        "from gatewayctl import cli\n"
        "cli.build_parser()  # registers every command group, `local` and `demo` too\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('gatewayctl.'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert {"gatewayctl.commands.local", "gatewayctl.commands.demo", "gatewayctl.admin"} <= set(loaded)
    local_stack = [m for m in loaded if m.split(".")[:2] in (["gatewayctl", "local"], ["gatewayctl", "demo"])]
    assert local_stack == []


def test_no_table_key_literals_in_gatewayctl():
    literal = re.compile(r"TENANT#|PRINCIPAL#|ROLE#|USAGE#|BREAKER#|[\"']CONFIG[\"']")
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert found == []
