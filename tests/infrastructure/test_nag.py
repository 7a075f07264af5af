"""cdk-nag: AwsSolutions, HIPAA Security and NIST 800-53 R5 leave nothing unacknowledged, and every
acknowledgement carries its own reason (docs/security-checks.md lists them)."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
from aws_cdk.assertions import Annotations, Match

from stacks.nag import PACKS

pytestmark = pytest.mark.infrastructure

_FINDING = re.compile(rf"^({'|'.join(re.escape(p) for p in PACKS)})-")


def _findings(stack) -> list[str]:
    annotations = Annotations.from_stack(stack)
    messages = annotations.find_error("*", Match.any_value()) + annotations.find_warning(
        "*", Match.any_value()
    )
    return [f"{m.id}: {m.entry.data}" for m in messages if _FINDING.match(str(m.entry.data))]


def test_no_unacknowledged_findings(synthesized):
    findings = _findings(synthesized.gateway.stateful) + _findings(synthesized.gateway.stateless)
    assert findings == []


def test_staging_with_its_site_settings_has_no_unacknowledged_findings(staging):
    findings = _findings(staging.gateway.stateful) + _findings(staging.gateway.stateless)
    assert findings == []


def test_the_packs_do_run(synthesized):
    # A suppression is recorded only where a pack looked; an empty list would mean the Aspects never ran.
    reasons = _suppressions(synthesized)
    assert {rule.split("-", 1)[0] for rule, _ in reasons} >= {
        "AwsSolutions",
        "HIPAA.Security",
        "NIST.800.53.R5",
    }


def _suppressions(synthesized) -> list[tuple[str, str]]:
    out = []
    for template in (synthesized.stateful, synthesized.stateless):
        for resource in template.to_json()["Resources"].values():
            for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
                out.append((rule["id"], rule["reason"]))
    return out


# The same control in two packs under two names: one reason may serve both.
_SAME_CONTROL = {frozenset({"APIG3", "APIGWAssociatedWithWAF"})}


def test_every_acknowledgement_has_a_specific_reason(synthesized):
    rules_by_reason: dict[str, set[str]] = defaultdict(set)
    for rule, reason in _suppressions(synthesized):
        assert len(reason) >= 60, f"{rule}: reason too short to be specific: {reason!r}"
        rules_by_reason[reason].add(rule.split("-", 1)[1])  # HIPAA and NIST share rule names and reasons
    shared = {
        reason: rules
        for reason, rules in rules_by_reason.items()
        if len(rules) > 1 and frozenset(rules) not in _SAME_CONTROL
    }
    assert shared == {}, "one reason text acknowledges different rules"


def test_security_checks_doc_names_every_acknowledged_rule(synthesized):
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "security-checks.md").read_text()
    missing = sorted(
        {rule for rule, _ in _suppressions(synthesized) if rule.split("-", 1)[1].split("[")[0] not in doc}
    )
    assert missing == []
