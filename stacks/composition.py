"""Build the two stacks of one environment into an app (used by app.py, the tests and the benchmark)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk

from stacks.config import EnvironmentConfig
from stacks.stateful import StatefulStack
from stacks.stateless import StatelessStack

CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"


def feature_flags() -> dict:
    """cdk.json's context (feature flags): the CLI passes it to app.py, in-process tests pass it here."""
    return json.loads(CDK_JSON.read_text())["context"]


def stack_names(env: str) -> tuple[str, str]:
    # Same names as gatewayctl.target.stack_names (gatewayctl reads the outputs by these names).
    return (f"claude-gateway-{env}-stateful", f"claude-gateway-{env}-stateless")


@dataclass
class Gateway:
    stateful: StatefulStack
    stateless: StatelessStack


def build(app: cdk.App, config: EnvironmentConfig) -> Gateway:
    env = (
        cdk.Environment(account=config.account, region=config.region)
        if (config.account or config.region)
        else None
    )
    stateful_name, stateless_name = stack_names(config.name)
    stateful = StatefulStack(
        app,
        stateful_name,
        config=config,
        env=env,
        description=f"claude-gateway {config.name}: keys, tables, audit trail",
    )
    stateless = StatelessStack(
        app,
        stateless_name,
        config=config,
        stateful=stateful,
        env=env,
        description=f"claude-gateway {config.name}: Cognito, API, gateway function",
    )
    for stack in (stateful, stateless):
        cdk.Tags.of(stack).add("application", "claude-gateway")
        cdk.Tags.of(stack).add("environment", config.name)
        for key, value in config.tags.items():
            cdk.Tags.of(stack).add(key, value)
    return Gateway(stateful=stateful, stateless=stateless)
