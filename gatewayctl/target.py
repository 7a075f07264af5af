"""Where gatewayctl acts: the deployed stacks (outputs read from CloudFormation) or the local stack.

Both give the same output keys, so every command is written once:
the stacks export them as CfnOutputs and `gatewayctl local up` writes them to its stack.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gatewayctl import paths
from gatewayctl.output import CommandError

# The running local stack's state, found the same way from any working directory (gatewayctl/paths.py).
LOCAL_STATE = paths.local_state()

# The CfnOutput keys of the two stacks; .local/stack.json's "outputs" carries the same keys.
OUTPUT_KEYS = (
    "TenantsTableName",
    "UsageTableName",
    "AuditStreamName",
    "AuditDlqUrl",
    "AuditWriterFailuresUrl",
    "AuditBucketName",
    "GlueDatabaseName",
    "GlueTableName",
    "AthenaWorkgroupName",
    "UserPoolId",
    "UserPoolClientId",
    "CognitoDomainUrl",
    "InvokeScope",
    "ApiEndpoint",
    "GatewayFunctionName",
)


def stack_names(env: str) -> tuple[str, str]:
    return (f"claude-gateway-{env}-stateful", f"claude-gateway-{env}-stateless")


@dataclass
class Target:
    kind: str  # "local" or "cloud"
    region: str
    outputs: dict[str, str]
    endpoint_url: str | None = None  # the moto server, for the local stack
    local: dict[str, Any] = field(default_factory=dict)  # the whole .local/stack.json

    def output(self, key: str) -> str:
        try:
            return self.outputs[key]
        except KeyError:
            raise CommandError(f"the {self.kind} stack has no output {key!r}; is it deployed/up to date?") from None

    def client(self, service: str):
        import boto3  # lazily: `gatewayctl --help` stays fast

        if self.kind == "local":
            return boto3.client(
                service,
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return boto3.client(service, region_name=self.region)


def load_local(path: Path = LOCAL_STATE) -> Target:
    if not path.exists():
        raise CommandError(f"no local stack: {path} not found; start one with `gatewayctl local up`")
    state = json.loads(path.read_text())
    return Target(
        kind="local",
        region=state["region"],
        outputs=state["outputs"],
        endpoint_url=state["moto_endpoint"],
        local=state,
    )


def load_cloud(env: str, region: str | None) -> Target:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.session.Session(region_name=region)
    if not session.region_name:
        raise CommandError("no AWS region: pass --region or set AWS_REGION")
    cfn = session.client("cloudformation")
    outputs: dict[str, str] = {}
    for name in stack_names(env):
        try:
            stacks = cfn.describe_stacks(StackName=name)["Stacks"]
        except (ClientError, BotoCoreError) as exc:
            raise CommandError(f"cannot read stack {name}: {exc}") from exc
        outputs.update({o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])})
    return Target(kind="cloud", region=session.region_name, outputs=outputs)


def resolve(args: Any) -> Target:
    kind = getattr(args, "target", None) or ("local" if LOCAL_STATE.exists() else "cloud")
    if kind == "local":
        return load_local()
    if kind == "cloud":
        return load_cloud(getattr(args, "env", "dev"), getattr(args, "region", None))
    raise CommandError(f"unknown target {kind!r}: use 'local' or 'cloud'")
