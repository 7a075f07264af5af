"""The per-environment configuration: known environments load, bad values fail naming the field."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from stacks.config import ENVIRONMENTS, SITE_SETTINGS, ConfigError, IdentityProvider, Upstreams, load
from tests.infrastructure.sites import TEST_SITES, site_for

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
        dataclasses.replace(load("dev"), **change)


def test_environments_differ_where_the_issue_says():
    dev, prod = load("dev"), load("prod", site_for("prod"))
    assert (dev.object_lock_mode, prod.object_lock_mode) == ("GOVERNANCE", "COMPLIANCE")
    assert prod.termination_protection and not dev.termination_protection
    assert prod.waf_enabled and prod.mfa == "REQUIRED" and prod.threat_protection
    assert load("staging", site_for("staging")).identity_provider is not None


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


# -- site settings: staging and prod need them, dev does not ---

PRODUCTION_SITE = {"account", "region", "cognito_domain_prefix", "alarm_email", "identity_provider", "vertex"}


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_without_site_settings_one_error_names_every_missing_one(env):
    assert set(ENVIRONMENTS[env].required_site) == PRODUCTION_SITE
    with pytest.raises(ConfigError) as raised:
        load(env)
    message = str(raised.value)
    for key in PRODUCTION_SITE:
        assert f"\n  {key}: {SITE_SETTINGS[key]}" in message, key
    assert f"sites/{env}.json" in message


@pytest.mark.parametrize("env", ["staging", "prod"])
@pytest.mark.parametrize("key", sorted(PRODUCTION_SITE))
def test_each_missing_site_setting_is_named(env, key):
    site = {k: v for k, v in TEST_SITES[env].items() if k != key}
    with pytest.raises(ConfigError) as raised:
        load(env, site)
    named = [line.split(":")[0].strip() for line in str(raised.value).splitlines() if line.startswith("  ")]
    assert named == [key]


def test_dev_needs_no_site_settings_and_turns_vertex_and_sso_off():
    dev = load("dev")
    assert ENVIRONMENTS["dev"].required_site == ()
    assert (dev.account, dev.region, dev.identity_provider, dev.alarm_email) == (None, None, None, None)
    assert dev.vertex_project is None and dev.vertex_regions() == {} and not dev.audit_mirror_cloud_logging
    assert dev.cognito_domain_prefix is None  # the construct derives one from the account id


def test_null_turns_an_optional_feature_off_and_is_refused_elsewhere():
    site = {**TEST_SITES["prod"], "vertex": None, "identity_provider": None, "alarm_email": None}
    site.pop("audit_mirror_cloud_logging")
    prod = load("prod", site)
    assert prod.vertex_regions() == {} and prod.vertex_project is None and prod.identity_provider is None
    with pytest.raises(ConfigError, match=r"environment 'prod': account: null is not allowed"):
        load("prod", {**TEST_SITES["prod"], "account": None})


def test_site_values_are_checked_and_every_problem_reported_together():
    site = {
        **TEST_SITES["prod"],
        "account": "12",
        "vertex": {**TEST_SITES["prod"]["vertex"], "project_number": "abc"},
        "colour": "blue",
    }
    with pytest.raises(ConfigError) as raised:
        load("prod", site)
    message = str(raised.value)
    assert "environment 'prod': unknown site setting 'colour'" in message
    assert "environment 'prod': vertex.project_number" in message
    assert "environment 'prod': account: must be a 12-digit AWS account id" in message


def test_vertex_from_the_site_sets_project_wif_and_the_repository_regions():
    prod = load("prod", site_for("prod"))
    wif = json.loads(prod.vertex_wif_config)
    assert prod.vertex_project == "test-vertex-prod"
    pool = "/projects/100000000002/locations/global/workloadIdentityPools/test-pool/providers/aws1"
    assert wif["audience"].endswith(pool)
    assert prod.vertex_regions()["eu"] == "europe-west1"


def test_cloud_logging_mirror_needs_vertex():
    with pytest.raises(ConfigError, match=r"environment 'prod': audit_mirror_cloud_logging: needs Vertex"):
        load("prod", {**TEST_SITES["prod"], "vertex": None})
    with pytest.raises(ConfigError, match=r"environment 'dev': audit_mirror_cloud_logging: needs Vertex"):
        load("dev", {"audit_mirror_cloud_logging": True})
    assert not load("staging", site_for("staging")).audit_mirror_cloud_logging  # off unless a site turns it on


@pytest.mark.parametrize("example", sorted((ROOT / "sites").glob("*.example.json")), ids=lambda p: p.name)
def test_example_site_files_load(example):
    env = example.name.split(".")[0]
    config = load(env, json.loads(example.read_text()))
    assert config.account and config.cognito_domain_prefix


def test_app_reads_the_site_file_and_context_overrides_it(tmp_path):
    import aws_cdk as cdk

    import app

    site_file = tmp_path / "prod.json"
    site_file.write_text(json.dumps(TEST_SITES["prod"]))
    context = {
        "env": "prod",
        "site_file": str(site_file),
        "region": "eu-west-1",
        "vertex": "null",
        "audit_mirror_cloud_logging": "false",
        "callback_urls": '["https://portal.test.example/cb"]',
    }
    site = app.site_settings(cdk.App(context=context), "prod")
    assert site["region"] == "eu-west-1" and site["vertex"] is None
    assert site["callback_urls"] == ["https://portal.test.example/cb"]
    assert site["account"] == TEST_SITES["prod"]["account"]
    assert load("prod", site).region == "eu-west-1"


def test_synthesis_of_prod_without_its_site_settings_exits_naming_each_one():
    # Given the real app entry point and no sites/prod.json, when prod is synthesized, then one message names all.
    assert not (ROOT / "sites" / "prod.json").exists()
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": "/usr/bin:/bin",
            "CDK_CONTEXT_JSON": '{"env": "prod"}',
            "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        },
    )
    assert result.returncode != 0
    for key in PRODUCTION_SITE:
        assert f"  {key}: " in result.stderr, key


def test_the_claude_api_provider_is_a_site_setting_off_unless_given():
    secret = "arn:aws:secretsmanager:us-east-1:444455556666:secret:claude-gateway/prod/claude-api-key-AbC123"
    assert load("prod", site_for("prod")).anthropic_api is None
    on = load("prod", {**TEST_SITES["prod"], "anthropic_api": {"secret_arn": secret, "residencies": ["us"]}})
    assert (on.anthropic_api.secret_arn, on.anthropic_api.residencies) == (secret, ("us",))
    with pytest.raises(ConfigError, match=r"environment 'prod': anthropic_api.secret_arn"):
        load("prod", {**TEST_SITES["prod"], "anthropic_api": {"secret_arn": "claude-api-key"}})
