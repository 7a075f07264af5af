"""Bundle the gateway Lambda's code without Docker.

`pip install --platform manylinux2014_aarch64 --only-binary=:all: --no-compile --no-deps --target` installs
the arm64 wheels pinned in lambda_src/requirements.lock (every package, transitive ones too, resolved from
lambda_src/requirements.txt by `python -m stacks.bundling lock`, which `make lock` runs); the result is
cached under .build/ by a hash of the lock, so repeated syntheses (tests, the benchmark) copy instead of
downloading. boto3 comes from the Lambda runtime.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

ROOT = Path(__file__).resolve().parent.parent
LAMBDA_SRC = ROOT / "lambda_src"
CACHE_DIR = Path(os.environ.get("GATEWAY_BUILD_DIR", ROOT / ".build"))
PYTHON_VERSION = "3.13"
# Copied from lambda_src into the bundle; everything else there (tests, caches) stays out.
_SHIPPED = ("gateway", "run.sh")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
REQUIREMENTS = LAMBDA_SRC / "requirements.txt"
LOCK = LAMBDA_SRC / "requirements.lock"
# The wheels Lambda's python3.13 arm64 runtime can load.
_PLATFORM_FLAGS = (
    "--platform",
    "manylinux2014_aarch64",
    "--implementation",
    "cp",
    "--python-version",
    PYTHON_VERSION,
    "--only-binary=:all:",
)


class BundlingError(RuntimeError):
    pass


def requirements_digest(requirements: Path = LOCK) -> str:
    return hashlib.sha256(requirements.read_bytes() + PYTHON_VERSION.encode()).hexdigest()[:16]


def dependencies_dir(requirements: Path = LOCK) -> Path:
    """The installed dependencies pinned in `requirements` (a lock), built once per content hash.

    --no-deps: the lock lists every package, so nothing outside it can enter the bundle.
    """
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
        "--no-deps",
        *_PLATFORM_FLAGS,
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


def build_audit_writer_bundle(output_dir: Path) -> None:
    """Only the audit_writer package: it needs nothing but the Lambda runtime's boto3."""
    shutil.copytree(LAMBDA_SRC / "audit_writer", output_dir / "audit_writer", dirs_exist_ok=True, ignore=_IGNORED)


@jsii.implements(ILocalBundling)
class _AuditWriterBundling:
    def try_bundle(self, output_dir: str, *, image=None, **_options) -> bool:  # noqa: ANN001 - jsii signature
        build_audit_writer_bundle(Path(output_dir))
        return True


def audit_writer_code() -> lambda_.Code:
    """The audit writer's own asset, hashed on its output, so a change to the gateway does not redeploy it."""
    return lambda_.Code.from_asset(
        str(LAMBDA_SRC / "audit_writer"),
        asset_hash_type=AssetHashType.OUTPUT,
        bundling=BundlingOptions(
            image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.13"),  # never used, as above
            local=_AuditWriterBundling(),
        ),
    )


def gateway_code() -> lambda_.Code:
    """The Lambda asset: dependencies + the gateway package + run.sh; the asset hash covers the sources."""
    return lambda_.Code.from_asset(
        str(LAMBDA_SRC),
        exclude=["**/__pycache__", "**/*.pyc", ".pytest_cache", "audit_writer"],
        bundling=BundlingOptions(
            # Never used: local bundling always succeeds or raises; CDK requires an image to be named.
            image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.13"),
            local=_LocalPipBundling(),
        ),
    )


def lock(requirements: Path = REQUIREMENTS, out: Path = LOCK) -> list[str]:
    """Resolve `requirements` for the Lambda platform and write every resolved package, pinned, to `out`."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        command += ["--no-compile", *_PLATFORM_FLAGS, "--target", tmp, "-r", str(requirements)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise BundlingError(f"resolving {requirements} failed:\n{result.stderr[-2000:]}")
        pins = installed_versions(Path(tmp))
    header = (
        f"# Every package the Lambda bundle ships, pinned (manylinux2014_aarch64, CPython {PYTHON_VERSION}).\n"
        f"# Generated from {requirements.name} by `python -m stacks.bundling lock` (`make lock`); do not edit.\n"
    )
    out.write_text(header + "".join(f"{name}=={version}\n" for name, version in pins))
    return [f"{name}=={version}" for name, version in pins]


def installed_versions(site: Path) -> list[tuple[str, str]]:
    """(name, version) of every distribution installed in `site`, sorted by name."""
    found = []
    for meta in site.glob("*.dist-info/METADATA"):
        fields = dict(
            line.split(": ", 1) for line in meta.read_text(errors="replace").splitlines()[:20] if ": " in line
        )
        found.append((fields["Name"], fields["Version"]))
    return sorted(found, key=lambda nv: nv[0].lower())


if __name__ == "__main__":
    if sys.argv[1:] != ["lock"]:
        sys.exit("usage: python -m stacks.bundling lock")
    print("\n".join(lock()))
