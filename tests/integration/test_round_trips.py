"""The AWS calls of a request BEFORE the upstream call (issue #4, DESIGN.md "the critical path is
short"), counted on the app's own botocore clients with event hooks, on the local stack.

Every before-call/after-call of the app's DynamoDB clients (tenancy, quota, shared breakers), its
Kinesis client (audit) and its Bedrock clients is recorded in order with a timestamp; the first Bedrock
call is the upstream call, and only what came before it is counted. A warm request: one DynamoDB write
(the reservation, a TransactWriteItems), no read of its own (principal and tenant are cached; the
background breaker refresh may add one, hence "at most one read"), and one Kinesis put (the request
record), which runs concurrently with the reservation, not after it.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import pytest

pytestmark = pytest.mark.filterwarnings("ignore:The model:DeprecationWarning")
MODEL = "claude-haiku-4-5"
HELLO = [{"role": "user", "content": "Hello"}]
READS = {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
DYNAMODB_LABELS = ("tenancy", "quota", "breakers")


@dataclass(frozen=True)
class Call:
    label: str  # tenancy, quota, breakers, audit, bedrock
    operation: str
    phase: str  # "before" or "after" (the call was sent / its answer came back)
    at: float


class Recorder:
    """Every AWS operation the hooked clients send, in order, with when it started and ended."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.delays: dict[str, float] = {}  # operation -> seconds to hold it (to show overlap)
        self._lock = threading.Lock()
        self._hooked: list[tuple] = []
        self._seen_clients: set[int] = set()

    def hook(self, client, label: str) -> None:
        if id(client) in self._seen_clients:  # one client shared by two adapters: count once
            return
        self._seen_clients.add(id(client))
        service = client.meta.service_model.service_id.hyphenize()

        def before(model, **_kwargs) -> None:
            with self._lock:
                self.calls.append(Call(label, model.name, "before", time.monotonic()))

        def after(model, **_kwargs) -> None:
            with self._lock:
                self.calls.append(Call(label, model.name, "after", time.monotonic()))

        for phase, handler in (("before-call", before), ("after-call", after)):
            event, uid = f"{phase}.{service}", f"rt-{id(self)}-{label}-{phase}"
            client.meta.events.register(event, handler, unique_id=uid)
            self._hooked.append((client, event, uid))

    def held(self, get_response):
        """botocore's send, held `delays[operation]` seconds first: the call takes longer without blocking the
        event loop, which the app's AWS calls are awaited on (gateway/adapters/aws_loop.py)."""

        async def held(state, request, model, context):
            await asyncio.sleep(self.delays.get(model.name, 0.0))
            return await get_response(state, request, model, context)

        return held

    def unhook(self) -> None:
        for client, event, uid in self._hooked:
            client.meta.events.unregister(event, unique_id=uid)

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    def before_upstream(self) -> list[Call]:
        """The calls sent before the first upstream (Bedrock) call was sent."""
        calls = self.snapshot()
        first = next((i for i, c in enumerate(calls) if c.label == "bedrock" and c.phase == "before"), None)
        assert first is not None, f"no upstream call was recorded: {calls}"
        return calls[:first]


def sent(calls: list[Call], labels: tuple[str, ...] | str) -> Counter:
    labels = (labels,) if isinstance(labels, str) else labels
    return Counter(c.operation for c in calls if c.phase == "before" and c.label in labels)


@pytest.fixture
def recorder(local_stack, faults, monkeypatch):
    from gateway.adapters import aws_loop

    app = local_stack.app
    rec = Recorder()
    monkeypatch.setattr(aws_loop, "_get_response", rec.held(aws_loop._get_response))
    rec.hook(app.state.tenancy.store.client, "tenancy")
    rec.hook(app.state.quota.store.client, "quota")
    store = getattr(app.state.breakers, "store", None)
    if store is not None:
        rec.hook(store.client, "breakers")
    rec.hook(app.state.audit.kinesis, "audit")
    for upstream in app.state.chain.upstreams["us"]:
        if hasattr(upstream, "client"):  # the Bedrock regions (Vertex is plain HTTP)
            rec.hook(upstream.client, "bedrock")
    yield rec
    rec.unhook()


def settled(recorder: Recorder, timeout: float = 10.0) -> bool:
    """The last request's settlement is done: one TransactWriteItems after its reservation's (it was one
    UpdateItem per window; settlement is one transaction now, with the reservation's state item)."""
    deadline = time.monotonic() + timeout
    while sent(recorder.snapshot(), ("tenancy", "quota"))["TransactWriteItems"] < 2:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    time.sleep(0.2)  # and the outcome record's put
    return True


def test_a_warm_request_costs_one_write_and_no_read_before_the_upstream_call(
    make_tenant, make_user, gateway_client, recorder
):
    tenant_id = make_tenant(limits={"requests_per_minute": 100}, prefix="rt")
    user = make_user(tenant_id, ["basic_user"])
    with gateway_client(user.token) as client:
        client.messages.create(model=MODEL, max_tokens=16, messages=HELLO)  # cold: loads and caches
        assert settled(recorder)
        recorder.clear()
        # Hold the reservation and the audit put for a moment each: run serially they could not overlap.
        recorder.delays = {"TransactWriteItems": 0.2, "PutRecord": 0.2}
        client.messages.create(model=MODEL, max_tokens=16, messages=HELLO)
        recorder.delays = {}

    early = recorder.before_upstream()
    dynamodb = sent(early, DYNAMODB_LABELS)
    assert dynamodb["TransactWriteItems"] == 1  # the reservation
    assert sum(dynamodb[op] for op in WRITES) == 1, dynamodb
    assert sum(sent(early, ("tenancy", "quota"))[op] for op in READS) == 0, early  # principal, tenant cached
    assert sum(dynamodb[op] for op in READS) <= 1, dynamodb  # a background breaker refresh at most
    assert sent(early, "audit") == Counter({"PutRecord": 1})  # the request record, counted apart
    # The put and the reservation overlapped in time: each started before the other had finished.
    put_start, put_end = [c.at for c in early if c.label == "audit"]
    reserve_start, reserve_end = [c.at for c in early if c.operation == "TransactWriteItems"]
    assert put_start < reserve_end and reserve_start < put_end, "the audit put ran serially"
    # After the upstream call: only the settlement and the outcome record.
    assert settled(recorder)
    later = recorder.snapshot()[len(early) :]
    assert sent(later, ("tenancy", "quota")) == Counter({"TransactWriteItems": 1})
    assert sent(later, "audit") == Counter({"PutRecord": 1})


def test_a_cold_principal_costs_one_read_and_a_cold_tenant_one_more(
    make_tenant, make_user, gateway_client, recorder
):
    tenant_id = make_tenant(prefix="rt")
    first = make_user(tenant_id, ["basic_user"])
    with gateway_client(first.token) as client:
        client.messages.create(model=MODEL, max_tokens=16, messages=HELLO)  # the tenant is now cached
    assert settled(recorder)
    second = make_user(tenant_id, ["basic_user"], username=f"second-{uuid.uuid4().hex[:8]}@example.com")
    recorder.clear()
    with gateway_client(second.token) as client:
        client.messages.create(model=MODEL, max_tokens=16, messages=HELLO)

    mine = sent(recorder.before_upstream(), ("tenancy", "quota"))
    assert mine["GetItem"] == 1 and mine["Query"] == 0  # the principal; the tenant came from the cache
    assert mine["TransactWriteItems"] == 1
