"""Step 6: a GDPR export of alice: her records by her recomputed pseudonym, nobody else's."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from gatewayctl import auditing
from gatewayctl.demo.model import StepResult

if TYPE_CHECKING:
    from gatewayctl.demo.runner import Demo


def show(demo: Demo, result: StepResult) -> None:
    alice = demo.people["alice"]
    demo.out.line(f"gatewayctl gdpr export {alice.sub}   ({alice.username})")
    with demo.out.waiting("Exporting"):
        export = auditing.export_principal(demo.target, alice.sub)
    records = export["records"]
    if demo.export_dir is not None:
        path = demo.export_dir / f"gdpr-export-{alice.sub}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(export, indent=2, sort_keys=True, default=str) + "\n")
        path.chmod(0o600)
        demo.out.line(f"written to {path}")
    principal = export.get("principal") or {}
    demo.out.line(
        f"principal: tenant {principal.get('tenant_id')}, roles {principal.get('roles')}, "
        f"consent given at {principal.get('consent_given_at')}"
    )
    demo.out.line(f"pseudonym in the audit trail: {export.get('pseudonym')}; {len(records)} audit records")
    mine = {c.request_id: c.label for c in demo.calls if c.label.startswith(("1", "2"))}
    demo.out.table(
        [
            {
                "demo step": mine.get(r["request_id"], "earlier"),
                "event_type": r["event_type"],
                "status": r["status"],
                "model_alias": r["model_alias"],
                "event_time": r["event_time"],
            }  # fmt: skip
            for r in records
        ]
    )
    found = {r["request_id"] for r in records}
    demo.check(
        result,
        bool(export.get("pseudonym")),
        "her records are found by her pseudonym, recomputed from her secret",
    )
    demo.check(result, set(mine) <= found, f"the export holds her requests of steps 1 and 2 ({len(mine)})")
    others = {c.request_id for c in demo.calls if c.request_id not in mine}
    demo.check(result, not (found & others), "and nobody else's")
    text = json.dumps(records, default=str)
    demo.check(
        result,
        alice.sub not in text and alice.username not in text,
        "no audit record names her: only the pseudonym (erasure deletes the secret, unlinking them all)",
    )
