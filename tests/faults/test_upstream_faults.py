"""Every upstream answer of the failover table (../shared/DESIGN.md section 5, docs/ARCHITECTURE.md "Failover"),
injected with the emulators' fault switches (gatewayctl/local/faults.py), through the real app over HTTP, whole
and streamed, on both Bedrock wires (InvokeModel for claude-haiku-4-5, the Messages-API endpoint for
claude-haiku-5-5) and Vertex: the caller's answer, the tries recorded, and after each run one outcome per
request, counters equal to the settlement rules and no reservation left behind (tests/faults/rig.py)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from gateway.domain import failover

from tests.faults.rig import Rig

FAULT_CLASS = "upstream"
EAST, WEST, VERTEX = "us-east-1", "us-west-2", "us-east5"
WIRES = {"invoke": "claude-haiku-4-5", "messages": "claude-haiku-5-5"}


@dataclass
class Case:
    faults: list[tuple[str, str, dict[str, Any]]]  # (region, kind, fault), Vertex's region for Vertex
    status: int
    rule: str
    tries: list[tuple[str, int | None]]  # (region, status) per try, in order; None for the try that served
    streams: tuple[bool, ...] = (False, True)
    error_event: str | None = None  # a stream that ends with an Anthropic `error` event of this type
    patience: dict[str, float] = field(default_factory=dict)  # the chain's and the relay's timeouts
    breaker: bool | None = True  # us-east-1's breaker counts a failure (None: not checked)
    alarm: bool = False  # the UpstreamMisconfigured metric (the alarm's) is emitted


def error(status: int, error_type: str | None = None) -> dict[str, Any]:
    return {"status": status, "count": 1, **({"error_type": error_type} if error_type else {})}


# A stream error before the first event, as each wire says it: Bedrock's event-stream exception, or an SSE
# `error` event (api_error: a server error, retried; overloaded_error would be a 529, failed over).
STREAM_ERROR = {"invoke": "modelStreamErrorException", "messages": "api_error"}

CASES = {
    # 429 ThrottlingException, ModelNotReadyException: next region.
    "429 throttling: next region": Case(
        [(EAST, "throttle", {"count": 1})], 200, "settled", [(EAST, 429), (WEST, None)]
    ),
    "429 model not ready: next region": Case(
        [(EAST, "error", error(429, "ModelNotReadyException"))], 200, "settled", [(EAST, 429), (WEST, None)]
    ),
    # 500, 503 ServiceUnavailable, 529, connection error, timeout: next region.
    "500: next region": Case([(EAST, "error", error(500))], 200, "settled", [(EAST, 500), (WEST, None)]),
    "503: next region": Case([(EAST, "error", error(503))], 200, "settled", [(EAST, 503), (WEST, None)]),
    "529: next region": Case([(EAST, "error", error(529))], 200, "settled", [(EAST, 529), (WEST, None)]),
    "408 model timeout: next region": Case(
        [(EAST, "error", error(408, "ModelTimeoutException"))], 200, "settled", [(EAST, 408), (WEST, None)]
    ),
    "connection reset: next region": Case(
        [(EAST, "disconnect", {"count": 1})], 200, "settled", [(EAST, 502), (WEST, None)]
    ),
    "timeout: next region, the try possibly billed": Case(
        [(EAST, "timeout", {"hang_seconds": 30, "count": 1})],
        200,
        "settled+billed1",
        [(EAST, 504), (WEST, None)],
        patience={"first_event_timeout_seconds": 0.5},
    ),
    # 424 ModelError, a stream error before any byte was sent: one retry, then next region.
    "424 model error once: retried in the region": Case(
        [(EAST, "error", error(424))], 200, "settled", [(EAST, 424), (EAST, None)], breaker=False
    ),
    "424 model error twice: then the next region": Case(
        [(EAST, "error", {"status": 424, "count": 2})], 200, "settled", [(EAST, 424), (EAST, 424), (WEST, None)]
    ),
    "a stream failing before its first event: retried, the try possibly billed": Case(
        [(EAST, "midstream", {"after_events": 0, "count": 1, "error_type": STREAM_ERROR})],
        200,
        "settled+billed1",
        [(EAST, None), (EAST, None)],  # the failed try's status is the wire's (checked apart)
        streams=(True,),
        breaker=False,  # the retry in the region succeeded
    ),
    # 400 ValidationException, ServiceQuotaExceeded: no failover, no breaker failure; the error passed on.
    "400 validation: passed on, released": Case(
        [(EAST, "error", error(400))], 400, "released", [(EAST, 400)], breaker=False
    ),
    "400 service quota exceeded: passed on, released": Case(
        [(EAST, "error", error(400, "ServiceQuotaExceededException"))], 400, "released", [(EAST, 400)], breaker=False
    ),
    # 403 AccessDenied, 404 ResourceNotFound: not retried, alarmed; the next region serves.
    "403 access denied: misconfiguration, next region": Case(
        [(EAST, "error", error(403))], 200, "settled", [(EAST, 403), (WEST, None)], breaker=False, alarm=True
    ),
    "404 not found: misconfiguration, next region": Case(
        [(EAST, "error", error(404))], 200, "settled", [(EAST, 404), (WEST, None)], breaker=False, alarm=True
    ),
    # An error after bytes reached the client: no failover, an Anthropic `error` event, then close.
    "an error after bytes reached the client: an error event, no failover": Case(
        [(EAST, "midstream", {"after_events": 3, "count": 1})],
        200,
        "bound",
        [(EAST, None)],
        streams=(True,),
        error_event="api_error",
        breaker=None,
    ),
    "a stall after bytes reached the client: an error event": Case(
        [(EAST, "stall", {"after_events": 3, "hang_seconds": 5, "count": 1})],
        200,
        "bound",
        [(EAST, None)],
        streams=(True,),
        error_event="api_error",
        patience={"stream_idle_timeout_seconds": 0.5},
        breaker=None,
    ),
    # Past the Bedrock regions, Vertex; past every upstream, a 529 and nothing charged.
    "both Bedrock regions down: Vertex serves": Case(
        [(EAST, "error", error(503)), (WEST, "error", error(503))],
        200,
        "settled",
        [(EAST, 503), (WEST, 503), (VERTEX, None)],
    ),
    "every upstream down: 529, released": Case(
        [(EAST, "error", {"status": 503}), (WEST, "error", {"status": 503}), (VERTEX, "error", {"status": 503})],
        529,
        "released",
        [(EAST, 503), (WEST, 503), (VERTEX, 503)],
    ),
}
PARAMS = [
    pytest.param(name, wire, stream, id=f"{name} ({wire}, {'stream' if stream else 'whole'})")
    for name, case in CASES.items()
    for wire in WIRES
    for stream in case.streams
]


@pytest.mark.parametrize(("name", "wire", "stream"), PARAMS)
def test_an_upstream_fault_is_answered_recorded_and_settled(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, name: str, wire: str, stream: bool
) -> None:
    case = CASES[name]
    tenant_id, user = rig.caller()
    for region, kind, fault in case.faults:
        fault = {k: v[wire] if isinstance(v, dict) else v for k, v in fault.items()}
        rig.upstream_fault(region, kind, provider="vertex" if region == VERTEX else "bedrock", **fault)
    for setting, seconds in case.patience.items():
        owner = rig.app.state.gateway if setting.startswith("stream") else rig.app.state.chain
        monkeypatch.setattr(owner, setting, seconds)
        # A whole reply's try waits for what max_tokens could need at the slowest pace: make that instant too.
        monkeypatch.setattr(failover, "SLOWEST_TOKENS_PER_SECOND", 1e6)
    metrics = io.StringIO()
    monkeypatch.setattr(rig.app.state.chain.metrics, "stream", metrics)
    body = rig.body(name, stream=stream, model=WIRES[wire])

    sent = rig.stream(user, name, body) if stream else rig.send(user, name, body)

    assert sent.status == case.status, sent
    if case.error_event:
        assert sent.events[-1] == "error", sent.events
    elif stream and case.status == 200:
        assert sent.events[-1] == "message_stop", sent.events
    elif case.status != 200:
        assert sent.json["type"] == "error", sent.json  # the Anthropic error shape
    run = rig.check(tenant_id, [sent], expect_request_records=True)
    [outcome] = run.outcomes
    tries = [(a["region"], a["status"] if a["error"] else None) for a in outcome["attempts"]]
    if "before its first event" in name:
        assert [(r, s is None) for r, s in tries] == [(EAST, False), (EAST, True)], tries
    else:
        assert tries == case.tries, tries
    assert run.rules == [case.rule]
    breakers = rig.app.state.breakers
    known = breakers.keys()
    east = [breakers.get(key).failures for key in known if key.startswith(f"bedrock#{EAST}#")]
    if case.breaker is not None:
        assert (sum(east) > 0) == case.breaker, east  # the caller's 400 and misconfiguration never count
    emitted = {name for line in metrics.getvalue().splitlines() for name in json.loads(line) if name[:1].isupper()}
    assert ("UpstreamMisconfigured" in emitted) == case.alarm, emitted


def test_a_region_that_keeps_failing_is_skipped_once_its_breaker_opens(rig: Rig) -> None:
    # Every try in us-east-1 fails: after the breaker's threshold of failures the chain stops trying it.
    tenant_id, user = rig.caller()
    rig.upstream_fault(EAST, "error", status=503)  # until cleared
    threshold = rig.app.state.settings.breaker_failure_threshold

    sent = [rig.send(user, f"east failing, request {n}") for n in range(threshold + 2)]

    assert [s.status for s in sent] == [200] * len(sent)
    run = rig.check(tenant_id, sent)
    first_regions = [outcome["attempts"][0]["region"] for outcome in run.outcomes]
    assert first_regions == [EAST] * threshold + [WEST] * 2, first_regions
    assert set(run.rules) == {"settled"}
