"""The two DynamoDB tables (docs/tenancy.md), built from stacks/definitions.py so the local stack matches."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.definitions import TENANTS, USAGE, TableDefinition
from stacks.nag import acknowledge_compliance


class TenantStore(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.tenants = _table(self, TENANTS, key)
        self.usage = _table(self, USAGE, key)


def _table(scope: Construct, definition: TableDefinition, key: kms.IKey) -> dynamodb.Table:
    string = dynamodb.AttributeType.STRING
    table = dynamodb.Table(
        scope,
        definition.logical_id,
        partition_key=dynamodb.Attribute(name=definition.partition_key, type=string),
        sort_key=dynamodb.Attribute(name=definition.sort_key, type=string),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryption_key=key,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        deletion_protection=True,
        time_to_live_attribute=definition.ttl_attribute,
        removal_policy=RemovalPolicy.RETAIN,
    )
    for index in definition.indexes:
        table.add_global_secondary_index(
            index_name=index.name,
            partition_key=dynamodb.Attribute(name=index.partition_key, type=string),
            sort_key=dynamodb.Attribute(name=index.sort_key, type=string),
        )
    # Pinned: a refactor of the construct tree must never replace a table.
    table.node.default_child.override_logical_id(definition.logical_id)
    acknowledge_compliance(
        table,
        "DynamoDBInBackupPlan",
        (
            "Point-in-time recovery (35 days) is on and deletion protection too; an AWS Backup plan is an "
            "account-level policy the platform team attaches by tag, not something this app owns."
        ),
    )
    return table
