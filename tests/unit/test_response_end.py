"""The response ends only after settlement and the outcome record (in Lambda the environment may freeze
once it ends), while the client gets its bytes before that work: the whole body, or message_stop."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.unit.runtime_fakes import context_header
from tests.unit.test_pipeline import BODY, World

pytestmark = pytest.mark.anyio


def slow_ports(world: World, log: list[str], delay: float = 0.02) -> None:
    """Settlement, release and the outcome record take a while and say when they are done."""
    quota, audit = world.quota, world.audit
    settle, release, record = quota.settle, quota.release, audit.record_outcome

    async def slow_settle(*args: Any) -> None:
        await asyncio.sleep(delay)
        await settle(*args)
        log.append("settled")

    async def slow_release(*args: Any) -> None:
        await asyncio.sleep(delay)
        await release(*args)
        log.append("released")

    async def slow_record(exchange: Any) -> None:
        await asyncio.sleep(delay)
        await record(exchange)
        log.append(f"outcome:{exchange.outcome}")

    quota.settle, quota.release, audit.record_outcome = slow_settle, slow_release, slow_record  # type: ignore[method-assign]


async def call(world: World, body: dict[str, Any], spec: str, log: list[str], path: str = "/v1/messages") -> None:
    raw = json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"x-amzn-request-context", context_header().encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
        ],
        "client": ("10.0.0.9", 4321),
        "server": ("gw", 80),
    }
    pending = [{"type": "http.request", "body": raw, "more_body": False}]
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        await never.wait()  # the client stays
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            log.append(f"start:{message['status']}")
            return
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        if b"message_stop" in chunk:
            log.append("message_stop")
        elif chunk.startswith(b"{"):
            log.append("whole_body")
        if not more:
            log.append("end")

    await world.app(scope, receive, send)


@pytest.mark.parametrize("spec", ["2.3", "2.4"])
async def test_a_whole_reply_goes_out_first_and_ends_after_settlement_and_record(spec: str) -> None:
    world, log = World(), []
    slow_ports(world, log)
    await call(world, BODY, spec, log)

    assert log[:2] == ["start:200", "whole_body"]
    assert set(log[2:4]) == {"settled", "outcome:response"}
    assert log[4:] == ["end"]
    assert world.app.state.background.pending == 0


@pytest.mark.parametrize("spec", ["2.3", "2.4"])
async def test_a_stream_has_message_stop_first_and_ends_after_settlement_and_record(spec: str) -> None:
    world, log = World(), []
    slow_ports(world, log)
    await call(world, {**BODY, "stream": True}, spec, log)

    assert log[:2] == ["start:200", "message_stop"]
    assert set(log[2:4]) == {"settled", "outcome:response"}
    assert log[4:] == ["end"]


async def test_a_refusal_is_answered_first_and_ends_after_its_denied_record() -> None:
    world, log = World(), []
    slow_ports(world, log)
    world.quota.refuse = True
    await call(world, BODY, "2.4", log)

    assert log == ["start:429", "whole_body", "outcome:denied", "end"]


async def test_a_count_tokens_refusal_is_answered_first_and_ends_after_its_denied_record() -> None:
    world, log = World(), []
    slow_ports(world, log)
    world.tenancy.denied_principals.add("user-1")
    await call(world, BODY, "2.4", log, path="/v1/messages/count_tokens")

    assert log == ["start:403", "whole_body", "outcome:denied", "end"]


async def test_a_failed_upstream_answer_goes_out_after_release_and_record() -> None:
    from tests.unit.runtime_fakes import throttled

    world, log = World(), []
    slow_ports(world, log)
    for up in (world.east, world.west, world.vertex):
        up.script = [throttled()]
    await call(world, BODY, "2.4", log)

    assert log[:2] == ["start:529", "whole_body"]
    assert set(log[2:4]) == {"released", "outcome:error"}
    assert log[4:] == ["end"]


async def test_settlement_and_record_run_concurrently() -> None:
    world, log = World(), []
    slow_ports(world, log, delay=0.2)
    started = asyncio.get_running_loop().time()
    await call(world, BODY, "2.4", log)
    await world.app.state.background.drain()

    assert set(log) >= {"settled", "outcome:response"}
    # One delay, not two in a row.
    assert asyncio.get_running_loop().time() - started < 0.35


async def test_a_failing_log_line_costs_neither_settlement_nor_record(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.domain import request_end

    def broken(exchange: Any) -> None:
        raise ValueError("log formatting bug")

    monkeypatch.setattr(request_end, "log_exchange", broken)
    world = World()
    response = await world.post(BODY)

    assert response.status_code == 200
    assert len(world.quota.settled) == 1 and len(world.audit.outcomes) == 1
