"""Round trips of a warm request, counted on the app's own botocore clients (event hooks): before the
upstream call, one DynamoDB write (the reservation) and no read; after it, only the settlement."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest

pytestmark = pytest.mark.filterwarnings("ignore:The model:DeprecationWarning")
HELLO = [{"role": "user", "content": "Hello"}]
READS = {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}


class Recorder:
    """Every AWS operation the hooked clients send, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._hooked: list[tuple] = []

    def hook(self, client, label: str) -> None:
        def seen(model, **_kwargs) -> None:
            with self._lock:
                self.calls.append((label, model.name))

        event = f"before-call.{client.meta.service_model.endpoint_prefix}"
        client.meta.events.register(event, seen, unique_id=f"rt-{id(self)}-{label}")
        self._hooked.append((client, event, f"rt-{id(self)}-{label}"))

    def unhook(self) -> None:
        for client, event, uid in self._hooked:
            client.meta.events.unregister(event, unique_id=uid)

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()

    def ops(self, label: str | None = None) -> Counter:
        with self._lock:
            return Counter(op for lab, op in self.calls if label is None or lab == label)


@pytest.fixture
def recorder(local_stack):
    app = local_stack.authorizer.app
    rec = Recorder()
    rec.hook(app.state.tenancy.directory.client, "tenancy")
    if app.state.quota.directory is not app.state.tenancy.directory:
        rec.hook(app.state.quota.directory.client, "quota")
    rec.hook(app.state.audit.kinesis, "audit")
    store = getattr(app.state.breakers, "store", None)
    if store is not None:
        rec.hook(store.client, "breakers")
    yield rec
    rec.unhook()


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_warm_request_costs_one_write_and_no_read(
    local_stack, make_tenant, make_user, gateway_client, recorder
):
    tenant_id = make_tenant(limits={"requests_per_minute": 100}, prefix="rt")
    user = make_user(tenant_id, ["basic_user"])
    client = gateway_client(user.token)
    client.messages.create(model="claude-haiku-4-5", max_tokens=16, messages=HELLO)  # cold: loads and caches
    # let the cold request's settlement finish before counting the warm one
    assert wait_for(lambda: recorder.ops("tenancy")["UpdateItem"] >= 3)
    time.sleep(0.2)
    recorder.clear()

    client.messages.create(model="claude-haiku-4-5", max_tokens=16, messages=HELLO)
    assert wait_for(lambda: recorder.ops("tenancy")["UpdateItem"] >= 3)  # settlement: one per window
    mine = recorder.ops("tenancy")
    assert mine["TransactWriteItems"] == 1  # the reservation
    assert sum(mine[op] for op in READS) == 0  # principal and tenant came from the cache
    assert set(mine) == {"TransactWriteItems", "UpdateItem"}
    everything = recorder.ops()
    assert sum(everything[op] for op in READS) <= 1  # DESIGN.md: at most one read on the critical path


def test_a_cold_principal_costs_one_read_and_a_cold_tenant_one_more(
    local_stack, make_tenant, make_user, gateway_client, recorder
):
    tenant_id = make_tenant(prefix="rt")
    first = make_user(tenant_id, ["basic_user"])
    gateway_client(first.token).messages.create(model="claude-haiku-4-5", max_tokens=16, messages=HELLO)
    second = make_user(tenant_id, ["basic_user"], username=f"second-{uuid.uuid4().hex[:8]}@example.com")
    recorder.clear()
    gateway_client(second.token).messages.create(model="claude-haiku-4-5", max_tokens=16, messages=HELLO)
    mine = recorder.ops("tenancy")
    assert mine["GetItem"] == 1 and mine["Query"] == 0  # the tenant is already cached
    assert mine["TransactWriteItems"] == 1
