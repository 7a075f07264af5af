"""The gateway Lambda: Python 3.13 on arm64, the ASGI app under the Lambda Web Adapter, least privilege."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Aws, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from gateway.domain.catalog import load_catalog

from stacks.bundling import LAMBDA_SRC, gateway_code
from stacks.config import LWA_LAYER_ACCOUNT, LWA_LAYER_VERSION, ConfigError, EnvironmentConfig
from stacks.constructs.common import log_group
from stacks.definitions import TENANTS
from stacks.nag import acknowledge_compliance, suppress

CATALOG = LAMBDA_SRC / "gateway" / "catalog.json"

# Where a cross-region inference profile may route a request (its destination regions); the role needs the
# foundation model there. Keep in step with the Bedrock "supported Regions" table for each profile prefix.
PROFILE_DESTINATIONS: dict[str, tuple[str, ...]] = {
    "us": ("us-east-1", "us-east-2", "us-west-1", "us-west-2"),
    "eu": (
        "eu-central-1",
        "eu-central-2",
        "eu-north-1",
        "eu-south-1",
        "eu-south-2",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
    ),
    "apac": (
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-northeast-3",
        "ap-south-1",
        "ap-south-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-southeast-4",
    ),
    "jp": ("ap-northeast-1", "ap-northeast-3"),
    "au": ("ap-southeast-2", "ap-southeast-4"),
}


def bedrock_resources_by_residency(
    config: EnvironmentConfig, *, account: str, partition: str = "aws", catalog_path: Path = CATALOG
) -> dict[str, tuple[list[str], list[str]]]:
    """residency -> (inference-profile ARNs, foundation-model ARNs): what the environment's catalog (the
    base catalog with its overrides: a disabled model is not granted, an added one is) serves there."""
    catalog = load_catalog(str(catalog_path), config.catalog_overrides_json)
    out: dict[str, tuple[list[str], list[str]]] = {}
    for residency, upstream in config.upstreams.items():
        profiles: set[str] = set()
        models: set[str] = set()
        for entry in catalog.entries:
            profile = entry.bedrock_profiles.get(residency)
            model_id = entry.bedrock_model_id
            if profile is None or model_id is None or entry.lifecycle.status == "retired":
                continue
            if profile.startswith("arn:"):
                # An application inference profile (an override): one ARN in its own region, routing where the
                # system profile it was copied from routes, which synthesis cannot see: the residency's regions.
                profiles.add(profile)
                region = profile.split(":")[3]
                models.add(f"arn:{partition}:bedrock:{region}::foundation-model/{model_id}")
                prefix = residency
            else:
                for region in upstream.bedrock_regions:
                    profiles.add(f"arn:{partition}:bedrock:{region}:{account}:inference-profile/{profile}")
                prefix = profile.split(".", 1)[0]
            for region in upstream.bedrock_regions:
                models.add(f"arn:{partition}:bedrock:{region}::foundation-model/{model_id}")
            if prefix == "global":
                # Global profiles route to any commercial region; AWS documents the region-less model ARN.
                models.add(f"arn:{partition}:bedrock:::foundation-model/{model_id}")
            elif prefix in PROFILE_DESTINATIONS:
                models.update(
                    f"arn:{partition}:bedrock:{region}::foundation-model/{model_id}"
                    for region in PROFILE_DESTINATIONS[prefix]
                )
            else:
                raise ConfigError(
                    f"environment {config.name!r}: catalog_overrides: {entry.alias}: bedrock.profiles.{residency}: "
                    f"{profile!r} has no known destination regions "
                    f"(prefixes: global, {', '.join(PROFILE_DESTINATIONS)})"
                )
        out[residency] = (sorted(profiles), sorted(models))
    return out


def bedrock_resources(
    config: EnvironmentConfig, *, account: str, partition: str = "aws", catalog_path: Path = CATALOG
) -> tuple[list[str], list[str]]:
    """(inference-profile ARNs, foundation-model ARNs): exactly what the catalog serves in this environment."""
    profiles: set[str] = set()
    models: set[str] = set()
    for p, m in bedrock_resources_by_residency(
        config, account=account, partition=partition, catalog_path=catalog_path
    ).values():
        profiles.update(p)
        models.update(m)
    return sorted(profiles), sorted(models)


# Lambda refuses environment variables over 4 KB, measured as their compact JSON object (quotes and escapes
# included): https://docs.aws.amazon.com/lambda/latest/dg/troubleshooting-deployment.html, and the string
# Lambda reports it measured in https://github.com/github-aws-runners/terraform-aws-github-runner/issues/3594.
LAMBDA_ENVIRONMENT_LIMIT = 4096
# A value still unresolved at synthesis (table, stream and queue names) counted at the longest it resolves to:
# the DLQ's URL, `https://sqs.<region>.amazonaws.com/<account>/` and a generated queue name of at most 80.
_UNRESOLVED_BOUND = 160


def environment_size(variables: Mapping[str, str]) -> int:
    """The bytes Lambda counts for these variables, unresolved values at their bound."""
    sized = {k: "x" * _UNRESOLVED_BOUND if Token.is_unresolved(v) else v for k, v in variables.items()}
    return len(json.dumps(sized, separators=(",", ":"), ensure_ascii=False).encode())


def check_environment_size(env: str, variables: Mapping[str, str]) -> None:
    size = environment_size(variables)
    if size > LAMBDA_ENVIRONMENT_LIMIT:
        overrides = environment_size({"CATALOG_OVERRIDES": variables.get("CATALOG_OVERRIDES", "")}) - 2
        raise ConfigError(
            f"environment {env!r}: the gateway function's environment variables take {size} bytes, over Lambda's "
            f"{LAMBDA_ENVIRONMENT_LIMIT}-byte limit; catalog_overrides (CATALOG_OVERRIDES) takes {overrides} of "
            "them: keep overrides to the fields that change (docs/models.md)"
        )


# IAM's managed policy document limit is 6,144 characters. Counted here with the partition and account
# still tokens (longer than any value they resolve to), leaving room for the statement around them.
_POLICY_BUDGET = 5_200


def policy_chunks(arns: list[str]) -> list[list[str]]:
    """The ARNs in order, split so that each chunk's document stays under IAM's size limit."""
    chunks: list[list[str]] = [[]]
    size = 0
    for arn in arns:
        rendered = len(arn) + 3  # quotes and comma
        if chunks[-1] and size + rendered > _POLICY_BUDGET:
            chunks.append([])
            size = 0
        chunks[-1].append(arn)
        size += rendered
    return [chunk for chunk in chunks if chunk]


class GatewayFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        tenants: dynamodb.ITable,
        usage: dynamodb.ITable,
        audit_stream: kinesis.IStream,
        audit_dlq: sqs.IQueue,
        data_key: kms.IKey,
        audit_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = log_group(
            self, "Logs", days=config.log_retention_days, key=audit_key, removal_policy=RemovalPolicy.DESTROY
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"claude-gateway {config.name} gateway function",
        )
        self.log_group.grant_write(self.role)

        region = Stack.of(self).region
        layer_arn = (
            f"arn:{Aws.PARTITION}:lambda:{region}:{LWA_LAYER_ACCOUNT}:layer:LambdaAdapterLayerArm64:"
            f"{LWA_LAYER_VERSION}"
        )
        environment = {
            # The Lambda Web Adapter: runs run.sh, streams the ASGI app's responses.
            "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
            "AWS_LWA_INVOKE_MODE": "response_stream",
            "AWS_LWA_PORT": "8080",
            "AWS_LWA_READINESS_CHECK_PATH": "/healthz",
            # gateway.settings.Settings.from_env (AWS_REGION comes from the Lambda runtime itself)
            "GATEWAY_ENV": config.name,
            "TENANTS_TABLE": tenants.table_name,
            "USAGE_TABLE": usage.table_name,
            "AUDIT_STREAM": audit_stream.stream_name,
            "AUDIT_DLQ_URL": audit_dlq.queue_url,
            "BEDROCK_REGIONS": json.dumps(config.bedrock_regions(), sort_keys=True),
        }
        if config.vertex_project:
            environment["VERTEX_PROJECT"] = config.vertex_project
            environment["VERTEX_REGIONS"] = json.dumps(config.vertex_regions(), sort_keys=True)
        if config.vertex_wif_config:
            environment["VERTEX_WIF_CONFIG"] = config.vertex_wif_config
        if config.anthropic_api is not None:
            environment["ANTHROPIC_API_SECRET_ARN"] = config.anthropic_api.secret_arn
            environment["ANTHROPIC_API_RESIDENCIES"] = json.dumps(list(config.anthropic_api.residencies))
            if config.anthropic_api.base_url:
                environment["ANTHROPIC_API_BASE_URL"] = config.anthropic_api.base_url
            if config.anthropic_api.workspace_id:
                environment["ANTHROPIC_API_WORKSPACE_ID"] = config.anthropic_api.workspace_id
        # Vertex-served audit records also go to Cloud Logging in the Vertex project, with the same Workload
        # Identity credentials: nothing more to grant on the AWS side (roles/logging.logWriter is granted in
        # Google Cloud, docs/environments.md). Config validation guarantees Vertex is configured.
        environment["AUDIT_MIRROR_CLOUD_LOGGING"] = "true" if config.audit_mirror_cloud_logging else "false"
        if config.catalog_overrides_json:
            environment["CATALOG_OVERRIDES"] = config.catalog_overrides_json
        check_environment_size(config.name, environment)

        self.function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_13,
            architecture=lambda_.Architecture.ARM_64,
            handler="run.sh",
            code=gateway_code(),
            layers=[lambda_.LayerVersion.from_layer_version_arn(self, "WebAdapter", layer_arn)],
            memory_size=config.lambda_memory_mb,
            timeout=Duration.minutes(15),  # the longest a streamed answer may take
            environment=environment,
            role=self.role,
            log_group=self.log_group,
            reserved_concurrent_executions=config.reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            description=f"claude-gateway {config.name}: Messages API on Bedrock/Vertex",
        )

        # Least privilege, by hand where grant_* would give more than the runtime uses.
        table_arns = [
            tenants.table_arn,
            usage.table_arn,
            *(f"{tenants.table_arn}/index/{index.name}" for index in TENANTS.indexes),
        ]
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="TenantAndUsageTables",
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:BatchGetItem",
                    "dynamodb:Query",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                    "dynamodb:ConditionCheckItem",
                ],
                resources=table_arns,
            )
        )
        # TransactWriteItems is authorized per item through the item actions above.
        data_key.grant(self.role, "kms:Decrypt", "kms:GenerateDataKey")
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="AuditStream",
                actions=["kinesis:PutRecord", "kinesis:PutRecords"],
                resources=[audit_stream.stream_arn],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="AuditDeadLetters", actions=["sqs:SendMessage"], resources=[audit_dlq.queue_arn]
            )
        )
        audit_key.grant(self.role, "kms:GenerateDataKey", "kms:Decrypt")
        if config.anthropic_api is not None:
            # The Claude API key: this one secret, read once per container.
            self.role.add_to_policy(
                iam.PolicyStatement(
                    sid="ClaudeApiKey",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=[config.anthropic_api.secret_arn],
                )
            )
            if config.anthropic_api.kms_key_arn:
                # A secret under a customer managed key: decrypt with that key, through Secrets Manager only.
                secret_region = config.anthropic_api.secret_arn.split(":")[3]
                self.role.add_to_policy(
                    iam.PolicyStatement(
                        sid="ClaudeApiKeyDecrypt",
                        actions=["kms:Decrypt"],
                        resources=[config.anthropic_api.kms_key_arn],
                        conditions={
                            "StringEquals": {"kms:ViaService": f"secretsmanager.{secret_region}.amazonaws.com"}
                        },
                    )
                )

        # Managed policies per residency, each under IAM's 6,144-character document limit. The same actions
        # cover both Bedrock APIs on bedrock-runtime: InvokeModel and the Messages-API endpoint
        # (/anthropic/v1/messages), which the runtime calls with the base model id in each chain region, whose
        # foundation-model ARN is granted below. AWS lists bedrock:InvokeModel(WithResponseStream) as the
        # bedrock-runtime endpoint's inference permissions: https://docs.aws.amazon.com/bedrock/latest/userguide/inference.html
        by_residency = bedrock_resources_by_residency(
            config, account=Stack.of(self).account, partition=Aws.PARTITION
        )
        for residency, (profiles, models) in sorted(by_residency.items()):
            for index, chunk in enumerate(policy_chunks([*profiles, *models])):
                iam.ManagedPolicy(
                    self,
                    f"Bedrock{residency.capitalize()}{index or ''}",
                    roles=[self.role],
                    description=f"Invoke the catalog's Claude models, {residency} residency ({index + 1})",
                    statements=[
                        iam.PolicyStatement(
                            actions=["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
                            resources=chunk,
                        )
                    ],
                )
        suppress(
            self.role,
            {
                "AwsSolutions-IAM5": (
                    "Only X-Ray remains: xray:PutTraceSegments/PutTelemetryRecords support no resource-level "
                    "permissions (Resource '*'); tables, stream, DLQ and Bedrock are granted by exact ARN."
                )
            },
            children=True,
        )
        # The Role property already orders the function after the role; only the inline policy needs DependsOn
        # (CDK lists the role too, which cfn-lint flags as W3005).
        policy = self.role.node.find_child("DefaultPolicy").node.default_child
        self.function.node.default_child.add_override("DependsOn", [Stack.of(self).get_logical_id(policy)])
        acknowledge_compliance(
            self.role,
            "IAMNoInlinePolicy",
            (
                "The CDK-generated policy belongs to the gateway role alone and lists exact ARNs (tables, stream, "
                "DLQ, catalog models); a managed policy would only make it attachable elsewhere."
            ),
            children=True,
        )
        acknowledge_compliance(
            self.function,
            "LambdaDLQ",
            (
                "API Gateway invokes the function synchronously; a Lambda DLQ applies only to asynchronous "
                "invocations. Audit records that fail go to the audit DLQ from the runtime itself."
            ),
        )
        acknowledge_compliance(
            self.function,
            "LambdaInsideVPC",
            (
                "The function calls Bedrock in several regions and Vertex AI on the internet; a VPC would add NAT "
                "gateways and cold-start cost for no isolation gain (no private resources are reached)."
            ),
        )
        if config.reserved_concurrency is None:
            acknowledge_compliance(
                self.function,
                "LambdaConcurrency",
                (
                    f"{config.name} leaves concurrency unreserved (small accounts cannot reserve any); prod "
                    "reserves it in stacks/config.py."
                ),
            )
        suppress(
            self.function,
            {
                "AwsSolutions-L1": (
                    "Pinned to python3.13 on purpose (issue #2): the bundle's wheels are built for cp313; "
                    "move runtime and --python-version together in stacks/bundling.py."
                )
            },
        )
