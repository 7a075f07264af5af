# ruff: noqa: F811  (pytest fixtures imported from the harness are redefined as test arguments)
"""Failover over real loopback HTTP (DESIGN.md section 5): Bedrock regions in order, then Vertex."""

from __future__ import annotations

import time

import anthropic
import pytest

from tests.integration.runtime_harness import VERTEX_REGION, client, runtime_stack, stack  # noqa: F401

pytestmark = pytest.mark.integration
MODEL = "claude-haiku-4-5"
HELLO = [{"role": "user", "content": "hello"}]


def test_region_1_throttling_is_served_by_region_2(client, stack) -> None:
    stack.fault("us-east-1", kind="throttle", count=1)
    message = client.messages.create(model=MODEL, max_tokens=32, messages=HELLO)

    assert message.content[0].text
    assert (stack.calls("us-east-1"), stack.calls("us-west-2")) == (1, 1)
    [outcome] = stack.outcomes()
    assert [(a.provider, a.region, a.error, a.status) for a in outcome.attempts] == [
        ("bedrock", "us-east-1", "ThrottlingException", 429),
        ("bedrock", "us-west-2", None, None),
    ]
    assert outcome.served_by.region == "us-west-2"


def test_every_bedrock_region_down_is_served_by_vertex(client, stack) -> None:
    stack.fault("us-east-1", kind="error", status=503)
    stack.fault("us-west-2", kind="error", status=500)
    message = client.messages.create(model=MODEL, max_tokens=32, messages=HELLO)

    assert message.content[0].text and message.usage.output_tokens > 0
    [outcome] = stack.outcomes()
    assert outcome.served_by.provider == "vertex" and outcome.served_by.region == VERTEX_REGION
    assert outcome.served_by.model_id == "claude-haiku-4-5@20251001"
    sent = stack.vertex.board.snapshot()["recent"][-1]
    assert sent["body"]["anthropic_version"] == "vertex-2023-10-16" and "model" not in sent["body"]
    assert stack.vertex.exchanges >= 1  # a WIF token came from the (emulated) Google STS


def test_every_bedrock_region_down_streams_from_vertex(client, stack) -> None:
    stack.fault("us-east-1", kind="error", status=503)
    stack.fault("us-west-2", kind="timeout", hang_seconds=5)
    stack.app.state.chain.first_event_timeout_seconds = 1.0
    try:
        with client.messages.stream(model=MODEL, max_tokens=32, messages=HELLO) as stream:
            final = stream.get_final_message()
    finally:
        stack.app.state.chain.first_event_timeout_seconds = 30.0

    assert final.content[0].text and final.usage.output_tokens > 0
    [outcome] = stack.outcomes()
    assert [a.error for a in outcome.attempts] == ["ServiceUnavailableException", "Timeout", None]
    assert outcome.served_by.provider == "vertex"


def test_upstream_400_is_not_retried(client, stack) -> None:
    stack.fault("us-east-1", kind="error", status=400)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=MODEL, max_tokens=32, messages=HELLO)

    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert (stack.calls("us-east-1"), stack.calls("us-west-2"), stack.calls(VERTEX_REGION)) == (1, 0, 0)
    [outcome] = stack.outcomes()
    assert outcome.outcome == "error" and outcome.status == 400


def test_open_breaker_skips_the_region(client, stack) -> None:
    stack.fault("us-east-1", kind="throttle")  # until cleared
    for _ in range(3):  # BREAKER_FAILURE_THRESHOLD
        client.messages.create(model=MODEL, max_tokens=16, messages=HELLO)
    assert stack.app.state.breakers.status("bedrock#us-east-1") == "open"

    client.messages.create(model=MODEL, max_tokens=16, messages=HELLO)

    assert stack.calls("us-east-1") == 3  # the fourth request went straight to us-west-2
    assert stack.calls("us-west-2") == 4


def test_everything_down_is_529(client, stack) -> None:
    for target in ("us-east-1", "us-west-2", VERTEX_REGION):
        stack.fault(target, kind="error", status=503)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model=MODEL, max_tokens=16, messages=HELLO)

    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"


def test_a_hanging_region_gives_way_to_the_next_for_a_whole_response(client, stack) -> None:
    stack.fault("us-east-1", kind="timeout", hang_seconds=10)
    stack.app.state.chain.first_event_timeout_seconds = 0.5  # patience: 0.5 s + 8 tokens / 10 per s
    try:
        started = time.monotonic()
        message = client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)
        elapsed = time.monotonic() - started
    finally:
        stack.app.state.chain.first_event_timeout_seconds = 30.0

    assert message.content[0].text
    assert 1.2 <= elapsed < 5
    [outcome] = stack.outcomes()
    assert [(a.region, a.error) for a in outcome.attempts] == [("us-east-1", "Timeout"), ("us-west-2", None)]


def test_vertex_error_after_first_byte_ends_the_stream_with_its_error(client, stack) -> None:
    stack.fault("us-east-1", kind="error", status=503)
    stack.fault("us-west-2", kind="error", status=503)
    stack.fault(VERTEX_REGION, kind="midstream", after_events=3, error_type="overloaded_error")
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream,
    ):
        for _ in stream:
            pass

    assert caught.value.body["error"]["type"] == "overloaded_error"
    [outcome] = stack.outcomes()
    assert outcome.outcome == "error" and outcome.served_by.provider == "vertex"


def test_vertex_error_before_first_event_is_retried_once(client, stack) -> None:
    stack.fault("us-east-1", kind="error", status=503)
    stack.fault("us-west-2", kind="error", status=503)
    stack.fault(VERTEX_REGION, kind="midstream", after_events=0, error_type="api_error", count=1)
    with client.messages.stream(model=MODEL, max_tokens=32, messages=HELLO) as stream:
        final = stream.get_final_message()

    assert final.content[0].text
    [outcome] = stack.outcomes()
    assert [(a.provider, a.error) for a in outcome.attempts][-2:] == [
        ("vertex", "api_error"),
        ("vertex", None),
    ]


def test_a_stream_that_stalls_after_the_first_byte_ends_with_an_error_event(client, stack) -> None:
    stack.fault("us-east-1", kind="error", status=503)
    stack.fault("us-west-2", kind="error", status=503)
    stack.fault(VERTEX_REGION, kind="stall", after_events=3, hang_seconds=5)
    stack.app.state.pipeline.stream_idle_timeout_seconds = 0.5
    try:
        started = time.monotonic()
        with (
            pytest.raises(anthropic.APIStatusError) as caught,
            client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream,
        ):
            for _ in stream:
                pass
        elapsed = time.monotonic() - started
    finally:
        stack.app.state.pipeline.stream_idle_timeout_seconds = 120.0

    assert caught.value.body["error"] == {"type": "api_error", "message": "the upstream stream stalled"}
    assert elapsed < 3
