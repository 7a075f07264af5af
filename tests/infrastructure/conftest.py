"""Synthesize each environment once per test session (per xdist worker), in-process, with all nag packs."""

from __future__ import annotations

import os
from dataclasses import dataclass

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from stacks.composition import Gateway, build, feature_flags
from stacks.config import EnvironmentConfig, load
from stacks.nag import PACKS, apply_checks
from tests.infrastructure.sites import site_for

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")


def config_for(env: str) -> EnvironmentConfig:
    """The environment as the tests deploy it: staging and prod with the test site settings."""
    return load(env, site_for(env))


@dataclass
class Synthesized:
    env: str
    gateway: Gateway
    assembly: cdk.cx_api.CloudAssembly
    stateful: Template
    stateless: Template


def _synth(env: str, tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    app = cdk.App(context=feature_flags(), outdir=str(tmp_path_factory.mktemp(f"cdk-{env}")))
    gateway = build(app, config_for(env))
    apply_checks(app, list(PACKS))
    assembly = app.synth()
    return Synthesized(
        env=env,
        gateway=gateway,
        assembly=assembly,
        stateful=Template.from_stack(gateway.stateful),
        stateless=Template.from_stack(gateway.stateless),
    )


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return _synth("dev", tmp_path_factory)


@pytest.fixture(scope="session")
def staging(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return _synth("staging", tmp_path_factory)


@pytest.fixture(scope="session")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return _synth("prod", tmp_path_factory)


@pytest.fixture(params=["dev", "prod"])
def synthesized(request: pytest.FixtureRequest) -> Synthesized:
    return request.getfixturevalue(request.param)


@pytest.fixture(params=["dev", "staging", "prod"])
def every_environment(request: pytest.FixtureRequest) -> Synthesized:
    """Staging too: its shape differs from prod's (OIDC instead of SAML, no Cloud Logging mirror)."""
    return request.getfixturevalue(request.param)


def resources(template: Template, kind: str) -> dict[str, dict]:
    return template.find_resources(kind)


def only(template: Template, kind: str) -> tuple[str, dict]:
    found = resources(template, kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    return next(iter(found.items()))
