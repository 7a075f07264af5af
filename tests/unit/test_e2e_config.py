"""The end-to-end suite's configuration: local unless told otherwise, and a cloud run without its settings
is skipped naming each missing one (tests/e2e/deployment.py)."""

from __future__ import annotations

import pytest

from tests.e2e.deployment import Config, NotConfigured

CLOUD = {
    "GATEWAY_E2E_TARGET": "cloud",
    "GATEWAY_E2E_ENDPOINT": "https://abc.execute-api.eu-west-1.amazonaws.com/prod",
    "GATEWAY_E2E_COGNITO_DOMAIN": "https://claude-gateway-prod.auth.eu-west-1.amazoncognito.com/",
    "AWS_REGION": "eu-west-1",
}


def test_without_settings_the_suite_runs_against_a_local_stack() -> None:
    config = Config.from_env({})
    assert (config.target, config.model, config.residency, config.wait_seconds) == (
        "local",
        "claude-haiku-4-5",
        "us",
        120.0,
    )


def test_a_cloud_run_names_every_missing_setting() -> None:
    with pytest.raises(NotConfigured) as missing:
        Config.from_env({"GATEWAY_E2E_TARGET": "cloud"})
    for name in ("GATEWAY_E2E_ENDPOINT", "GATEWAY_E2E_COGNITO_DOMAIN", "AWS_REGION"):
        assert name in str(missing.value)
    with pytest.raises(NotConfigured, match="GATEWAY_E2E_COGNITO_DOMAIN"):
        Config.from_env({k: v for k, v in CLOUD.items() if k != "GATEWAY_E2E_COGNITO_DOMAIN"})


def test_a_cloud_run_with_its_settings() -> None:
    config = Config.from_env({**CLOUD, "GATEWAY_E2E_ENV": "prod", "GATEWAY_E2E_TOKEN": "eyJ..."})
    assert config.target == "cloud" and (config.env, config.region) == ("prod", "eu-west-1")
    assert config.endpoint == CLOUD["GATEWAY_E2E_ENDPOINT"] + "/"
    assert config.cognito_domain == "https://claude-gateway-prod.auth.eu-west-1.amazoncognito.com"
    assert config.person_token == "eyJ..." and config.wait_seconds == 900.0


def test_an_unknown_target_is_refused() -> None:
    with pytest.raises(NotConfigured, match="local or cloud"):
        Config.from_env({"GATEWAY_E2E_TARGET": "staging"})
