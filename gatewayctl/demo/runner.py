"""Runs the demo's six steps against a running local stack and reports what each one showed.

Each step makes real calls, prints what it did and the evidence, and records every claim with
`check`: a step with a claim not shown, an exception, or no evidence at all fails, and the demo
with it. The steps live in their own modules (streaming, refusal, quota, failover, trail, gdpr).
"""

from __future__ import annotations

import datetime as dt
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gatewayctl.demo import cast, failover, gdpr, quota, refusal, streaming, trail
from gatewayctl.demo.model import Call, Person, StepResult
from gatewayctl.demo.output import Out
from gatewayctl.local import control
from gatewayctl.output import CommandError
from gatewayctl.target import Target


class Demo:
    TOTAL = 6

    def __init__(self, target: Target, *, out: Out | None = None, export_dir: Path | None = None) -> None:
        if target.kind != "local":
            raise CommandError("the demo runs against the local stack only")
        self.target = target
        self.state = target.local
        self.out = out or Out()
        self.export_dir = export_dir
        self.people: dict[str, Person] = {}
        self.calls: list[Call] = []
        self.results: list[StepResult] = []
        self.started_at = dt.datetime.now(dt.UTC)
        self.failover: dict[str, Any] = {}  # step 4's request, for step 5 to find its attempts

    # -- the steps (replaceable per instance: the tests swap them) ------------------------------

    def step_stream(self, result: StepResult) -> None:
        streaming.show(self, result)

    def step_refused(self, result: StepResult) -> None:
        refusal.show(self, result)

    def step_quota(self, result: StepResult) -> None:
        quota.show(self, result)

    def step_failover(self, result: StepResult) -> None:
        failover.show(self, result)

    def step_audit(self, result: StepResult) -> None:
        trail.show(self, result)

    def step_gdpr(self, result: StepResult) -> None:
        gdpr.show(self, result)

    # -- running ------------------------------------------------------------------------------

    def run(self) -> bool:
        self.seed()
        steps: list[tuple[str, Callable[[StepResult], None]]] = [
            ("A streamed reply through the anthropic SDK", self.step_stream),
            ("A refused capability: a basic_user asks for opus, then for tools", self.step_refused),
            (
                f"A quota 429: dave may make {cast.QUOTA_REQUESTS_PER_MINUTE} requests a minute",
                self.step_quota,
            ),
            ("A throttled region, served by failover", self.step_failover),
            ("The audit trail of all of the above: query, then verify", self.step_audit),
            ("A GDPR export of alice", self.step_gdpr),
        ]
        for number, (title, step) in enumerate(steps, 1):
            result = StepResult(number, title)
            self.out.heading(number, self.TOTAL, title)
            try:
                step(result)
            except Exception as exc:  # noqa: BLE001 - a failed step is reported, the next ones still run
                result.ok = False
                result.error = f"{type(exc).__name__}: {exc}"
                if os.environ.get("GATEWAY_DEMO_DEBUG"):
                    traceback.print_exc()
            if not result.checks and not result.error:
                result.error = "the step showed no evidence"
            result.ok = result.ok and bool(result.checks) and all(ok for ok, _ in result.checks)
            self.results.append(result)
            if result.error:
                self.out.line(f"FAILED: {result.error}")
            self.out.line(f"step {number}: {'OK' if result.ok else 'FAILED'}", indent=0)
        passed = sum(r.ok for r in self.results)
        self.out.line()
        self.out.line(f"demo: {passed}/{self.TOTAL} steps showed what they should", indent=0)
        for r in self.results:
            if not r.ok:
                failed = [what for ok, what in r.checks if not ok]
                self.out.line(f"step {r.number} ({r.title}): " + "; ".join(failed or [r.error or "?"]))
        return passed == self.TOTAL

    def check(self, result: StepResult, ok: bool, what: str) -> bool:
        """Record one piece of evidence: `what` is the claim, shown as held or not."""
        result.checks.append((bool(ok), what))
        self.out.line(f"[{'ok' if ok else 'NOT SHOWN'}] {what}")
        return bool(ok)

    def seed(self) -> dict[str, Person]:
        """The tenants and people (idempotent), each with a fresh token, shown as a table."""
        self.out.line()
        self.out.line("== Seeding: two tenants, their people and roles " + "=" * 27, indent=0)
        with self.out.waiting("Seeding tenants and people"):
            self.people = cast.seed(self.target)
        rows = [
            {
                "person": p.username,
                "tenant": p.tenant_id,
                "residency": cast.residency_of(p.tenant_id),
                "roles": p.roles,
                "own limits": p.limits or "-",
            }
            for p in self.people.values()
        ]
        self.out.table(rows)
        return self.people

    # -- what the steps share -----------------------------------------------------------------

    def client(self, person: Person) -> Any:
        import anthropic

        return anthropic.Anthropic(base_url=self.state["endpoint"], auth_token=person.token, max_retries=0)

    @property
    def control_url(self) -> str:
        return self.state["bedrock"]["control_url"]

    def upstream_counts(self) -> dict[str, int]:
        counts = control.requests_seen(self.control_url)["counts"]
        return {region: c.get("total", 0) for region, c in counts.items()}

    def calls_since(self, before: dict[str, int]) -> dict[str, int]:
        after = self.upstream_counts()
        return {r: n - before.get(r, 0) for r, n in after.items() if n != before.get(r, 0)}
