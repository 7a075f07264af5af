"""Clients that leave: before the body, during it, after it while the upstream works, before a stream's
first event, mid-stream, and once the stream is done. Each leaves one outcome record, and the counters
what the settlement rules give (tests/faults/rig.py)."""

from __future__ import annotations

import pytest

from tests.faults.rig import Rig, Sent

FAULT_CLASS = "client"

EAST = "us-east-1"


def upstream_has_it(rig: Rig) -> bool:
    return rig.stack.request_counts().get(EAST, {}).get("total", 0) >= 1


@pytest.mark.parametrize("sent_bytes", ["none", "half"])
def test_a_client_gone_before_the_body_is_complete(rig: Rig, sent_bytes: str) -> None:
    tenant_id, user = rig.caller()
    sent = rig.leave_during_body(user, "gone while sending", fraction=0.0 if sent_bytes == "none" else 0.5)

    run = rig.check(tenant_id, [sent], expect_request_records=False)

    [outcome] = run.outcomes
    # Audited as the client's cancellation, under its tenant: not a gateway 500 under `_unknown`.
    assert (outcome["status"], outcome["error_type"]) == (499, "client_disconnected")
    assert outcome["tenant_id"] == tenant_id
    assert run.rules == ["released"]  # nothing was reserved
    assert rig.upstream_calls() == 0


def test_a_client_gone_after_the_body_while_the_upstream_answers(rig: Rig) -> None:
    # The upstream takes its time, so the client is gone before the reply is ready.
    tenant_id, user = rig.caller()
    rig.upstream_fault(EAST, "latency", latency_ms=500, count=1)
    sent = rig.leave_after_body(user, "gone while the upstream works", until=lambda: upstream_has_it(rig))

    run = rig.check(tenant_id, [sent])

    [outcome] = run.outcomes
    # A whole reply is made and accounted for even though no one reads it.
    assert outcome["event_type"] == "response" and run.rules == ["settled"]


def test_a_client_gone_before_a_streams_first_event(rig: Rig) -> None:
    # The first event comes late, and the stream then stalls: the client is gone before any byte, and the
    # stream cannot finish before the gateway notices (it notices once the response starts).
    tenant_id, user = rig.caller()
    rig.upstream_fault(EAST, "latency", latency_ms=500, count=1)
    rig.upstream_fault(EAST, "stall", after_events=2, hang_seconds=10, count=1)
    body = rig.body("gone before the first event", stream=True)
    sent = rig.leave_after_body(user, "gone before the first event", until=lambda: upstream_has_it(rig), body=body)

    run = rig.check(tenant_id, [sent])

    [outcome] = run.outcomes
    assert (outcome["event_type"], outcome["error_type"]) == ("error", "client_disconnected")
    assert run.rules == ["bound"]  # the upstream did start: its first event tells the input billed


def test_a_client_gone_mid_stream(rig: Rig) -> None:
    tenant_id, user = rig.caller()
    rig.upstream_fault(EAST, "stall", after_events=2, hang_seconds=10, count=1)

    sent = rig.stream(user, "gone mid-stream", leave_after=1)

    run = rig.check(tenant_id, [sent])
    [outcome] = run.outcomes
    assert (outcome["event_type"], outcome["error_type"]) == ("error", "client_disconnected")
    assert run.rules == ["bound"]  # exact input from message_start, output at max_tokens


def test_a_client_gone_once_the_stream_is_done(rig: Rig) -> None:
    tenant_id, user = rig.caller()

    sent: Sent = rig.stream(user, "gone after message_stop", leave_after=None)

    run = rig.check(tenant_id, [sent])
    assert sent.events[-1] == "message_stop"
    assert run.rules == ["settled"]
