"""The per-environment configuration: known environments load, bad values fail naming the field."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from stacks.config import ENVIRONMENTS, ConfigError, IdentityProvider, Upstreams, load

ROOT = Path(__file__).resolve().parents[2]


def test_default_environment_is_dev():
    assert load(None).name == "dev"


def test_unknown_environment_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown environment 'qa'; known: dev, prod, staging"):
        load("qa")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"object_lock_mode": "LEGAL"}, "object_lock_mode"),
        ({"audit_retention_days": 0}, "audit_retention_days"),
        ({"region": "mars-1"}, "region"),
        ({"account": "12345"}, "account"),
        ({"log_retention_days": 15}, "log_retention_days"),
        ({"mfa": "SOMETIMES"}, "mfa"),
        ({"alarm_email": "not-an-address"}, "alarm_email"),
        ({"vertex_wif_config": '{"type": "service_account"}'}, "vertex_wif_config"),
        ({"callback_urls": ("http://portal.example.com/cb",)}, "callback_urls"),
        ({"cognito_domain_prefix": "Has Spaces"}, "cognito_domain_prefix"),
        ({"upstreams": {"mars": Upstreams(("us-east-1",))}}, r"upstreams\['mars'\]"),
        ({"upstreams": {"us": Upstreams(("us-east-1", "us-east-1"))}}, r"upstreams\['us'\].bedrock_regions"),
        (
            {
                "upstreams": {"us": Upstreams(("us-east-1",), vertex_region="us-east5")},
                "vertex_project": None,
            },
            "vertex_project",
        ),
        (
            {
                "identity_provider": IdentityProvider(
                    kind="oidc", name="Corp", issuer_url="https://idp.example.com", client_id="x"
                )
            },
            "identity_provider.client_secret_name",
        ),
        (
            {"identity_provider": IdentityProvider(kind="saml", name="Corp", metadata_url="http://insecure")},
            "identity_provider.metadata_url",
        ),
    ],
)
def test_invalid_value_fails_naming_the_field(change, field):
    with pytest.raises(ConfigError, match=rf"environment 'dev': {field}"):
        dataclasses.replace(ENVIRONMENTS["dev"], **change)


def test_environments_differ_where_the_issue_says():
    dev, prod = load("dev"), load("prod")
    assert (dev.object_lock_mode, prod.object_lock_mode) == ("GOVERNANCE", "COMPLIANCE")
    assert prod.termination_protection and not dev.termination_protection
    assert prod.waf_enabled and prod.mfa == "REQUIRED" and prod.threat_protection
    assert load("staging").identity_provider is not None


def test_synthesis_of_an_unknown_environment_exits_with_the_message():
    # Given the real app entry point, when an unknown environment is asked for, then it exits non-zero, named.
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": "/usr/bin:/bin",
            "CDK_CONTEXT_JSON": '{"env": "qa"}',
            "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        },
    )
    assert result.returncode != 0
    assert "unknown environment 'qa'" in result.stderr
