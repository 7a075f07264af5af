"""The optional Claude API provider in the stack: off by default; when configured, the function's environment
names the secret and its role may read exactly that secret, with cdk-nag still clean."""

from __future__ import annotations

import dataclasses
import json

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template
from gateway.settings import Settings

from stacks.composition import build, feature_flags
from stacks.config import AnthropicApi, ConfigError, load
from stacks.nag import PACKS, apply_checks
from tests.infrastructure.test_nag import _findings
from tests.infrastructure.test_stateless import LWA_VARIABLES, _function, _list, _statements

pytestmark = pytest.mark.infrastructure
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:claude-gateway/dev/claude-api-key-AbC123"
KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture(scope="module")
def with_claude_api(tmp_path_factory):
    config = dataclasses.replace(
        load("dev"), anthropic_api=AnthropicApi(secret_arn=SECRET, residencies=("us", "global"))
    )
    app = cdk.App(context=feature_flags(), outdir=str(tmp_path_factory.mktemp("cdk-claude-api")))
    gateway = build(app, config)
    apply_checks(app, list(PACKS))
    app.synth()
    return gateway, Template.from_stack(gateway.stateless)


@pytest.fixture(scope="module")
def with_claude_api_under_a_cmk(tmp_path_factory):
    config = dataclasses.replace(load("dev"), anthropic_api=AnthropicApi(secret_arn=SECRET, kms_key_arn=KEY))
    app = cdk.App(context=feature_flags(), outdir=str(tmp_path_factory.mktemp("cdk-claude-api-cmk")))
    gateway = build(app, config)
    apply_checks(app, list(PACKS))
    app.synth()
    return gateway, Template.from_stack(gateway.stateless)


def _secret_statements(template) -> list[dict]:
    return [s for s in _statements(template) if any(a.startswith("secretsmanager:") for a in _list(s["Action"]))]


def test_off_by_default(dev, prod):
    for synthesized in (dev, prod):
        variables = _function(synthesized.stateless)["Environment"]["Variables"]
        assert not any(k.startswith("ANTHROPIC_API") for k in variables)
        assert _secret_statements(synthesized.stateless) == []


def test_the_function_reads_exactly_that_secret(with_claude_api):
    _, template = with_claude_api
    variables = _function(template)["Environment"]["Variables"]
    [statement] = _secret_statements(template)

    assert statement["Action"] == "secretsmanager:GetSecretValue" and statement["Resource"] == SECRET
    environ = {k: v if isinstance(v, str) else "resolved" for k, v in variables.items() if k not in LWA_VARIABLES}
    settings = Settings.from_env({**environ, "AWS_REGION": "us-east-1"})
    assert settings.anthropic_api_secret_arn == SECRET
    assert settings.anthropic_api_residencies == ("us", "global")
    assert json.loads(variables["ANTHROPIC_API_RESIDENCIES"]) == ["us", "global"]


def test_no_kms_grant_for_a_secret_under_the_aws_managed_key(with_claude_api):
    _, template = with_claude_api
    assert not [s for s in _statements(template) if KEY in json.dumps(s.get("Resource"))]


def test_a_secret_under_a_customer_managed_key_may_be_decrypted_through_secrets_manager_only(
    with_claude_api_under_a_cmk,
):
    gateway, template = with_claude_api_under_a_cmk
    [decrypt] = [s for s in _statements(template) if s.get("Resource") == KEY]
    assert _list(decrypt["Action"]) == ["kms:Decrypt"]
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}}
    assert _findings(gateway.stateless) == []


def test_cdk_nag_stays_clean(with_claude_api):
    gateway, _ = with_claude_api
    assert _findings(gateway.stateless) == []


@pytest.mark.parametrize(
    ("api", "field"),
    [
        (AnthropicApi(secret_arn="claude-api-key"), "anthropic_api.secret_arn"),
        # Without the suffix the grant would not match the secret (IAM compares the full ARN).
        (AnthropicApi(secret_arn=SECRET.removesuffix("-AbC123")), "anthropic_api.secret_arn"),
        (AnthropicApi(secret_arn=SECRET, residencies=()), "anthropic_api.residencies"),
        (AnthropicApi(secret_arn=SECRET, residencies=("moon",)), "anthropic_api.residencies"),
        (AnthropicApi(secret_arn=SECRET, base_url="http://api.example.com"), "anthropic_api.base_url"),
        (AnthropicApi(secret_arn=SECRET, kms_key_arn="alias/claude-api"), "anthropic_api.kms_key_arn"),
    ],
)
def test_invalid_configuration_names_the_field(api, field):
    with pytest.raises(ConfigError, match=field):
        dataclasses.replace(load("dev"), anthropic_api=api)
