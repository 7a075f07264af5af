"""Bundle the gateway Lambda's code without Docker.

`pip install --platform manylinux2014_aarch64 --only-binary=:all: --no-compile --target` pulls arm64 wheels
for lambda_src/requirements.txt; the result is cached under .build/ by a hash of requirements.txt, so
repeated syntheses (tests, the benchmark) copy instead of downloading. boto3 comes from the Lambda runtime.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsii
from aws_cdk import BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

ROOT = Path(__file__).resolve().parent.parent
LAMBDA_SRC = ROOT / "lambda_src"
CACHE_DIR = Path(os.environ.get("GATEWAY_BUILD_DIR", ROOT / ".build"))
PYTHON_VERSION = "3.13"
# Copied from lambda_src into the bundle; everything else there (tests, caches) stays out.
_SHIPPED = ("gateway", "run.sh")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


class BundlingError(RuntimeError):
    pass


def requirements_digest(requirements: Path = LAMBDA_SRC / "requirements.txt") -> str:
    return hashlib.sha256(requirements.read_bytes() + PYTHON_VERSION.encode()).hexdigest()[:16]


def dependencies_dir(requirements: Path = LAMBDA_SRC / "requirements.txt") -> Path:
    """The installed dependencies for `requirements`, built once per content hash."""
    target = CACHE_DIR / f"deps-{requirements_digest(requirements)}"
    if (target / ".complete").exists():
        return target
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--platform",
        "manylinux2014_aarch64",
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_VERSION,
        "--only-binary=:all:",
        "--target",
        str(partial),
        "-r",
        str(requirements),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BundlingError(f"pip install for the Lambda bundle failed:\n{result.stderr[-2000:]}")
    (partial / ".complete").write_text(" ".join(command))
    try:
        partial.rename(target)
    except OSError:  # another process (an xdist worker) finished first: use its copy
        shutil.rmtree(partial, ignore_errors=True)
    return target


def build_bundle(output_dir: Path) -> None:
    deps = dependencies_dir()
    shutil.copytree(deps, output_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".complete"))
    for name in _SHIPPED:
        source = LAMBDA_SRC / name
        if source.is_dir():
            shutil.copytree(source, output_dir / name, dirs_exist_ok=True, ignore=_IGNORED)
        else:
            shutil.copy2(source, output_dir / name)
    (output_dir / "run.sh").chmod(0o755)


@jsii.implements(ILocalBundling)
class _LocalPipBundling:
    def try_bundle(self, output_dir: str, *, image=None, **_options) -> bool:  # noqa: ANN001 - jsii signature
        build_bundle(Path(output_dir))
        return True


def gateway_code() -> lambda_.Code:
    """The Lambda asset: dependencies + the gateway package + run.sh; the asset hash covers the sources."""
    return lambda_.Code.from_asset(
        str(LAMBDA_SRC),
        exclude=["**/__pycache__", "**/*.pyc", ".pytest_cache"],
        bundling=BundlingOptions(
            # Never used: local bundling always succeeds or raises; CDK requires an image to be named.
            image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.13"),
            local=_LocalPipBundling(),
        ),
    )
