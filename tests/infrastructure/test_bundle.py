"""The Lambda asset: built without Docker, under 20 MB unzipped, no boto3, no bytecode, run.sh executable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.infrastructure

LIMIT_BYTES = 20 * 1024 * 1024


def _asset_dir(synthesized) -> Path:
    outdir = Path(synthesized.assembly.directory)
    candidates = [p for p in outdir.glob("asset.*") if (p / "run.sh").exists()]
    assert len(candidates) == 1, candidates
    return candidates[0]


def test_bundle_is_under_twenty_megabytes_unzipped(dev):
    asset = _asset_dir(dev)
    size = sum(f.stat().st_size for f in asset.rglob("*") if f.is_file())
    assert size < LIMIT_BYTES, f"Lambda bundle is {size / 2**20:.1f} MiB"


def test_bundle_has_the_app_and_its_arm64_dependencies_but_not_boto3(dev):
    asset = _asset_dir(dev)
    assert (asset / "gateway" / "settings.py").exists()
    assert (asset / "gateway" / "catalog.json").exists()
    assert (asset / "starlette").is_dir() and (asset / "uvicorn").is_dir()
    assert not (asset / "boto3").exists() and not (asset / "botocore").exists()
    assert "def shutdown(self)" in (asset / "urllib3" / "response.py").read_text()  # bedrock._close needs 2.3+
    native = list(asset.rglob("*.so"))
    assert all("x86_64" not in so.name for so in native), [so.name for so in native if "x86_64" in so.name]


def test_bundle_ships_no_bytecode_and_an_executable_entry(dev):
    asset = _asset_dir(dev)
    assert list(asset.rglob("*.pyc")) == []
    assert os.access(asset / "run.sh", os.X_OK)
    assert "gateway.main:app" in (asset / "run.sh").read_text()


def test_shipped_google_auth_builds_wif_credentials_without_cryptography(dev):
    # The Vertex path, as the Lambda would run it: the bundle's own google-auth, no cryptography available.
    import subprocess
    import sys

    from tests.infrastructure.conftest import config_for

    script = (
        "import sys, json; sys.modules['cryptography'] = None\n"
        "from google.auth import aws\n"
        "import google.auth\n"
        "assert google.auth.__file__.startswith(sys.argv[1]), google.auth.__file__\n"
        "creds = aws.Credentials.from_info(json.loads(sys.argv[2]), scopes=['x'])\n"
        "print(type(creds).__name__)\n"
    )
    asset = str(_asset_dir(dev))
    result = subprocess.run(
        [sys.executable, "-S", "-c", script, asset, config_for("prod").vertex_wif_config],
        env={"PYTHONPATH": asset, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "Credentials"


def test_bundle_ships_exactly_the_locked_versions(dev):
    from stacks.bundling import LOCK, installed_versions

    locked = {
        line.split("==")[0].lower().replace("_", "-"): line.split("==")[1]
        for line in LOCK.read_text().splitlines()
        if line and not line.startswith("#")
    }
    shipped = {name.lower().replace("_", "-"): version for name, version in installed_versions(_asset_dir(dev))}
    assert shipped == locked


def test_the_audit_writer_has_its_own_bundle_with_nothing_but_its_package(dev):
    import subprocess
    import sys

    outdir = Path(dev.assembly.directory)
    writers = [p for p in outdir.glob("asset.*") if (p / "audit_writer" / "handler.py").exists()]
    assert len(writers) == 1, writers
    shipped = {p.relative_to(writers[0]).as_posix() for p in writers[0].rglob("*") if p.is_file()}
    assert shipped == {"audit_writer/__init__.py", "audit_writer/handler.py", "audit_writer/writer.py"}
    assert not (_asset_dir(dev) / "audit_writer").exists()  # and the gateway's bundle does not carry it
    # Importable as Lambda loads it: the bundle alone on the path, no boto3 needed until the first event.
    result = subprocess.run(
        [sys.executable, "-S", "-c", "import audit_writer.handler as h; print(h.kinesis_handler.__name__)"],
        env={"PYTHONPATH": str(writers[0]), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
