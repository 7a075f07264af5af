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
