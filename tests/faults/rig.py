"""The fault suite's rig: a local stack whose gateway reaches DynamoDB and Kinesis through a fault proxy
(gatewayctl/local/fault_proxy.py), raw HTTP clients that can leave at any point, and the checks made
after every run (docs/faults.md):

- every request that reached the app has exactly one outcome record, and a `request` record exactly when
  it got past policy and its put was not lost (records are deduplicated by `event_id`, as consumers do);
- the tenant's usage counters, in every window (window items plus its pools), once the app's leases are
  given back, equal what the settlement rules give for its requests (docs/tenancy.md): released when
  nothing was served and nothing possibly billed, settled to the real usage, to the cut-short bound, kept
  whole when usage is unknown, plus a reservation's worth per try that may have been billed. A reservation
  left behind, or applied twice, shows here;
- no reservation dangles: every hold state item still active is one the rules keep whole, and no lease
  state item is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from gateway.adapters.dynamo_codec import from_item
from gateway.domain import pricing, quota
from gateway.domain.catalog import load_catalog
from gateway.domain.request import parse_messages_request
from gateway.models import tenant_items, usage_items
from gateway.models.audit import UNKNOWN_TENANT
from gateway.models.exchange import PolicyDecision, Usage
from gateway.models.quota import ACTIVE, HOLD, LEASE, Amount

from gatewayctl.local.fault_proxy import FaultProxy, Rule
from gatewayctl.local.stack import LocalStack, StackOptions, User
from tests.support.audit_stream import AuditStream

CATALOG = load_catalog()
MODEL = "claude-haiku-4-5"
MAX_TOKENS = 64
OUTCOMES = ("response", "denied", "error")
# Limits high enough never to refuse: every reservation is a real conditional transaction.
LIMITS = {"requests_per_minute": 100_000, "tokens_per_minute": 10**9, "tokens_per_day": 10**10, "usd_per_month": 10**6}
WINDOWS = ("minute", "day", "month")


def proxied_app(stack: LocalStack, proxy_url: str) -> Callable[[Any], Any]:
    """The gateway app with its DynamoDB and Kinesis clients through the proxy, made as the container's
    own are (gateway.adapters.aws: same retries and timeouts); the DLQ and breakers reach moto directly."""

    def build(settings: Any) -> Any:
        from gateway.adapters import aws
        from gateway.adapters.kinesis_audit import KinesisAuditSink
        from gateway.app import create_app, dynamo_services

        ddb = aws.client("dynamodb", settings.region, endpoint_url=proxy_url, connect_timeout=2, read_timeout=3)
        kinesis = aws.client("kinesis", settings.region, endpoint_url=proxy_url, connect_timeout=2, read_timeout=3)
        sqs = aws.client("sqs", settings.region, endpoint_url=stack.moto_endpoint, connect_timeout=2, read_timeout=5)
        tenancy, quota_ = dynamo_services(settings, CATALOG, client=ddb)
        audit = KinesisAuditSink(settings, kinesis=kinesis, sqs=sqs)
        return create_app(settings, tenancy=tenancy, quota=quota_, audit=audit, catalog=CATALOG)

    return build


@dataclass
class Sent:
    """One request as the client saw it. `status` is the HTTP status, or None when the client left first."""

    label: str
    body: bytes
    status: int | None = None
    request_id: str | None = None
    events: list[str] = field(default_factory=list)  # SSE event types received
    json: Any = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


@dataclass
class Run:
    """What one check found, for the test's own assertions and the suite's figures."""

    rules: list[str]  # per outcome record, in the order sent: released, settled, bound, kept, billed...
    records: dict[str, list[dict[str, Any]]]  # request id -> its records (deduplicated)
    outcomes: list[dict[str, Any]]
    counters: dict[str, Amount]
    expected: Amount
    duplicates: int
    dead_lettered: int
    active_holds: list[dict[str, Any]]  # the requests' hold state items still active (each must be a `kept`)
    active_leases: list[dict[str, Any]]  # lease state items left after the leases were given back


class Figures:
    """The suite's figures (docs/faults.md), summed over its runs per fault class (`fault_class`, set per test
    by the `rig` fixture from the test module's FAULT_CLASS)."""

    def __init__(self) -> None:
        self.by_class: dict[str, Counter[str]] = {}
        self.fault_class = "unclassified"

    def add(self, **values: int) -> None:
        self.by_class.setdefault(self.fault_class, Counter()).update(values)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {name: dict(values) for name, values in sorted(self.by_class.items())}


class Rig:
    def __init__(self) -> None:
        self.stack = LocalStack(StackOptions(env="faults"))
        self.proxy: FaultProxy | None = None
        self.figures = Figures()
        self._dlq_by_tenant: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    # -- start and stop -----------------------------------------------------------------------------

    def start(self) -> Rig:
        # The stack sets its moto endpoint in this process's environment; the worker's own stack (if any)
        # needs its own back. Both moto servers share moto's in-process backends.
        environ = dict(os.environ)
        try:
            self.stack.start(gateway=False)
            self.proxy = FaultProxy(self.stack.moto_endpoint)
            self.proxy.start()
            self.stack.start_gateway(proxied_app(self.stack, self.proxy.url))
        except BaseException:
            self.stop()
            raise
        finally:
            if "AWS_ENDPOINT_URL" in environ:
                os.environ.clear()
                os.environ.update(environ)
        self.kinesis = self.stack.client("kinesis")
        self.audit_stream = AuditStream(self.kinesis, self.stack.outputs["AuditStreamName"])
        self.sqs = self.stack.client("sqs")
        self.ddb = self.stack.client("dynamodb")
        return self

    def stop(self) -> None:
        self.stack.stop()
        if self.proxy is not None:
            self.proxy.stop()

    @property
    def app(self) -> Any:
        return self.stack.app

    @property
    def endpoint(self) -> str:
        return self.stack.endpoint

    def reset(self) -> None:
        """No fault anywhere, counts at zero, breakers closed (in this app and the shared store)."""
        assert self.proxy is not None
        self.proxy.clear()
        self.stack.clear_faults()
        self.stack.reset_counts()
        self.stack.reset_breakers()

    # -- callers ------------------------------------------------------------------------------------

    def caller(self, roles: tuple[str, ...] = ("power_user",)) -> tuple[str, User]:
        tenant_id = f"f-{uuid.uuid4().hex[:10]}"
        self.stack.create_tenant(tenant_id, residency="us", limits=LIMITS)
        user = self.stack.add_user(tenant_id, f"{tenant_id}@example.com", roles, consent=True)
        user.token = self.stack.access_token(user.username, user.password)
        return tenant_id, user

    def mark_hot(self, tenant_id: str, seconds: float = 600.0) -> None:
        """The tenant's QUOTA#HOT mark, as a container that met contention writes it: its requests lease from
        their first one (docs/tenancy.md, Hot tenants)."""
        key = {k: {"S": v} for k, v in tenant_items.quota_hot_key(tenant_id).items()}
        until = {"N": str(int(time.time() + seconds))}
        self.ddb.put_item(TableName=self.stack.outputs["TenantsTableName"], Item={**key, "until": until})

    # -- faults -------------------------------------------------------------------------------------

    def aws_fault(self, service: str, operation: str | None, kind: str, **kwargs: Any) -> Rule:
        assert self.proxy is not None
        return self.proxy.add(Rule(service, operation, kind, **kwargs))

    def upstream_fault(self, region: str, kind: str, *, provider: str = "bedrock", **fault: Any) -> None:
        self.stack.set_fault(region, kind, provider=provider, **fault)

    # -- requests -----------------------------------------------------------------------------------

    @staticmethod
    def body(
        label: str, *, stream: bool = False, max_tokens: int = MAX_TOKENS, model: str = MODEL, **extra: Any
    ) -> bytes:
        message = {"role": "user", "content": f"{label}: tell me about faults ({uuid.uuid4().hex[:8]})"}
        return json.dumps(
            {"model": model, "max_tokens": max_tokens, "stream": stream, "messages": [message], **extra}
        ).encode()

    def headers(self, user: User) -> dict[str, str]:
        return {"authorization": f"Bearer {user.token}", "content-type": "application/json"}

    def send(self, user: User, label: str, body: bytes | None = None, *, timeout: float = 60) -> Sent:
        """A whole request; the reply read to its end."""
        sent = Sent(label, body or self.body(label))
        with httpx.Client(timeout=timeout) as client:
            response = client.post(f"{self.endpoint}/v1/messages", content=sent.body, headers=self.headers(user))
        sent.status, sent.request_id = response.status_code, response.headers.get("request-id")
        with contextlib.suppress(ValueError):
            sent.json = response.json()
        return sent

    def stream(self, user: User, label: str, body: bytes | None = None, *, leave_after: int | None = None) -> Sent:
        """A streamed request read to its end, or left after `leave_after` events (the connection closed)."""
        sent = Sent(label, body or self.body(label, stream=True))
        with (
            httpx.Client(timeout=60) as client,
            client.stream("POST", f"{self.endpoint}/v1/messages", content=sent.body, headers=self.headers(user)) as r,
        ):
            sent.status, sent.request_id = r.status_code, r.headers.get("request-id")
            if r.status_code != 200:  # an error before the stream: a JSON body, as a whole reply's
                r.read()
                with contextlib.suppress(ValueError):
                    sent.json = r.json()
                return sent
            for line in r.iter_lines():
                if line.startswith("event: "):
                    sent.events.append(line.removeprefix("event: "))
                    if leave_after is not None and len(sent.events) >= leave_after:
                        break
        return sent

    def leave_during_body(self, user: User, label: str, *, fraction: float = 0.5) -> Sent:
        """Headers and `fraction` of the body; the connection closes once the gateway runs the request."""
        sent = Sent(label, self.body(label))
        with self._raw(user, len(sent.body)) as sock:
            if fraction:
                sock.sendall(sent.body[: int(len(sent.body) * fraction)])
            wait_until(lambda: self.in_flight() > 0, "the gateway to start the request")
        return sent

    def leave_after_body(self, user: User, label: str, until: Callable[[], bool], body: bytes | None = None) -> Sent:
        """The whole body; the connection closes once `until()` holds (say, the upstream has the request)."""
        sent = Sent(label, body or self.body(label))
        with self._raw(user, len(sent.body)) as sock:
            sock.sendall(sent.body)
            wait_until(until, "the request to reach the point the client leaves at")
        return sent

    @contextlib.contextmanager
    def _raw(self, user: User, length: int) -> Iterator[socket.socket]:
        url = urlsplit(self.endpoint)
        head = (
            f"POST /v1/messages HTTP/1.1\r\nHost: {url.netloc}\r\nauthorization: Bearer {user.token}\r\n"
            f"content-type: application/json\r\ncontent-length: {length}\r\n\r\n"
        )
        with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
            sock.sendall(head.encode())
            yield sock

    def upstream_calls(self) -> int:
        """Requests that reached any emulated upstream (Bedrock regions and Vertex) since the last reset."""
        return sum(c.get("total", 0) for p in ("bedrock", "vertex") for c in self.stack.request_counts(p).values())

    def in_flight(self) -> int:
        """Requests the gateway's server is running now (uvicorn's own count of request tasks)."""
        server = next(s for s in self.stack._servers if s.name == "gateway")
        return len(server.server.server_state.tasks)

    # -- what the stack holds -----------------------------------------------------------------------

    def _poll_dlq(self) -> None:
        url = self.stack.outputs["AuditDlqUrl"]
        with self._lock:
            while True:
                messages = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
                if not messages:
                    return
                for message in messages:
                    data = json.loads(message["Body"])
                    self._dlq_by_tenant.setdefault(data["tenant_id"], []).append(data)
                    self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def records(self, tenant_id: str) -> tuple[list[dict[str, Any]], int, int]:
        """(the tenant's records from the stream and the DLQ, deduplicated by event_id), duplicates, DLQ'd."""
        self._poll_dlq()
        streamed = self.audit_stream.records(tenant_id)
        with self._lock:
            raw = streamed + self._dlq_by_tenant.get(tenant_id, [])
            dead = len(self._dlq_by_tenant.get(tenant_id, []))
        unique: dict[str, dict[str, Any]] = {}
        for record in raw:
            unique.setdefault(record["event_id"], record)
        return list(unique.values()), len(raw) - len(unique), dead

    def _items(self, pk: str) -> list[dict[str, Any]]:
        table, items, start = self.stack.outputs["UsageTableName"], [], None
        while True:
            query: dict[str, Any] = {
                "TableName": table,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": pk}},
                "ConsistentRead": True,
            }
            if start:
                query["ExclusiveStartKey"] = start
            page = self.ddb.query(**query)
            items += [from_item(item) for item in page["Items"]]
            start = page.get("LastEvaluatedKey")
            if not start:
                return items

    def counters(self, tenant_id: str) -> dict[str, Amount]:
        """What the tenant is charged, summed per window kind (all minutes, all days, all months): its window
        items plus its pools' items (a hot tenant's pools hold budget taken from the window items, as
        negative counters: usage_items), so that budget moved to a pool and not leased out nets to zero."""
        pk = quota.tenant_pk(tenant_id)
        sums = {window: Amount() for window in WINDOWS}
        for partition in [pk, *(usage_items.pool_pk(pk, n) for n in range(usage_items.POOLS))]:
            for item in self._items(partition):
                window = item["sk"].split("#", 1)[0]
                if window in sums:
                    sums[window] = sums[window] + Amount.of(usage_items.counters(item))
        return sums

    def hold_states(self, tenant_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The tenant's active state items: (requests' holds, leases). A pool's refill or drain is a transfer
        between the tenant's own items, recorded as a hold that is never given back: not a request's."""
        holds, leases = [], []
        for partition in usage_items.hold_partitions([quota.tenant_pk(tenant_id)]):
            for item in self._items(partition):
                if item.get("state") != ACTIVE:
                    continue
                if item.get("kind") == LEASE:
                    leases.append(item)
                elif item.get("kind") == HOLD and not str(item.get("key", "")).startswith(("pool", "drain|")):
                    holds.append(item)
        return holds, leases

    def give_back_leases(self) -> None:
        """What the app does when its container stops (Quota.close): leases this container holds go back to
        the tenants' windows and pools. Run on the app's own event loop."""
        server = next(s for s in self.stack._servers if s.name == "gateway")
        loop = server.server.servers[0].get_loop()
        asyncio.run_coroutine_threadsafe(self.app.state.quota.close(), loop).result(30)

    # -- the checks ---------------------------------------------------------------------------------

    def check(
        self,
        tenant_id: str,
        sent: list[Sent],
        *,
        expect_request_records: bool | list[bool | None] = True,
        lost_outcomes: int = 0,
        lost_requests: int = 0,
        unrecorded: Amount | None = None,
        timeout: float = 20.0,
    ) -> Run:
        """Wait until every request sent has its outcome record and the app is quiet; give the app's leases
        back; then assert that each request has one outcome (and its request record as expected), that the
        tenant's counters are what the settlement rules give, and that no reservation dangles (failing with
        what differs). `expect_request_records`: per request, whether it got past policy to its `request`
        record (None: either, when the put's outcome is unknown); `lost_*`: records the test made vanish;
        `unrecorded`: what the requests whose outcome record vanished must have been charged."""
        bodies = {s.sha256: s.body for s in sent}
        ids = {s.request_id for s in sent if s.request_id}
        deadline = time.monotonic() + timeout
        while True:
            # Quiet first: no request running and no settlement or record still being written (a write
            # retried after a lost answer lands late, so counters read earlier could look right).
            quiet = self.in_flight() == 0 and self.app.state.background.pending == 0
            records, duplicates, dead = self.records(tenant_id)
            # Refused before the principal resolved: filed under `_unknown`, found by request id.
            records += [r for r in self.records(UNKNOWN_TENANT)[0] if r["request_id"] in ids]
            outcomes = [r for r in records if r["event_type"] in OUTCOMES]
            if (quiet and len(outcomes) >= len(sent) - lost_outcomes) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        expected, rules = self._expected(outcomes, bodies)
        if unrecorded is not None:
            expected = expected + unrecorded
        # Leases are budget a container took ahead; it gives them back when it stops. Give them back now, so
        # that what the tenant is charged is what its requests used.
        self.give_back_leases()
        counters = self.counters(tenant_id)
        holds, leases = self.hold_states(tenant_id)
        by_request: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            by_request.setdefault(record["request_id"], []).append(record)
        order = {s.sha256: i for i, s in enumerate(sent)}
        outcomes.sort(key=lambda r: order.get(r["request_sha256"] or "", len(sent)))
        run = Run(
            [rules[r["event_id"]] for r in outcomes],
            by_request,
            outcomes,
            counters,
            expected,
            duplicates,
            dead,
            holds,
            leases,
        )
        self._record_figures(sent, run, lost_outcomes, lost_requests)
        self._assert_records(sent, run, expect_request_records, lost_outcomes, lost_requests)
        for window in WINDOWS:
            assert counters[window] == expected, (
                f"{window} counters {counters[window]} != {expected} by the settlement rules {run.rules}"
            )
        # No reservation dangles: a request's hold is given back (settled or released) unless the rules keep
        # it whole (`kept`: its state item stays active, by design); no lease outlives its give-back.
        kept = run.rules.count("kept")
        assert len(holds) == kept, f"{len(holds)} active holds for {kept} kept reservations: {holds}"
        assert not leases, f"leases still active after they were given back: {leases}"
        return run

    def _assert_records(
        self, sent: list[Sent], run: Run, expect: bool | list[bool | None], lost_outcomes: int, lost_requests: int
    ) -> None:
        assert len(run.outcomes) == len(sent) - lost_outcomes, (
            f"{len(run.outcomes)} outcome records for {len(sent)} requests"
        )
        unrequested = 0
        for request_id, records in run.records.items():
            kinds = Counter(r["event_type"] for r in records)
            assert sum(kinds[k] for k in OUTCOMES) <= 1, f"request {request_id}: {dict(kinds)}"
            assert kinds["request"] <= 1, f"request {request_id}: {dict(kinds)}"
            if kinds["request"] == 0 and any(r.get("attempt_count") for r in records):
                unrequested += 1  # a model was called: its request record was written first, or lost
        assert unrequested == lost_requests, f"{unrequested} model calls without a request record"
        wanted = expect if isinstance(expect, list) else [expect] * len(sent)
        if not (lost_outcomes or lost_requests):
            for s, want in zip(sent, wanted, strict=True):
                found = [r for r in run.outcomes if r["request_sha256"] == s.sha256] or [
                    r for r in run.outcomes if s.request_id and r["request_id"] == s.request_id
                ]
                if not found or want is None:  # a body the app never read whole has no hash
                    continue
                kinds = [r["event_type"] for r in run.records[found[0]["request_id"]]]
                assert ("request" in kinds) == want, f"{s.label}: records {kinds}, request record expected: {want}"
            for s in sent:
                if s.request_id:
                    assert s.request_id in run.records, f"{s.label}: no record of request {s.request_id}"

    def _expected(self, outcomes: list[dict[str, Any]], bodies: dict[str, bytes]) -> tuple[Amount, dict[str, str]]:
        total, rules = Amount(), {}
        for record in outcomes:
            rule, amount = expected_charge(record, bodies.get(record["request_sha256"] or ""))
            rules[record["event_id"]] = rule
            total = total + amount
        return total, rules

    def _record_figures(self, sent: list[Sent], run: Run, lost_outcomes: int, lost_requests: int) -> None:
        """`lost_*`: records the test's own fault made vanish (black-holed): counted apart, as injected."""
        excess = {w: run.counters[w] - run.expected for w in WINDOWS}
        unrequested = sum(
            1
            for records in run.records.values()
            if not any(r["event_type"] == "request" for r in records) and any(r.get("attempt_count") for r in records)
        )
        self.figures.add(
            requests=len(sent),
            answered_5xx=sum(1 for s in sent if s.status and s.status >= 500),
            left_before_answer=sum(1 for s in sent if s.status is None),
            outcome_records_lost=max(0, len(sent) - len(run.outcomes) - lost_outcomes),
            request_records_lost=max(0, unrequested - lost_requests),
            records_black_holed=lost_outcomes + lost_requests,
            duplicates=run.duplicates,
            dead_lettered=run.dead_lettered,
            dangling_reservations=max(0, len(run.active_holds) - run.rules.count("kept")) + len(run.active_leases),
            kept_reservations=run.rules.count("kept"),
            counter_mismatches=sum(1 for e in excess.values() if e != Amount()),
        )


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def expected_charge(record: dict[str, Any], body: bytes | None) -> tuple[str, Amount]:
    """What one finished request must have left in its tenant's counters, by docs/tenancy.md's rules,
    from its outcome record and the body it sent: (the rule that applied, the amount)."""
    attempts = record.get("attempts") or []
    served = any(a["error"] is None for a in attempts)
    billed = sum(1 for a in attempts if a.get("possibly_billed"))
    cancelled = record["error_type"] == "cancelled"
    usage = None
    if record["input_tokens"] is not None:
        usage = Usage(
            record["input_tokens"] or 0,
            record["output_tokens"] or 0,
            record["cache_read_tokens"] or 0,
            record["cache_write_tokens"] or 0,
        )
    if body is None or not (served or billed or cancelled):
        return "released", Amount()  # no reservation, or nothing to charge: given back
    request = parse_messages_request(body, max_body_bytes=10 * 1024 * 1024)
    entry = CATALOG.lookup(request.model)
    assert entry is not None, request.model
    decision = PolicyDecision(entry=entry, residency="us", body=json.loads(body))

    def priced(u: Usage) -> tuple[Usage, float]:
        return u, pricing.cost(CATALOG, decision, record["provider"], u, record["region"])

    charge, rule = None, None
    if served and record["event_type"] == "response" and usage and (usage.input_tokens or usage.output_tokens):
        charge, rule = priced(usage), "settled"
    elif served and usage is not None:
        # Cut short: exact input from message_start, output at most max_tokens.
        bound = Usage(usage.input_tokens, max(usage.output_tokens, request.max_tokens), *_cache(usage))
        charge, rule = priced(bound), "bound"
    if billed:
        # A reservation's worth per try that may have been billed, one more for a try of unknown usage.
        unknown = charge is None and (served or cancelled)
        floor = sum((charge[0].input_tokens, *_cache(charge[0]))) if charge else 0
        one_usage, one_usd = pricing.ceiling(CATALOG, decision, request, floor)
        times = billed + int(unknown)
        extra = (Usage(one_usage.input_tokens * times, one_usage.output_tokens * times), one_usd * times)
        charge = extra if charge is None else (_add(charge[0], extra[0]), charge[1] + extra[1])
        rule = "+".join(part for part in (rule, f"billed{billed}", "kept" if unknown else None) if part)
    if charge is not None:
        return rule or "settled", pricing.charged_amount(*charge)
    return "kept", pricing.reservation_amount(*pricing.ceiling(CATALOG, decision, request))


def reply_charge(sent: Sent, provider: str = "bedrock", region: str = "us-east-1") -> Amount:
    """What a whole reply the client read must have been charged, from its own usage (for a request whose
    outcome record is gone)."""
    usage = sent.json["usage"]
    record = {
        "attempts": [{"error": None}],
        "event_type": "response",
        "error_type": None,
        "provider": provider,
        "region": region,
        "input_tokens": usage["input_tokens"],
        "output_tokens": usage["output_tokens"],
        "cache_read_tokens": usage.get("cache_read_input_tokens") or 0,
        "cache_write_tokens": usage.get("cache_creation_input_tokens") or 0,
    }
    return expected_charge(record, sent.body)[1]


def _cache(u: Usage) -> tuple[int, int]:
    return u.cache_read_input_tokens, u.cache_creation_input_tokens


def _add(a: Usage, b: Usage) -> Usage:
    return Usage(
        a.input_tokens + b.input_tokens,
        a.output_tokens + b.output_tokens,
        a.cache_read_input_tokens + b.cache_read_input_tokens,
        a.cache_creation_input_tokens + b.cache_creation_input_tokens,
    )
