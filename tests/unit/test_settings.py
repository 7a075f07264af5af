"""Settings.from_env: the contract between the stacks, the local stack and the runtime."""

from __future__ import annotations

import json

import pytest
from gateway.settings import Settings, SettingsError

BASE = {
    "AWS_REGION": "eu-west-1",
    "TENANTS_TABLE": "tenants",
    "USAGE_TABLE": "usage",
    "AUDIT_STREAM": "audit",
    "AUDIT_DLQ_URL": "https://sqs.eu-west-1.amazonaws.com/1/dlq",
    "BEDROCK_REGIONS": json.dumps({"eu": ["eu-west-1", "eu-central-1"], "global": ["us-east-1"]}),
}


def test_parses_and_round_trips() -> None:
    env = {
        **BASE,
        "VERTEX_PROJECT": "p",
        "VERTEX_REGIONS": '{"eu": "europe-west1"}',
        "BREAKER_OPEN_SECONDS": "12",
    }
    settings = Settings.from_env(env)

    assert settings.bedrock_regions["eu"] == ("eu-west-1", "eu-central-1")
    assert settings.vertex_regions == {"eu": "europe-west1"}
    assert settings.breaker_open_seconds == 12.0
    assert Settings.from_env(settings.to_env()) == settings


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"TENANTS_TABLE": ""}, "TENANTS_TABLE is not set"),
        ({"BEDROCK_REGIONS": "{"}, "not valid JSON"),
        ({"BEDROCK_REGIONS": '{"mars": ["x"]}'}, "unknown residencies"),
        ({"BEDROCK_REGIONS": '{"eu": []}'}, "non-empty list"),
        ({"VERTEX_REGIONS": '{"eu": "europe-west1"}'}, "VERTEX_PROJECT is not"),
        ({"MAX_BODY_BYTES": "12"}, "at least"),
        ({"AUDIT_MIRROR_CLOUD_LOGGING": "maybe"}, "true or false"),
    ],
)
def test_fails_fast_with_the_variable_named(change: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({**BASE, **change})


def test_messages_api_and_claude_api_settings_round_trip() -> None:
    env = {
        **BASE,
        "BEDROCK_ENDPOINTS": '{"eu-central-1": "http://127.0.0.1:7002"}',
        "BEDROCK_MESSAGES_ENDPOINTS": '{"eu-west-1": "https://vpce-1.bedrock-runtime.eu-west-1.vpce.amazonaws.com/anthropic"}',
        "BEDROCK_MESSAGES_MODEL_ID": "profile",
        "ANTHROPIC_API_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:claude/api-key-AbCdEf",
        "ANTHROPIC_API_BASE_URL": "https://aws-external-anthropic.eu-west-1.api.aws",
        "ANTHROPIC_API_WORKSPACE_ID": "wrkspc_1",
        "ANTHROPIC_API_RESIDENCIES": '["eu", "global"]',
    }
    settings = Settings.from_env(env)

    assert settings.bedrock_messages_model_id == "profile"
    assert settings.anthropic_api_residencies == ("eu", "global")
    assert settings.anthropic_api_workspace_id == "wrkspc_1"
    assert settings.bedrock_messages_base_url("eu-west-1").startswith("https://vpce-1.")
    assert settings.bedrock_messages_base_url("eu-central-1") == "http://127.0.0.1:7002/anthropic"
    assert settings.bedrock_messages_base_url("us-east-1") == "https://bedrock-runtime.us-east-1.amazonaws.com/anthropic"
    assert Settings.from_env(settings.to_env()) == settings


def test_messages_api_and_claude_api_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert settings.bedrock_messages_model_id == "base"
    assert settings.anthropic_api_secret_arn is None
    assert settings.anthropic_api_base_url == "https://api.anthropic.com"
    assert settings.anthropic_api_residencies == ("global",)
    assert "ANTHROPIC_API_SECRET_ARN" not in settings.to_env()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"BEDROCK_MESSAGES_MODEL_ID": "arn"}, "base or profile"),
        ({"ANTHROPIC_API_SECRET_ARN": "my-secret"}, "Secrets Manager secret ARN"),
        ({"ANTHROPIC_API_BASE_URL": "http://api.example.com"}, "must be https"),
        ({"ANTHROPIC_API_RESIDENCIES": '["moon"]'}, "unknown residencies"),
        ({"ANTHROPIC_API_RESIDENCIES": "[]"}, "non-empty list"),
        ({"ANTHROPIC_API_RESIDENCIES": "["}, "not valid JSON"),
        ({"BEDROCK_MESSAGES_ENDPOINTS": "[]"}, "must be a JSON object"),
    ],
)
def test_invalid_messages_api_and_claude_api_settings(change, message) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({**BASE, **change})
