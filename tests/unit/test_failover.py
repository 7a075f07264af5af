"""The failover chain on its own: order, breakers, the time budget, the first-event timeout."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from gateway.domain.breaker import Breakers, breaker_key
from gateway.domain.catalog import load_catalog
from gateway.domain.errors import ApiError, NotFoundError, OverloadedError, UpstreamError
from gateway.domain.failover import MISCONFIG, FailoverChain, UpstreamFailure
from gateway.models.exchange import Exchange, RequestMeta
from gateway.observability import Metrics

from tests.unit.runtime_fakes import FakeUpstream, stream_events, throttled, validation_error

pytestmark = pytest.mark.anyio
ENTRY = load_catalog().lookup("claude-haiku-4-5")
OTHER = load_catalog().lookup("claude-sonnet-4-6")


def key(region: str, entry=ENTRY) -> str:
    """Breakers are per provider, region and model."""
    return breaker_key("bedrock", region, entry.bedrock_profiles["us"])
BODY = {"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


class Counter:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def count(self, name: str, value: float = 1, **dimensions: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + int(value)


def make(*upstreams: FakeUpstream, timeout: float = 10.0, first_event: float = 5.0):
    breakers = Breakers(failure_threshold=2, open_seconds=60)
    metrics = Counter()
    chain = FailoverChain(
        {"us": list(upstreams)},
        breakers,
        metrics,
        timeout_seconds=timeout,
        first_event_timeout_seconds=first_event,
    )
    return chain, breakers, metrics


def exchange() -> Exchange:
    return Exchange(meta=RequestMeta(request_id="r"))


async def test_breaker_opens_and_the_region_is_skipped() -> None:
    east, west = (
        FakeUpstream("bedrock", "us-east-1", script=[throttled()] * 5),
        FakeUpstream("bedrock", "us-west-2"),
    )
    chain, breakers, metrics = make(east, west)
    for _ in range(3):
        await chain.invoke(exchange(), ENTRY, "us", BODY, ())

    assert len(east.calls) == 2 and len(west.calls) == 3  # the third request skipped us-east-1
    assert breakers.status(key("us-east-1")) == "open"
    assert metrics.counts["Failovers"] == 2 and metrics.counts["UpstreamErrors"] == 2


async def test_one_models_throttling_does_not_close_the_region_for_another_model() -> None:
    east = FakeUpstream("bedrock", "us-east-1", script=[throttled(), throttled()])
    west = FakeUpstream("bedrock", "us-west-2")
    chain, breakers, _ = make(east, west)
    for _ in range(2):
        await chain.invoke(exchange(), ENTRY, "us", BODY, ())
    assert breakers.status(key("us-east-1")) == "open"

    ex = exchange()
    await chain.invoke(ex, OTHER, "us", BODY, ())
    assert ex.served_by.region == "us-east-1"  # the other model still goes to us-east-1 first
    assert breakers.status(key("us-east-1", OTHER)) == "closed"


async def test_every_breaker_open_still_tries_in_order() -> None:
    east, west = FakeUpstream("bedrock", "us-east-1"), FakeUpstream("bedrock", "us-west-2")
    chain, breakers, _ = make(east, west)
    for name in (key("us-east-1"), key("us-west-2")):
        breakers.record_failure(name)
        breakers.record_failure(name)
    ex = exchange()
    await chain.invoke(ex, ENTRY, "us", BODY, ())

    assert ex.served_by.region == "us-east-1"
    assert breakers.status(key("us-east-1")) == "closed"  # a success closes it


async def test_client_errors_stop_the_chain_and_do_not_count_on_the_breaker() -> None:
    east, west = (
        FakeUpstream("bedrock", "us-east-1", script=[validation_error()]),
        FakeUpstream("bedrock", "w"),
    )
    chain, breakers, _ = make(east, west)
    with pytest.raises(UpstreamError) as caught:
        await chain.invoke(exchange(), ENTRY, "us", BODY, ())
    assert caught.value.status == 400 and not west.calls
    assert breakers.get(key("us-east-1")).failures == 0


async def test_misconfiguration_moves_on_raises_an_alarm_and_spares_the_breaker() -> None:
    denied = UpstreamFailure(MISCONFIG, 403, "permission_error", "no access", code="AccessDeniedException")
    east, west = FakeUpstream("bedrock", "us-east-1", script=[denied]), FakeUpstream("bedrock", "us-west-2")
    chain, breakers, metrics = make(east, west)
    ex = exchange()
    await chain.invoke(ex, ENTRY, "us", BODY, ())

    assert ex.served_by.region == "us-west-2" and len(east.calls) == 1
    assert metrics.counts["UpstreamMisconfigured"] == 1
    assert breakers.get(key("us-east-1")).failures == 0


async def test_only_misconfigured_upstreams_is_a_500_not_the_upstreams_403() -> None:
    denied = UpstreamFailure(MISCONFIG, 403, "permission_error", "no access", code="AccessDeniedException")
    chain, _, _ = make(FakeUpstream("bedrock", "us-east-1", script=[denied]))
    with pytest.raises(ApiError) as caught:
        await chain.invoke(exchange(), ENTRY, "us", BODY, ())
    assert caught.value.status == 500


async def test_no_upstream_for_the_residency_is_404() -> None:
    chain, _, _ = make(FakeUpstream("bedrock", "us-east-1"))
    with pytest.raises(NotFoundError):
        await chain.invoke(exchange(), ENTRY, "eu", BODY, ())


class SlowStream(FakeUpstream):
    async def stream(self, model_id, body, *, beta, timeout):
        self.calls.append({"model_id": model_id})
        await asyncio.sleep(10)
        yield stream_events()[0]


async def test_a_stream_without_a_first_event_in_time_fails_over() -> None:
    stuck, west = SlowStream("bedrock", "us-east-1"), FakeUpstream("bedrock", "us-west-2")
    chain, _, _ = make(stuck, west, first_event=0.05)
    ex = exchange()
    opened = await chain.open_stream(ex, ENTRY, "us", BODY, ())

    assert opened.upstream is west and opened.first[0] == "message_start"
    assert [a.error for a in ex.attempts] == ["Timeout", None]
    assert [a.possibly_billed for a in ex.attempts] == [True, False]


async def test_the_time_budget_is_shared_by_all_attempts() -> None:
    stuck, west = SlowStream("bedrock", "us-east-1"), FakeUpstream("bedrock", "us-west-2")
    chain, _, _ = make(stuck, west, timeout=0.05, first_event=5.0)
    with pytest.raises(OverloadedError):
        await chain.open_stream(exchange(), ENTRY, "us", BODY, ())
    assert not west.calls


def test_emf_line_shape() -> None:
    out = io.StringIO()
    Metrics("prod", stream=out).count("Failovers")
    line = json.loads(out.getvalue())

    directive = line["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "ClaudeGateway" and directive["Dimensions"] == [["Environment"]]
    assert directive["Metrics"] == [{"Name": "Failovers", "Unit": "Count"}]
    assert line["Environment"] == "prod" and line["Failovers"] == 1


class SlowInvoke(FakeUpstream):
    """Never answers; like the real adapters, it gives up when the chain's timeout for the try is over."""

    async def invoke(self, model_id, body, *, beta, timeout):
        self.calls.append({"timeout": timeout})
        await asyncio.sleep(timeout)
        raise UpstreamFailure("next", 504, "api_error", "timed out", code="Timeout")


async def test_a_stuck_non_streaming_try_gives_way_before_the_budget_is_spent() -> None:
    stuck, west = SlowInvoke("bedrock", "us-east-1"), FakeUpstream("bedrock", "us-west-2")
    chain, _, _ = make(stuck, west, timeout=600.0, first_event=0.05)
    ex = exchange()
    body = {**BODY, "max_tokens": 1}  # patience: 0.05 s + 1 token at the slowest pace (0.1 s)
    upstream, _ = await asyncio.wait_for(chain.invoke(ex, ENTRY, "us", body, ()), 5)

    assert upstream is west
    assert stuck.calls[0]["timeout"] == pytest.approx(0.15)
    assert west.calls  # the last candidate is given the rest of the budget


def test_emf_with_dimensions_keeps_the_environment_only_series() -> None:
    out = io.StringIO()
    Metrics("prod", stream=out).count("UpstreamErrors", provider="bedrock", region="us-east-1")
    line = json.loads(out.getvalue())

    dimensions = line["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert dimensions == [["Environment"], ["Environment", "provider", "region"]]
    assert (line["provider"], line["region"], line["UpstreamErrors"]) == ("bedrock", "us-east-1", 1)


async def test_a_flag_a_wire_refuses_for_one_model_is_dropped_for_that_model_only() -> None:
    from gateway.domain import betas

    flag = "thinking-binding-controls-2026-08-01"
    assert betas.split("bedrock-invoke", (flag,), "claude-sonnet-4-5") == ((), (flag,))
    assert betas.split("bedrock-invoke", (flag,), "claude-sonnet-4-6") == ((flag,), ())
