"""Small helpers shared by the constructs."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct


def log_group(
    scope: Construct,
    construct_id: str,
    *,
    days: int,
    key: kms.IKey | None = None,
    removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
) -> logs.LogGroup:
    """A log group kept `days` days (config values are validated against CloudWatch's list)."""
    group = logs.LogGroup(scope, construct_id, encryption_key=key, removal_policy=removal_policy)
    # RetentionDays is an enum of names; the template only needs the number.
    group.node.default_child.retention_in_days = days
    return group


def pin_logical_id(resource: Construct, logical_id: str) -> None:
    """Fix a stateful resource's logical id, so refactoring the construct tree never replaces it."""
    resource.node.default_child.override_logical_id(logical_id)
