"""Per-environment catalog overrides: validated at synthesis with the runtime's loader, given to the function as
CATALOG_OVERRIDES, and the source of the function's Bedrock grants (docs/models.md)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template
from gateway.domain.catalog import load_catalog
from gateway.settings import Settings

from stacks.composition import build, feature_flags
from stacks.config import ConfigError, load
from stacks.constructs.gateway_function import (
    LAMBDA_ENVIRONMENT_LIMIT,
    bedrock_resources,
    check_environment_size,
    environment_size,
)
from tests.infrastructure.test_stateless import LWA_VARIABLES, _function, _list, _render, _statements

pytestmark = pytest.mark.infrastructure
ROOT = Path(__file__).resolve().parents[2]

APP_PROFILE = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/abc123"
ADDED = {
    "anthropic_ids": ["claude-haiku-4-5-batch"],
    "tier": "haiku",
    "prices": {"input": 0.5, "output": 2.5, "cache_read": 0.05, "cache_write_5m": 0.625, "cache_write_1h": 1.0},
    "bedrock": {
        "api": "invoke",
        "model_id": "anthropic.claude-haiku-4-5-batch-v1:0",
        "profiles": {"us": "us.anthropic.claude-haiku-4-5-batch-v1:0"},
    },
    "source": "https://example.com/our-contract",
}
OVERRIDES = {
    "models": {
        "claude-opus-4-5": None,
        "claude-haiku-4-5-batch": ADDED,
        "claude-sonnet-4-6": {"bedrock": {"profiles": {"us": APP_PROFILE}}},
    }
}


def _granted(template) -> set[str]:
    """Every Bedrock resource the template grants, as IAM will read it (partition aws, account 123456789012)."""
    granted = set()
    for statement in _statements(template):
        if any(a.startswith("bedrock:") for a in _list(statement["Action"])):
            granted.update(_render(r) for r in _list(statement["Resource"]))
    return granted


@pytest.fixture(scope="module")
def overridden(tmp_path_factory):
    config = dataclasses.replace(load("dev"), catalog_overrides=OVERRIDES)
    app = cdk.App(context=feature_flags(), outdir=str(tmp_path_factory.mktemp("cdk-overrides")))
    gateway = build(app, config)
    return config, Template.from_stack(gateway.stateless)


def test_a_valid_override_changes_the_granted_arns(overridden, dev):
    # Given dev with a model disabled, one added and one on an application inference profile
    _, template = overridden
    granted, before = _granted(template), _granted(dev.stateless)

    # Then the disabled model's ARNs are no longer granted, the added model's are
    disabled = load_catalog().lookup("claude-opus-4-5").bedrock_model_id
    assert any(disabled in arn for arn in before)
    assert not any(disabled in arn for arn in granted)
    added = "us.anthropic.claude-haiku-4-5-batch-v1:0"
    assert f"arn:aws:bedrock:us-west-2:123456789012:inference-profile/{added}" in granted
    assert "arn:aws:bedrock:us-east-2::foundation-model/anthropic.claude-haiku-4-5-batch-v1:0" in granted
    assert not any("claude-haiku-4-5-batch" in arn for arn in before)
    # and the application inference profile is granted as it is, in its own region only
    assert APP_PROFILE in granted
    sonnet = load_catalog().lookup("claude-sonnet-4-6")
    assert not any(arn.endswith(f"inference-profile/{sonnet.bedrock_profiles['us']}") for arn in granted)
    assert f"arn:aws:bedrock:us-west-2::foundation-model/{sonnet.bedrock_model_id}" in granted


def test_the_grants_are_exactly_what_the_overridden_catalog_serves(overridden):
    config, template = overridden
    profiles, models = bedrock_resources(config, account="123456789012")
    assert _granted(template) == {*profiles, *models}


def test_the_function_gets_the_overrides_as_compact_json(overridden):
    _, template = overridden
    variables = _function(template)["Environment"]["Variables"]
    raw = variables["CATALOG_OVERRIDES"]
    assert json.loads(raw) == OVERRIDES
    assert raw == json.dumps(OVERRIDES, separators=(",", ":"), sort_keys=True)
    # What the function does with it: Settings reads it, and the runtime's catalog serves the added model.
    environ = {k: v if isinstance(v, str) else "resolved" for k, v in variables.items() if k not in LWA_VARIABLES}
    settings = Settings.from_env({**environ, "AWS_REGION": "us-east-1"})
    catalog = load_catalog(None, settings.catalog_overrides)
    assert catalog.lookup("claude-haiku-4-5-batch") is not None
    assert catalog.lookup("claude-opus-4-5") is None


def test_without_overrides_no_variable(dev):
    assert "CATALOG_OVERRIDES" not in _function(dev.stateless)["Environment"]["Variables"]


@pytest.mark.parametrize(
    ("overrides", "model", "field"),
    [
        ({"models": {"claude-sonnet-4-6": {"prices": {"input": -1}}}}, "claude-sonnet-4-6", "prices.input"),
        ({"models": {"claude-sonnet-4-6": {"tier": "huge"}}}, "claude-sonnet-4-6", "tier"),
        ({"models": {"claude-sonnet-4-6": {"contextwindow": 5}}}, "claude-sonnet-4-6", "contextwindow"),
        ({"models": {"claude-sonnet-4-6": {"bedrock": {"profile": {}}}}}, "claude-sonnet-4-6", "bedrock.profile"),
        ({"models": {"claude-sonnet-4-6": {"bedrock": "us"}}}, "claude-sonnet-4-6", "bedrock"),
        ({"models": {"claude-sonnet-4-6": {"bedrock": {"api": "converse"}}}}, "claude-sonnet-4-6", "bedrock.api"),
        (
            {"models": {"claude-sonnet-4-6": {"bedrock": {"profiles": {"mars": "x"}}}}},
            "claude-sonnet-4-6",
            "residencies",
        ),
        ({"models": {"claude-sonnet-4-6": {"lifecycle": {"status": "deprecated"}}}}, "claude-sonnet-4-6", "end_of_"),
        ({"models": {"claude-sonnet-4-6": {"lifecycle": {"status": "retired"}}}}, "claude-sonnet-4-6", "replacement"),
        ({"models": {"claude-sonnet-4-6": {"anthropic_ids": ["claude-opus-4-7"]}}}, "claude-sonnet-4-6", "anthropic_"),
        ({"models": {"claude-sonnet-4-6": None}}, "claude-sonnet-4", "lifecycle.replacement"),
        ({"models": {"claude-new": {"tier": "haiku", "prices": ADDED["prices"]}}}, "claude-new", "source"),
        ({"models": {"claude-new": {**ADDED, "prices": {"input": 1}}}}, "claude-new", "prices.output"),
        ({"models": {"claude-gone": None}}, "claude-gone", "disable"),
        ({"models": {"claude-sonnet-4-6": 5}}, "claude-sonnet-4-6", "object or null"),
        ({"modles": {}}, "modles", "models"),
    ],
)
def test_each_bad_override_stops_synthesis_naming_environment_model_and_field(overrides, model, field):
    with pytest.raises(ConfigError) as raised:
        dataclasses.replace(load("dev"), catalog_overrides=overrides)
    message = str(raised.value)
    assert message.startswith("environment 'dev': catalog_overrides: ")
    assert model in message and field in message, message


def test_an_unknown_profile_prefix_stops_synthesis_naming_it():
    config = dataclasses.replace(
        load("dev"), catalog_overrides={"models": {"claude-sonnet-4-6": {"bedrock": {"profiles": {"us": "mx.x"}}}}}
    )
    words = r"'dev': catalog_overrides: claude-sonnet-4-6: bedrock\.profiles\.us: 'mx\.x'"
    with pytest.raises(ConfigError, match=words):
        bedrock_resources(config, account="123456789012")


def test_a_site_adds_overrides_alias_by_alias():
    # Given a site that disables one model and changes another
    site = {
        "catalog_overrides": {
            "models": {"claude-opus-4-1": None, "claude-sonnet-4-6": {"lifecycle": {"note": "site"}}},
        }
    }
    config = load("dev", site)
    assert config.catalog().lookup("claude-opus-4-1") is None
    # A site value of the wrong shape, and a bad field, are named like every other site setting
    for bad, words in (([], "catalog_overrides: an object"), ({"models": {"x": None}}, "cannot disable 'x'")):
        with pytest.raises(ConfigError, match=words):
            load("dev", {"catalog_overrides": bad})


def test_the_environment_size_is_measured_as_lambda_measures_it():
    # Lambda measures the compact JSON object of the variables: quotes and escapes count.
    variables = {"A": "x" * 10, "B": '{"k":1}'}
    assert environment_size(variables) == len('{"A":"xxxxxxxxxx","B":"{\\"k\\":1}"}')
    fits = {"A": "x" * (LAMBDA_ENVIRONMENT_LIMIT - len('{"A":""}'))}
    check_environment_size("dev", fits)
    with pytest.raises(ConfigError, match="environment 'dev': .* 4097 bytes, over Lambda's 4096-byte limit"):
        check_environment_size("dev", {"A": fits["A"] + "x"})


def _too_big() -> dict:
    return {"models": {"claude-sonnet-4-6": {"note": "n" * LAMBDA_ENVIRONMENT_LIMIT}}}


def test_overrides_too_big_for_the_function_environment_stop_synthesis(tmp_path):
    config = dataclasses.replace(load("dev"), catalog_overrides=_too_big())
    with pytest.raises(ConfigError) as raised:
        build(cdk.App(context=feature_flags(), outdir=str(tmp_path)), config)
    message = str(raised.value)
    assert message.startswith("environment 'dev': the gateway function's environment variables take ")
    assert "catalog_overrides (CATALOG_OVERRIDES) takes" in message


def test_app_py_reports_a_bad_override_in_one_line(tmp_path):
    """The CDK app as `cdk synth` runs it: the site setting from context, the error on one line, no traceback."""
    for overrides, words in (
        ({"models": {"claude-sonnet-4-6": {"tier": "huge"}}}, "catalog: claude-sonnet-4-6: unknown tier 'huge'"),
        (_too_big(), "over Lambda's 4096-byte limit"),
    ):
        context = {**feature_flags(), "env": "dev", "catalog_overrides": json.dumps(overrides)}
        run = subprocess.run(
            [sys.executable, "app.py"],
            cwd=ROOT,
            env={
                **os.environ,
                "CDK_CONTEXT_JSON": json.dumps(context),
                "CDK_OUTDIR": str(tmp_path),
                "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
            },
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 1
        assert "claude-gateway: environment 'dev': " in run.stderr and words in run.stderr, run.stderr[-2000:]
        assert "Traceback" not in run.stderr
