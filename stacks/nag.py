"""cdk-nag 2.x rule packs (Aspects) and every acknowledgement, each with a reason specific to its resource.

AwsSolutions runs on every synthesis (app.py) and must report nothing unacknowledged; HIPAA Security and
NIST 800-53 R5 run with `-c nag=all` and in the infrastructure tests; docs/security-checks.md lists their
findings and what was done about each.
"""

from __future__ import annotations

from collections.abc import Iterable

import aws_cdk as cdk
from cdk_nag import (
    AwsSolutionsChecks,
    HIPAASecurityChecks,
    NagPackSuppression,
    NagSuppressions,
    NIST80053R5Checks,
)
from constructs import IConstruct

PACKS = {
    "AwsSolutions": AwsSolutionsChecks,
    "HIPAA.Security": HIPAASecurityChecks,
    "NIST.800.53.R5": NIST80053R5Checks,
}


def apply_checks(app: cdk.App, packs: Iterable[str] | None = None) -> None:
    if packs is None:
        packs = list(PACKS) if app.node.try_get_context("nag") == "all" else ["AwsSolutions"]
    for name in packs:
        cdk.Aspects.of(app).add(PACKS[name](verbose=True))


def suppress(construct: IConstruct, reasons: dict[str, str], *, children: bool = False) -> None:
    """Acknowledge rule ids on one construct (and its children when `children`), with reasons."""
    NagSuppressions.add_resource_suppressions(
        construct,
        [NagPackSuppression(id=rule, reason=reason) for rule, reason in reasons.items()],
        apply_to_children=children,
    )


def suppress_path(
    stack: cdk.Stack, path: str, reasons: dict[str, str], *, applies_to: list[str] | None = None
) -> None:
    NagSuppressions.add_resource_suppressions_by_path(
        stack,
        path,
        [
            NagPackSuppression(id=rule, reason=reason, applies_to=applies_to)
            for rule, reason in reasons.items()
        ],
        apply_to_children=True,
    )


def acknowledge_compliance(construct: IConstruct, rule: str, reason: str, *, children: bool = False) -> None:
    """Acknowledge one rule that HIPAA Security and NIST 800-53 R5 both carry (same id after the pack name)."""
    suppress(
        construct, {f"HIPAA.Security-{rule}": reason, f"NIST.800.53.R5-{rule}": reason}, children=children
    )
