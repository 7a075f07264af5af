"""A served request never leaves the quota counters below its true usage, even when the estimate was low
and the stream was cut short before the final usage came."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from gateway.domain.failover import UpstreamFailure
from gateway.models.exchange import CallerIdentity, RequestMeta

from tests.unit.runtime_fakes import stream_events
from tests.unit.test_pipeline import BODY, World

pytestmark = pytest.mark.anyio


def pdf_body(decoded_bytes: int) -> dict:
    pdf = {
        "type": "document",
        "source": {
            "type": "base64",
            "media_type": "application/pdf",
            "data": base64.b64encode(b"x" * decoded_bytes).decode(),
        },
    }
    return {**BODY, "stream": True, "messages": [{"role": "user", "content": [pdf, {"type": "text", "text": "sum"}]}]}


async def test_a_stream_cut_short_settles_to_the_input_it_reported_plus_max_tokens() -> None:
    world = World(max_body_bytes=8 << 20)
    # message_start reports far more input than the text's estimate: a PDF, which only the context bounds.
    world.east.events = stream_events(input_tokens=150_000)
    world.east.fail_after = (2, UpstreamFailure("next", 500, "api_error", "boom"))
    response = await world.post(pdf_body(40_000))

    assert "event: error" in response.text
    [outcome] = world.audit.outcomes
    assert (outcome.outcome, outcome.usage.input_tokens) == ("error", 150_000)
    [(reservation, usage, cost)] = world.quota.settled
    # The reservation bounds a PDF by the model's context window, so it covers what was used.
    assert reservation.tokens >= 150_000 + BODY["max_tokens"]
    assert (usage.input_tokens, usage.output_tokens) == (150_000, BODY["max_tokens"])
    # sonnet: 3 $/M input, 15 $/M output, 10 % geographic uplift
    assert cost == pytest.approx((150_000 * 3 + 64 * 15) / 1e6 * 1.1)


async def test_a_stream_cut_short_with_cache_tokens_keeps_them_in_the_bound() -> None:
    world = World()
    events = stream_events(input_tokens=20)
    start = json.loads(events[0][1])
    start["message"]["usage"].update(cache_read_input_tokens=5000, cache_creation_input_tokens=700)
    events[0] = ("message_start", json.dumps(start).encode())
    world.east.events = events
    world.east.fail_after = (3, UpstreamFailure("next", 500, "api_error", "boom"))
    await world.post({**BODY, "stream": True})

    [(_, usage, _)] = world.quota.settled
    assert (usage.input_tokens, usage.output_tokens) == (20, 64)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (5000, 700)


async def test_a_stream_cut_short_without_a_readable_input_count_keeps_the_whole_reservation() -> None:
    world = World()
    events = stream_events()
    start = json.loads(events[0][1])
    start["message"]["usage"] = {"output_tokens": 1}  # no input count
    events[0] = ("message_start", json.dumps(start).encode())
    world.east.events = events
    world.east.fail_after = (2, UpstreamFailure("next", 500, "api_error", "boom"))
    await world.post({**BODY, "stream": True})

    assert world.quota.kept == world.quota.reserved and world.quota.reserved
    assert not world.quota.settled and not world.quota.released


# -- tries that may have been billed without answering -----------------------------------------------


def one_reservation(world: World) -> tuple[int, int]:
    request_tokens = world.quota.reserved[0].tokens - BODY["max_tokens"]
    return request_tokens, BODY["max_tokens"]


async def test_a_timed_out_try_before_the_serving_one_adds_a_reservation_to_the_settlement() -> None:
    from gateway.domain.failover import timed_out

    world = World()
    world.east.script = [timed_out("Bedrock did not answer in time")]
    response = await world.post(BODY)

    assert response.status_code == 200
    est_input, max_tokens = one_reservation(world)
    [(_, usage, cost)] = world.quota.settled
    # served: 12 in, 5 out; plus the timed-out try: its input (at least the served one) and max_tokens
    assert (usage.input_tokens, usage.output_tokens) == (12 + max(est_input, 12), 5 + max_tokens)
    assert cost > (12 * 3 + 5 * 15) / 1e6 * 1.1
    [outcome] = world.audit.outcomes
    assert [(a.error, a.possibly_billed) for a in outcome.attempts] == [("Timeout", True), (None, False)]


async def test_nothing_served_after_timeouts_is_not_released() -> None:
    from gateway.domain.failover import timed_out

    world = World()
    for up in (world.east, world.west, world.vertex):
        up.script = [timed_out("no answer")]
    response = await world.post(BODY)

    assert response.status_code >= 500
    assert not world.quota.released
    est_input, max_tokens = one_reservation(world)
    [(_, usage, _)] = world.quota.settled
    assert (usage.input_tokens, usage.output_tokens) == (3 * est_input, 3 * max_tokens)


async def test_a_stream_failing_after_it_was_accepted_counts_as_possibly_billed() -> None:
    world = World()
    failure = UpstreamFailure("retry", 424, "api_error", "stream broke", code="ModelStreamErrorException")
    failure.possibly_billed = True
    world.east.events, world.east.fail_after = stream_events(), (0, failure)
    world.east.script = ["ok", "ok"]
    await world.post({**BODY, "stream": True})

    # east failed twice (one retry) after accepting; west served.
    [outcome] = world.audit.outcomes
    assert [a.possibly_billed for a in outcome.attempts] == [True, True, False]
    est_input, max_tokens = one_reservation(world)
    [(_, usage, _)] = world.quota.settled
    assert usage.output_tokens == 5 + 2 * max_tokens


# -- a request cancelled before its reply ------------------------------------------------------------


async def cancelled_while(world: World, stream: bool, hanging=None) -> None:
    """Cancel the request while `hanging` (east by default) is running its try."""

    hung = asyncio.Event()
    hanging = hanging or world.east

    async def hang(*args, **kwargs):
        hung.set()
        await asyncio.sleep(30)

    hanging.invoke = hang  # type: ignore[method-assign]
    hanging.stream = lambda *a, **k: _hanging_stream(hung)  # type: ignore[method-assign]
    task = asyncio.create_task(messages(world, "cancelled", {**BODY, "stream": stream}))
    await asyncio.wait_for(hung.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await world.app.state.background.drain()


async def _hanging_stream(hung: asyncio.Event):
    hung.set()
    await asyncio.sleep(30)
    yield ("message_start", b"{}")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_request_cancelled_in_the_chain_is_recorded_once_and_keeps_its_reservation(stream: bool) -> None:
    world = World()
    await cancelled_while(world, stream)

    [outcome] = world.audit.outcomes
    assert (outcome.outcome, outcome.error_type) == ("error", "cancelled")
    # An upstream may be running it: neither released nor settled down.
    assert world.quota.kept == world.quota.reserved and world.quota.reserved


async def test_a_possibly_billed_try_is_at_least_the_served_input_with_its_cache_tokens() -> None:
    from gateway.domain.failover import timed_out

    from tests.unit.runtime_fakes import message_json

    world = World()
    world.east.script = [timed_out("Bedrock did not answer in time")]
    served = message_json()
    served["usage"].update(cache_read_input_tokens=50_000, cache_creation_input_tokens=7_000)
    for up in (world.east, world.west, world.vertex):
        up.message = served
    await world.post(BODY)

    est_input, max_tokens = one_reservation(world)
    assert est_input < 57_012
    [(_, usage, _)] = world.quota.settled
    # the timed-out try in another region paid the whole prompt as input, cache included
    assert usage.input_tokens == 12 + 57_012
    assert usage.output_tokens == 5 + max_tokens


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_request_cancelled_in_the_chain_after_a_possibly_billed_try_settles_one_more(stream: bool) -> None:
    from gateway.domain.failover import timed_out

    world = World()
    world.east.script = [timed_out("no answer"), timed_out("no answer")]
    world.west.script = [timed_out("no answer"), timed_out("no answer")]
    await cancelled_while(world, stream, hanging=world.vertex)

    [outcome] = world.audit.outcomes
    billed = sum(1 for a in outcome.attempts if a.possibly_billed)
    assert billed >= 2
    est_input, max_tokens = one_reservation(world)
    [(_, usage, _)] = world.quota.settled
    assert (usage.input_tokens, usage.output_tokens) == ((billed + 1) * est_input, (billed + 1) * max_tokens)
    assert not world.quota.released


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "web_search_20250305", "name": "web_search"},
        {"type": "code_execution_20250522", "name": "code_execution"},
    ],
)
async def test_a_stream_cut_short_with_server_tools_keeps_the_whole_reservation(tool: dict) -> None:
    world = World()
    world.east.events = stream_events(input_tokens=20)
    world.east.fail_after = (3, UpstreamFailure("next", 500, "api_error", "boom"))
    await world.post({**BODY, "stream": True, "tools": [tool]})

    # message_start's input is not final: search results / execution output come in as more input
    assert world.quota.kept == world.quota.reserved and world.quota.reserved
    assert not world.quota.settled and not world.quota.released


async def test_a_stream_cut_short_with_only_custom_tools_still_settles_to_the_bound() -> None:
    world = World()
    world.east.events = stream_events(input_tokens=20)
    world.east.fail_after = (3, UpstreamFailure("next", 500, "api_error", "boom"))
    custom = {"name": "lookup", "input_schema": {"type": "object"}}
    await world.post({**BODY, "stream": True, "tools": [custom, {**custom, "name": "other", "type": "custom"}]})

    [(_, usage, _)] = world.quota.settled
    assert usage.input_tokens == 20


async def test_a_request_cancelled_while_reserving_releases_what_was_reserved() -> None:

    world = World()
    quota, audit = world.quota, world.audit
    reserve, record_request = quota.reserve, audit.record_request
    in_flight = asyncio.Event()

    async def slow_reserve(*args):
        in_flight.set()
        await asyncio.sleep(0.05)  # the transaction commits after the cancellation
        return await reserve(*args)

    async def slow_record(exchange):
        await asyncio.sleep(0.05)
        await record_request(exchange)

    quota.reserve, audit.record_request = slow_reserve, slow_record  # type: ignore[method-assign]
    task = asyncio.create_task(messages(world, "cancelled-reserving", BODY))
    await asyncio.wait_for(in_flight.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await world.app.state.background.drain()

    assert world.quota.reserved and world.quota.released == world.quota.reserved
    assert not world.quota.settled and world.upstream_calls == 0
    [outcome] = world.audit.outcomes
    assert (outcome.outcome, outcome.error_type) == ("error", "cancelled")


async def messages(world: World, request_id: str, body: dict) -> object:
    """The messages step as the route runs it, for a signed-in caller."""
    gateway = world.app.state.gateway
    end = gateway.begin(RequestMeta(request_id=request_id), calls_model=True)
    end.exchange.identity = CallerIdentity("user-1", "user", "app", frozenset(), {})
    await gateway.resolve(end)
    return await gateway.messages(end, json.dumps(body).encode(), ())
