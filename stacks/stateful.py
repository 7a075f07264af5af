"""The stateful stack: keys, tables, the audit trail. Retained, deletion-protected, logical ids pinned."""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.config import EnvironmentConfig
from stacks.constructs.audit_trail import AuditTrail
from stacks.constructs.tenant_store import TenantStore

DATA_KEY_ID = "DataKey"
AUDIT_KEY_ID = "AuditKey"


class StatefulStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, termination_protection=config.termination_protection, **kwargs)
        self.config = config

        # Two keys: tenant data (tables) and evidence (stream, bucket, DLQ, logs), so access to one
        # never implies the other.
        self.data_key = _key(self, DATA_KEY_ID, "claude-gateway tenant and usage tables")
        self.audit_key = _key(self, AUDIT_KEY_ID, "claude-gateway audit trail")
        # CloudWatch Logs encrypts the delivery log groups with the audit key.
        log_groups = f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*"
        self.audit_key.add_to_resource_policy(
            iam.PolicyStatement(
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
                resources=["*"],  # a key policy's resource is always the key itself
                conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_groups}},
            )
        )

        self.tenant_store = TenantStore(self, "TenantStore", key=self.data_key)
        self.audit = AuditTrail(self, "Audit", config=config, key=self.audit_key)

        outputs = {
            "TenantsTableName": self.tenant_store.tenants.table_name,
            "UsageTableName": self.tenant_store.usage.table_name,
            "AuditStreamName": self.audit.stream.stream_name,
            "AuditDlqUrl": self.audit.dlq.queue_url,
            "AuditWriterFailuresUrl": self.audit.writer_failures.queue_url,
            "AuditBucketName": self.audit.bucket.bucket_name,
            "GlueDatabaseName": self.audit.database.ref,
            "GlueTableName": self.audit.table.ref,
            "AthenaWorkgroupName": self.audit.workgroup.ref,
        }
        for key, value in outputs.items():
            CfnOutput(self, key, value=value)


def _key(scope: Construct, construct_id: str, description: str) -> kms.Key:
    key = kms.Key(
        scope,
        construct_id,
        description=description,
        enable_key_rotation=True,
        pending_window=Duration.days(30),
        removal_policy=RemovalPolicy.RETAIN,
    )
    key.node.default_child.override_logical_id(construct_id)
    return key
