"""The demo: six things the gateway does, shown against a running local stack (`gatewayctl demo`).

Each step makes real calls (the official anthropic SDK against the gateway, the emulator's control
API, the audit library the `audit` and `gdpr` commands use), prints what it did and the evidence,
and checks that the evidence shows what the step claims: a step that does not is reported as
FAILED and the demo exits non-zero. The command (gatewayctl/commands/demo.py) starts and stops the
stack; this module only needs a `Target` of a running local stack.

1. a streamed reply;  2. a refused capability (opus, tools for a basic_user);  3. a quota 429;
4. a throttled region served by failover;  5. the audit trail of all of the above (query + verify);
6. a GDPR export of one person.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import sys
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from gatewayctl import tenancy
from gatewayctl.output import CommandError, table
from gatewayctl.target import Target

HAIKU = "claude-haiku-4-5"
OPUS = "claude-opus-4-5"
QUOTA_REQUESTS_PER_MINUTE = 2

# The two tenants and their people, the same ones `local up` seeds, plus dave, whose own quota
# (QUOTA_REQUESTS_PER_MINUTE) the quota step uses up. Seeding is idempotent: a re-run reuses them.
TENANTS = (
    {"tenant_id": "acme", "name": "Acme Corp", "residency": "us"},
    {"tenant_id": "globex", "name": "Globex GmbH", "residency": "eu"},
)
PEOPLE = (
    {"key": "alice", "username": "alice@acme.example", "tenant_id": "acme", "roles": ["basic_user"]},
    {"key": "bob", "username": "bob@acme.example", "tenant_id": "acme", "roles": ["power_user"]},
    {"key": "carol", "username": "carol@globex.example", "tenant_id": "globex", "roles": ["basic_user"]},
    {
        "key": "dave",
        "username": "dave@globex.example",
        "tenant_id": "globex",
        "roles": ["basic_user"],
        "limits": {"requests_per_minute": QUOTA_REQUESTS_PER_MINUTE},
    },
)


class DemoError(Exception):
    """A step could not show what it should."""


@dataclass
class Person:
    key: str
    username: str
    password: str
    sub: str
    tenant_id: str
    roles: list[str]
    limits: dict[str, Any] | None = None
    token: str = ""


@dataclass
class StepResult:
    number: int
    title: str
    ok: bool = True
    checks: list[tuple[bool, str]] = field(default_factory=list)
    error: str | None = None


@dataclass
class Call:
    """One request the demo made: what it expects the audit trail to hold for it."""

    request_id: str
    label: str
    tenant: str
    outcome: str  # the outcome record's event type: response or denied
    status: int


# ---------------------------------------------------------------- output


class Out:
    """Readable output: step headings, indented lines, and progress wherever the demo waits."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()

    def line(self, text: str = "", indent: int = 2) -> None:
        self.stream.write((" " * indent + text if text else "") + "\n")
        self.stream.flush()

    def write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def heading(self, number: int, total: int, title: str) -> None:
        self.line()
        self.line(f"== {number}/{total}  {title} " + "=" * max(3, 72 - len(title)), indent=0)

    def table(self, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
        for text in table(rows, columns).splitlines():
            self.line(text, indent=4)

    @contextlib.contextmanager
    def waiting(self, label: str, *, every: float = 5.0) -> Iterator[None]:
        """Show that the demo waits: a ticking counter on a terminal, a line every `every` s otherwise."""
        started = time.monotonic()
        done = threading.Event()

        def tick() -> None:
            while not done.wait(0.25 if self.tty else every):
                elapsed = time.monotonic() - started
                if self.tty:
                    self.write(f"\r  {label} ... {elapsed:4.1f}s")
                else:
                    self.line(f"  ... still {label.lower()} ({elapsed:.0f}s)")

        if self.tty:
            self.write(f"  {label} ...")
        else:
            self.line(f"{label} ...")
        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        outcome = "done"
        try:
            yield
        except BaseException:
            outcome = "failed"
            raise
        finally:
            done.set()
            ticker.join()
            elapsed = time.monotonic() - started
            if self.tty:
                self.write(f"\r  {label} ... {outcome} ({elapsed:.1f}s)\n")
            else:
                self.line(f"{label}: {outcome} ({elapsed:.1f}s)")


# ---------------------------------------------------------------- the demo


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
        self._failover: dict[str, Any] = {}

    # -- running ------------------------------------------------------------------------------

    def run(self) -> bool:
        self.seed()
        steps: list[tuple[str, Callable[[StepResult], None]]] = [
            ("A streamed reply through the anthropic SDK", self.step_stream),
            ("A refused capability: a basic_user asks for opus, then for tools", self.step_refused),
            (f"A quota 429: dave may make {QUOTA_REQUESTS_PER_MINUTE} requests a minute", self.step_quota),
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

    # -- seeding ------------------------------------------------------------------------------

    def seed(self) -> dict[str, Person]:
        """Two tenants, four people with their roles (idempotent), and a fresh token for each."""
        self.out.line()
        self.out.line("== Seeding: two tenants, their people and roles " + "=" * 27, indent=0)
        with self.out.waiting("Seeding tenants and people"):
            known = {t["tenant_id"] for t in tenancy.list_tenants(self.target)}
            for tenant in TENANTS:
                if tenant["tenant_id"] not in known:
                    tenancy.create_tenant(
                        self.target, tenant["tenant_id"], name=tenant["name"], residency=tenant["residency"]
                    )
            passwords = {
                u["username"]: u["password"] for u in (self.state.get("demo") or {}).get("users", [])
            }
            for spec in PEOPLE:
                person = self._ensure_person(spec, passwords.get(spec["username"]))
                person.token = self._token(person)
                self.people[person.key] = person
        rows = [
            {
                "person": p.username,
                "tenant": p.tenant_id,
                "residency": next(t["residency"] for t in TENANTS if t["tenant_id"] == p.tenant_id),
                "roles": p.roles,
                "own limits": p.limits or "-",
            }
            for p in self.people.values()
        ]
        self.out.table(rows)
        return self.people

    def _ensure_person(self, spec: dict[str, Any], password: str | None) -> Person:
        idp = self.target.client("cognito-idp")
        pool_id = self.target.output("UserPoolId")
        try:
            user = idp.admin_get_user(UserPoolId=pool_id, Username=spec["username"])
            attributes = user["UserAttributes"]
        except idp.exceptions.UserNotFoundException:
            user = idp.admin_create_user(
                UserPoolId=pool_id, Username=spec["username"], MessageAction="SUPPRESS"
            )
            attributes = user["User"]["Attributes"]
            password = None
        sub = next(a["Value"] for a in attributes if a["Name"] == "sub")
        if password is None:  # a person the stack did not list: give them a password we know
            password = "Demo-" + secrets.token_urlsafe(9)
            idp.admin_set_user_password(
                UserPoolId=pool_id, Username=spec["username"], Password=password, Permanent=True
            )
        roles, limits = sorted(spec["roles"]), spec.get("limits")
        try:
            current = tenancy.get_principal(self.target, sub)
        except CommandError:
            current = None
        if current is not None and (
            current["tenant_id"] != spec["tenant_id"] or (current["limits"] or None) != limits
        ):
            tenancy.remove_principal(self.target, sub)  # only a demo-made principal can differ like this
            current = None
        if current is None:
            tenancy.add_principal(
                self.target,
                spec["tenant_id"],
                sub,
                roles,
                kind="user",
                consent=True,
                limits=limits,
                display_name=spec["username"],
            )
        elif sorted(current["roles"]) != roles:
            tenancy.set_roles(self.target, sub, roles)
        return Person(spec["key"], spec["username"], password, sub, spec["tenant_id"], roles, limits)

    def _token(self, person: Person) -> str:
        result = self.target.client("cognito-idp").initiate_auth(
            ClientId=self.state["cognito"]["people_client_id"],
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": person.username, "PASSWORD": person.password},
        )
        return result["AuthenticationResult"]["AccessToken"]

    def client(self, person: Person) -> Any:
        import anthropic

        return anthropic.Anthropic(base_url=self.state["endpoint"], auth_token=person.token, max_retries=0)

    # -- the emulator's control API -----------------------------------------------------------

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        url = self.state["bedrock"]["control_url"] + path
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            url, data=data, method=method, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def upstream_counts(self) -> dict[str, int]:
        return {
            region: c.get("total", 0)
            for region, c in self._control("GET", "/_emulator/requests")["counts"].items()
        }

    def _calls_since(self, before: dict[str, int]) -> dict[str, int]:
        after = self.upstream_counts()
        return {r: n - before.get(r, 0) for r, n in after.items() if n != before.get(r, 0)}

    # -- 1. a streamed reply ------------------------------------------------------------------

    def step_stream(self, result: StepResult) -> None:
        alice = self.people["alice"]
        prompt = "Tell me what a gateway for Claude does"
        self.out.line(f"{alice.username} (basic_user, tenant acme) streams a reply from {HAIKU}:")
        self.out.line(f"client.messages.stream(model={HAIKU!r}, max_tokens=256, messages=[{prompt!r}])")
        chunks: list[str] = []
        self.out.write("    reply: ")
        with self.client(alice).messages.stream(
            model=HAIKU, max_tokens=256, messages=[{"role": "user", "content": prompt}]
        ) as stream:
            for text in stream.text_stream:
                chunks.append(text)
                self.out.write(text)
            message = stream.get_final_message()
            request_id = stream.response.headers.get("request-id", "")
        self.out.write("\n")
        self.calls.append(Call(request_id, "1 streamed", "acme", "response", 200))
        self.out.line(
            f"request id {request_id}; {len(chunks)} text deltas; stop_reason {message.stop_reason}; "
            f"usage in/out {message.usage.input_tokens}/{message.usage.output_tokens} tokens"
        )
        self.check(result, len(chunks) > 1, f"the reply arrived as a stream ({len(chunks)} text deltas)")
        self.check(
            result,
            "".join(chunks) == f"Emulated reply to: {prompt}" and message.stop_reason == "end_turn",
            "the streamed text is the whole reply from the (emulated) Bedrock model",
        )
        self.check(result, bool(request_id), "the gateway gave the reply a request id")

    # -- 2. a refused capability --------------------------------------------------------------

    def step_refused(self, result: StepResult) -> None:
        import anthropic

        alice = self.people["alice"]
        client = self.client(alice)
        before = self.upstream_counts()
        tool = {
            "name": "get_weather",
            "description": "The weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
        asks = [
            ("2 opus", f"model={OPUS!r}", {"model": OPUS}),
            ("2 tools", f"model={HAIKU!r} with tools=[get_weather]", {"model": HAIKU, "tools": [tool]}),
        ]
        for label, described, kwargs in asks:
            self.out.line(f"{alice.username} (basic_user) asks for {described}:")
            try:
                client.messages.create(
                    max_tokens=64, messages=[{"role": "user", "content": "use the tool, please"}], **kwargs
                )
            except anthropic.PermissionDeniedError as exc:
                body = exc.body.get("error", {}) if isinstance(exc.body, dict) else {}
                request_id = exc.response.headers.get("request-id", "")
                self.out.line(f"-> {exc.status_code} {body.get('type')}: {body.get('message')}", indent=4)
                self.calls.append(Call(request_id, label, "acme", "denied", 403))
                self.check(
                    result,
                    exc.status_code == 403 and body.get("type") == "permission_error",
                    f"refused with 403 permission_error (request id {request_id})",
                )
            else:
                self.check(result, False, f"refused: {described} was answered instead")
        client.close()
        called = self._calls_since(before)
        self.check(
            result,
            not called,
            f"no model was called for the refused requests (upstream calls: {called or 'none'})",
        )

    # -- 3. a quota 429 -----------------------------------------------------------------------

    def step_quota(self, result: StepResult) -> None:
        import anthropic

        dave = self.people["dave"]
        client = self.client(dave)
        limit = QUOTA_REQUESTS_PER_MINUTE
        self.out.line(f"{dave.username} (tenant globex) has his own limit: {limit} requests a minute.")
        refused: anthropic.RateLimitError | None = None
        for attempt in range(1, limit + 2):
            try:
                raw = client.messages.with_raw_response.create(
                    model=HAIKU, max_tokens=32, messages=[{"role": "user", "content": f"request {attempt}"}]
                )
            except anthropic.RateLimitError as exc:
                refused = exc
                break
            headers = raw.headers
            raw.parse()
            request_id = headers.get("request-id", "")
            self.calls.append(Call(request_id, f"3 quota #{attempt}", "globex", "response", 200))
            self.out.line(
                f"request {attempt}: 200 (anthropic-ratelimit-requests-limit: "
                f"{headers.get('anthropic-ratelimit-requests-limit', '-')}; request id {request_id})"
            )
        client.close()
        if refused is None:
            self.check(result, False, f"request {limit + 1} within a minute is refused with 429")
            return
        body = refused.body.get("error", {}) if isinstance(refused.body, dict) else {}
        headers = refused.response.headers
        request_id = headers.get("request-id", "")
        retry_after = headers.get("retry-after")
        self.calls.append(Call(request_id, "3 quota 429", "globex", "denied", 429))
        self.out.line(
            f"request {attempt}: {refused.status_code} {body.get('type')}: {body.get('message')} "
            f"(retry-after {retry_after}s, request id {request_id})"
        )
        # A re-run within the same minute finds part of the quota used already: fewer 200s, same 429.
        self.check(
            result,
            refused.status_code == 429 and body.get("type") == "rate_limit_error",
            f"refused with 429 rate_limit_error once {limit} requests were used this minute",
        )
        self.check(
            result,
            bool(retry_after) and int(retry_after) >= 1,
            f"the 429 says when to retry (retry-after: {retry_after})",
        )

    # -- 4. failover --------------------------------------------------------------------------

    def step_failover(self, result: StepResult) -> None:
        bob = self.people["bob"]
        first, second = self.state["bedrock"]["regions"]["us"][:2]
        control = self.state["bedrock"]["control_url"]
        self.out.line(f"Tenant acme (residency us) is served from Bedrock {first}, then {second}.")
        self.out.line(f'POST {control}/_emulator/faults/{first}  {{"kind": "throttle", "count": 1}}')
        self._control("POST", f"/_emulator/faults/{first}", {"kind": "throttle", "count": 1})
        try:
            before = self.upstream_counts()
            raw = self.client(bob).messages.with_raw_response.create(
                model=HAIKU, max_tokens=64, messages=[{"role": "user", "content": "Are you there?"}]
            )
            message = raw.parse()
            request_id = raw.headers.get("request-id", "")
            called = self._calls_since(before)
        finally:
            self._control("DELETE", f"/_emulator/faults/{first}")
        self.calls.append(Call(request_id, "4 failover", "acme", "response", 200))
        self._failover = {"request_id": request_id, "first": first, "second": second}
        self.out.line(
            f'{bob.username} asks {HAIKU}: 200 "{message.content[0].text}" (request id {request_id})'
        )
        self.out.line(f"upstream calls for it, per region (emulator counts): {called}")
        self.check(
            result, raw.http_response.status_code == 200, "the caller got a normal reply, not an error"
        )
        self.check(
            result,
            called.get(first) == 1 and called.get(second) == 1 and sum(called.values()) == 2,
            f"{first} was tried once (throttled), {second} served the reply",
        )
        self.out.line("the recorded attempts are in the audit trail: step 5 shows them")

    # -- 5. the audit trail -------------------------------------------------------------------

    def step_audit(self, result: StepResult) -> None:
        from gatewayctl import audit

        query = audit.query_for(self.target)
        ids = [c.request_id for c in self.calls if c.request_id]
        marks = ", ".join("?" for _ in ids)
        tenants = sorted({c.tenant for c in self.calls})
        tmarks = ", ".join("?" for _ in tenants)
        records_sql = (
            "SELECT request_id, tenant, event_type, status, model_alias, provider, region, attempt_count, "
            f"quota_decision FROM audit_events WHERE tenant IN ({tmarks}) AND request_id IN ({marks}) "
            "ORDER BY event_time, event_type"
        )
        witness_sql = f"SELECT request_id, status FROM access_logs WHERE request_id IN ({marks})"
        pump = self._own_pump()
        self.out.line("The gateway put a request record and an outcome record on the audit stream (Kinesis)")
        self.out.line("for each call; the pump moves them to the Object Lock bucket, as Firehose does.")
        with self.out.waiting(f"Waiting for the audit records of {len(ids)} requests to reach S3"):
            deadline = time.monotonic() + 30
            while True:
                if pump is not None:
                    pump.pump_once()
                rows = query(records_sql, [*tenants, *ids]).dicts()
                witnessed = {r["request_id"] for r in query(witness_sql, ids).dicts()}
                outcomes = {r["request_id"] for r in rows if r["event_type"] != "request"}
                if (outcomes >= set(ids) and witnessed >= set(ids)) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        label = {c.request_id: c.label for c in self.calls}
        self.out.line(
            "gatewayctl audit query (DuckDB over the bucket here, Athena in the cloud; the same SQL):"
        )
        self.out.line(f"  {records_sql}".replace("?, ", "").replace("(?)", "(...)"))
        order = {c.request_id: i for i, c in enumerate(self.calls)}
        rows.sort(key=lambda r: (order.get(r["request_id"], len(order)), r["event_type"] != "request"))
        self.out.table(
            [{"demo step": label.get(r["request_id"], "?"), **r} for r in rows],
            [
                "demo step",
                "event_type",
                "status",
                "tenant",
                "model_alias",
                "region",
                "attempt_count",
                "quota_decision",
            ],
        )
        by_id: dict[str, dict[str, dict[str, Any]]] = {}
        for r in rows:
            by_id.setdefault(r["request_id"], {})[r["event_type"]] = r
        for call in self.calls:
            got = by_id.get(call.request_id, {})
            outcome = got.get(call.outcome) or {}
            # A policy refusal is decided before the request record is written (its one record is
            # the denial); a served or quota-refused request has a request record and an outcome.
            needs_request = call.outcome == "response" or call.status == 429
            self.check(
                result,
                outcome.get("status") == call.status
                and ("request" in got or not needs_request)
                and call.request_id in witnessed,
                f"{call.label}: "
                + ("a request record, " if needs_request else "")
                + f"a {call.outcome} record with status {call.status}, and an access-log line",
            )
        quota_denied = next(
            (by_id.get(c.request_id, {}).get("denied") for c in self.calls if c.status == 429), None
        )
        self.check(
            result,
            quota_denied is not None and str(quota_denied.get("quota_decision") or "").startswith("refused"),
            f"the 429's record holds the quota decision ({(quota_denied or {}).get('quota_decision')})",
        )
        self._show_failover_attempts(result, query)
        self._verify(result)

    def _show_failover_attempts(self, result: StepResult, query: Any) -> None:
        rid, first, second = (self._failover.get(k) for k in ("request_id", "first", "second"))
        if not rid:
            self.check(result, False, "the failover request's attempts are recorded (step 4 made no request)")
            return
        (row,) = query(
            "SELECT region, attempt_count, attempts FROM audit_events "
            "WHERE tenant = ? AND request_id = ? AND event_type = 'response'",
            ["acme", rid],
        ).dicts() or [{"region": None, "attempt_count": None, "attempts": []}]
        attempts = row["attempts"] or []
        shown = " -> ".join(
            f"{a['provider']} {a['region']} "
            + (f"{a['error']} ({a['status']})" if a.get("error") else "served")
            for a in attempts
        )
        self.out.line(f"4 failover, its attempts as recorded: {shown or '(none)'}")
        self.check(
            result,
            row["region"] == second
            and row["attempt_count"] == 2
            and len(attempts) == 2
            and attempts[0]["region"] == first
            and bool(attempts[0].get("error"))
            and attempts[1]["region"] == second
            and not attempts[1].get("error"),
            f"the failover is recorded: {first} throttled, then {second} served",
        )

    def _verify(self, result: StepResult) -> None:
        from gatewayctl import audit

        today = dt.datetime.now(dt.UTC).date()
        since = min(self.started_at.date(), today)
        self.out.line(f"gatewayctl audit verify --from {since} --to {today}:")
        report = audit.verify_target(self.target, since, today).to_dict()
        self.out.table(
            [{k: report[k] for k in ("ok", "witnessed", "audited", "objects_checked", "duplicates")}]
        )
        for kind in ("missing", "incomplete", "extra", "unlocked"):
            if report[kind]:
                self.out.line(f"{kind}: {report[kind][:5]}", indent=4)
        self.check(
            result,
            report["ok"] and report["witnessed"] >= len(self.calls),
            "verify is clean: every witnessed request has its records, none is unwitnessed, "
            "every object is locked",
        )

    def _own_pump(self) -> Any:
        """The stack's pump moves records every few seconds; if it is not running, pump here instead
        (from the same checkpoint, so nothing is written twice)."""
        from gatewayctl.local import processes

        pid = self.state.get("pump_pid")
        if pid and processes.alive(int(pid)):
            return None
        from gatewayctl.local.pump import Pump

        log_dir = self.state.get("log_dir")
        return Pump(
            self.target.client("kinesis"),
            self.target.client("s3"),
            self.target.output("AuditStreamName"),
            self.target.output("AuditBucketName"),
            Path(log_dir) / "pump-checkpoint.json" if log_dir else None,
        )

    # -- 6. GDPR export -----------------------------------------------------------------------

    def step_gdpr(self, result: StepResult) -> None:
        from gatewayctl import audit

        alice = self.people["alice"]
        self.out.line(f"gatewayctl gdpr export {alice.sub}   ({alice.username})")
        with self.out.waiting("Exporting"):
            export = audit.export_principal(self.target, alice.sub)
        records = export["records"]
        if self.export_dir is not None:
            path = self.export_dir / f"gdpr-export-{alice.sub}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(export, indent=2, sort_keys=True, default=str) + "\n")
            path.chmod(0o600)
            self.out.line(f"written to {path}")
        principal = export.get("principal") or {}
        self.out.line(
            f"principal: tenant {principal.get('tenant_id')}, roles {principal.get('roles')}, "
            f"consent given at {principal.get('consent_given_at')}"
        )
        self.out.line(
            f"pseudonym in the audit trail: {export.get('pseudonym')}; {len(records)} audit records"
        )
        mine = {c.request_id: c.label for c in self.calls if c.label.startswith(("1", "2"))}
        self.out.table(
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
        self.check(
            result,
            bool(export.get("pseudonym")),
            "her records are found by her pseudonym, recomputed from her secret",
        )
        self.check(
            result, set(mine) <= found, f"the export holds her requests of steps 1 and 2 ({len(mine)})"
        )
        others = {c.request_id for c in self.calls if c.request_id not in mine}
        self.check(result, not (found & others), "and nobody else's")
        text = json.dumps(records, default=str)
        self.check(
            result,
            alice.sub not in text and alice.username not in text,
            "no audit record names her: only the pseudonym (erasure deletes the secret, unlinking them all)",
        )
