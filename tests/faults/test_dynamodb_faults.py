"""DynamoDB failing under the gateway, on the wire (gatewayctl/local/fault_proxy.py): answers lost after the
write committed (reservation, settlement, release), throttling, timeouts, errors. Each quota write must take
effect exactly once (docs/tenancy.md, "Exactly once"). After each run: one outcome per request, counters equal
to the settlement rules, no reservation left behind (tests/faults/rig.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.faults.rig import Rig

FAULT_CLASS = "DynamoDB"
WRITES = ("TransactWriteItems", "UpdateItem", "PutItem")


def usage_writes(rig: Rig, tenant_id: str, *, after: int = 0) -> Callable[[dict[str, Any]], bool]:
    """Matches the tenant's writes to the usage table, after the first `after` of them (the reservation
    is the first; settlement or release the next)."""
    table, seen = rig.stack.outputs["UsageTableName"], [0]

    def match(body: dict[str, Any]) -> bool:
        text = json.dumps(body)
        if table not in text or tenant_id not in text:
            return False
        seen[0] += 1
        return seen[0] > after

    return match


def reservation_tokens(rig: Rig, tenant_id: str) -> list[str]:
    """The ClientRequestTokens of the tenant's reservations as sent (a reservation's transaction creates its
    hold's state item with a Put; settlement and release do not), in order, each once."""
    assert rig.proxy is not None
    tokens: list[str] = []
    for seen in rig.proxy.log:
        body = seen.body
        if seen.operation != "TransactWriteItems" or tenant_id not in json.dumps(body):
            continue
        if any("Put" in item for item in body.get("TransactItems", [])) and body["ClientRequestToken"] not in tokens:
            tokens.append(body["ClientRequestToken"])
    return tokens


# -- one write faulted, and taking effect once ---------------------------------------------------------


@dataclass
class Case:
    kind: str  # the proxy's fault (gatewayctl/local/fault_proxy.py)
    count: int  # how many sends of the write it hits
    write: str  # "reservation"; "settlement" or "release": the tenant's next write to the usage table
    tokens: int | None = None  # ClientRequestTokens the reservation must have used (attempts), if it says


WRITE_CASES = {
    "reservation throttled twice: botocore's retry": Case("throttle", 2, "reservation", tokens=1),
    # Three throttled sends are all of botocore's sends of one attempt. Throttling is a definite failure
    # (nothing applied), so the gateway makes a new attempt, with a new token, within its contention budget.
    "reservation throttled three times: a new attempt": Case("throttle", 3, "reservation", tokens=2),
    "reservation held past the read timeout, not applied": Case("timeout", 1, "reservation", tokens=1),
    # Committed, and the answer lost: botocore sends it again with the same token, which applies once.
    "reservation answer lost after commit": Case("lose", 1, "reservation", tokens=1),
    # All three of botocore's sends commit and lose their answer; the gateway's own resend (same token) gets one.
    "reservation answer lost three times": Case("lose", 3, "reservation", tokens=1),
    # The case that double-charged on moto before: the write commits, its answer outlives botocore's 3 s.
    "reservation answer after the read timeout": Case("late", 1, "reservation", tokens=1),
    "settlement throttled once": Case("throttle", 1, "settlement"),
    # A short burst, not an outage: the reservation must not be left standing for it.
    "settlement throttled three times: a new attempt": Case("throttle", 3, "settlement"),
    "settlement held past the read timeout, not applied": Case("timeout", 1, "settlement"),
    "settlement answer lost after commit": Case("lose", 1, "settlement"),
    # The case: a plain ADD sent again left 20 tokens for a request that used 110.
    "settlement answer after the read timeout": Case("late", 1, "settlement"),
    "release throttled three times: a new attempt": Case("throttle", 3, "release"),
    # The case: a doubled release left a counter at -200 tokens and -1 request.
    "release answer lost after commit": Case("lose", 1, "release"),
    "release answer after the read timeout": Case("late", 1, "release"),
}


@pytest.mark.parametrize("name", WRITE_CASES)
def test_a_faulted_quota_write_takes_effect_once(rig: Rig, name: str) -> None:
    case = WRITE_CASES[name]
    tenant_id, user = rig.caller()
    if case.write == "release":
        rig.upstream_fault("us-east-1", "error", status=400, count=1)  # the caller's fault: released
    after = 0 if case.write == "reservation" else 1
    rig.aws_fault("DynamoDB", WRITES, case.kind, count=case.count, match=usage_writes(rig, tenant_id, after=after))

    sent = rig.send(user, name)

    assert sent.status == (400 if case.write == "release" else 200), sent
    assert rig.check(tenant_id, [sent]).rules == ["released" if case.write == "release" else "settled"]
    if case.tokens is not None:
        assert len(reservation_tokens(rig, tenant_id)) == case.tokens


# -- a hot tenant: leases and pools under the same faults ------------------------------------------------


def lease_writes(tenant_id: str, write: str, *, after: int = 0) -> Callable[[dict[str, Any]], bool]:
    """Matches one kind of a hot tenant's lease writes, after the first `after` of that kind: `refill` (a pool
    takes budget from the window items), `grant` (a lease from a pool), `commit` (the lease's own state item),
    `give-back` (the lease returned to its pool)."""
    seen = [0]

    def kinds(body: dict[str, Any]) -> set[str]:
        found = set()
        for item in body.get("TransactItems") or [{"UpdateItem": body}]:
            ((op, write_),) = item.items()
            sk = (write_.get("Key") or write_.get("Item") or {}).get("sk", {}).get("S", "")
            found.add(f"{op}:{sk.split('#', 1)[0]}")
        return found

    def match(body: dict[str, Any]) -> bool:
        if tenant_id not in json.dumps(body):
            return False
        found = kinds(body)
        wanted = {
            "refill": "Put:hold" in found and any(k.startswith("Update:") for k in found),
            "grant": "Put:lease" in found,
            "commit": "UpdateItem:lease" in found,
            "give-back": "Delete:lease" in found,
        }[write]
        if not wanted:
            return False
        seen[0] += 1
        return seen[0] > after

    return match


LEASE_CASES = {
    # A new hot tenant's first request: a grant from its (empty) pool is refused, the pool refills from the
    # window items, the grant is made; each request then commits the lease; the check gives it back.
    "pool refill answer lost after commit": ("TransactWriteItems", "lose", "refill", 0),
    "lease grant answer lost after commit": ("TransactWriteItems", "lose", "grant", 1),
    "lease grant answer after the read timeout": ("TransactWriteItems", "late", "grant", 1),
    "lease commit answer lost after commit": ("UpdateItem", "lose", "commit", 0),
    "lease commit answer after the read timeout": ("UpdateItem", "late", "commit", 0),
    "lease commit throttled past botocore's retries": ("UpdateItem", "throttle", "commit", 0),
    "lease give-back answer lost after commit": ("TransactWriteItems", "lose", "give-back", 0),
}


@pytest.mark.parametrize("name", LEASE_CASES)
def test_a_hot_tenants_faulted_lease_write_takes_effect_once(rig: Rig, name: str) -> None:
    operation, kind, write, after = LEASE_CASES[name]
    tenant_id, user = rig.caller()
    rig.mark_hot(tenant_id)  # it leases from its first request
    count = 3 if kind == "throttle" else 1
    rig.aws_fault("DynamoDB", operation, kind, count=count, match=lease_writes(tenant_id, write, after=after))
    before = rig.app.state.quota.counts["leases"]

    sent = [rig.send(user, f"{name}, request {n}") for n in range(3)]

    assert [s.status for s in sent] == [200] * 3, sent
    assert rig.check(tenant_id, sent).rules == ["settled"] * 3  # leases given back: counters exact
    assert rig.app.state.quota.counts["leases"] > before  # the requests drew from a lease
    assert rig.proxy is not None and any(seen.fault == kind for seen in rig.proxy.log), "the fault never hit"


# -- a write that cannot be made ---------------------------------------------------------------------


UNMADE = {
    # Contention, not an outage: a 429 the caller may retry in a second, never a 5xx; audited as an error.
    "reservation throttled past the contention budget: 429": ("throttle", 429, "rate_limit_error"),
    # Every answer lost, the reservation's and the give-back's: both commit. The gateway cannot know it holds the
    # reservation, so it calls no model (503), and gives the hold back in case it happened.
    "reservation outcome unknown: 503, given back": ("lose", 503, "api_error"),
}


@pytest.mark.parametrize("name", UNMADE)
def test_a_reservation_that_cannot_be_made_calls_no_model_and_charges_nothing(rig: Rig, name: str) -> None:
    kind, status, error_type = UNMADE[name]
    tenant_id, user = rig.caller()
    rig.aws_fault("DynamoDB", WRITES, kind, count=None, match=usage_writes(rig, tenant_id))

    sent = rig.send(user, name)

    assert (sent.status, sent.json["error"]["type"]) == (status, error_type), sent
    assert rig.upstream_calls() == 0
    # The request record went out beside the reservation; the outcome says why nothing was called.
    run = rig.check(tenant_id, [sent], expect_request_records=True)
    assert run.rules == ["released"]
    assert [o["event_type"] for o in run.outcomes] == ["error"]  # not a refusal (docs/tenancy.md)


def test_the_principal_lookup_failing_is_a_503_and_nothing_is_called(rig: Rig) -> None:
    tenant_id, user = rig.caller()  # not looked up yet: the gateway's first call for it is the lookup
    principal = f"PRINCIPAL#{user.sub}"
    rig.aws_fault("DynamoDB", "GetItem", "error", count=3, match=lambda body: principal in json.dumps(body))

    sent = rig.send(user, "principal lookup failing")

    assert sent.status == 503
    assert rig.upstream_calls() == 0
    run = rig.check(tenant_id, [sent], expect_request_records=False)
    [outcome] = run.outcomes
    assert outcome["tenant_id"] == "_unknown" and run.rules == ["released"]
