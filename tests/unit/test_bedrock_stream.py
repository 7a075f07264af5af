"""Bedrock streams: the event-stream decoding (as botocore decodes it), the hand-over in batches, and the
relay sending the events in hand in one write while the first goes out alone. The stream through the
loop path, against an HTTP server, is in test_aws_loop.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import EventStreamError
from gateway.adapters.bedrock import BedrockUpstream, _EventsThenError, decode

from gatewayctl.local.eventstream import chunk_event, exception_event
from tests.unit.runtime_fakes import settings

EVENTS = [
    {"type": "message_start", "message": {"usage": {"input_tokens": 3, "output_tokens": 1}}},
    *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"w{i}"}} for i in range(5)),
    {"type": "message_stop"},
]


class Raw:
    """botocore's EventStream holds urllib3's response as `_raw_stream`; its stream() yields reads."""

    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads

    def stream(self) -> Iterator[bytes]:
        yield from self.reads


class Body:
    def __init__(self, reads: list[bytes]) -> None:
        self._raw_stream = Raw(reads)

    def close(self) -> None:
        pass


def encoded(events: list[dict[str, Any]]) -> bytes:
    return b"".join(chunk_event(e) for e in events)


@pytest.mark.parametrize("size", [1, 7, 100, 100_000])
def test_events_decode_whatever_the_reads_boundaries(size: int) -> None:
    raw = encoded(EVENTS)
    reads = [raw[i : i + size] for i in range(0, len(raw), size)]
    decoder = EventStreamBuffer()
    batches = [batch for batch in (decode(decoder, read) for read in reads) if batch]
    decoded = [value for batch in batches for value in batch]

    assert [json.loads(data) for _, data in decoded] == EVENTS
    assert [name for name, _ in decoded] == [e["type"] for e in EVENTS]
    if size == 100_000:  # one read: one batch
        assert len(batches) == 1


def test_an_exception_message_raises_botocores_error_after_the_events_before_it() -> None:
    raw = encoded(EVENTS[:2]) + exception_event("modelStreamErrorException", "boom", originalStatusCode=500)
    with pytest.raises(_EventsThenError) as caught:
        decode(EventStreamBuffer(), raw)
    assert len(caught.value.events) == 2
    assert isinstance(caught.value.error, EventStreamError)
    assert caught.value.error.response["Error"] == {"Code": "modelStreamErrorException", "Message": "boom"}


def test_a_corrupted_message_is_refused() -> None:
    raw = bytearray(encoded(EVENTS[:1]))
    raw[-10] ^= 0xFF
    with pytest.raises(ChecksumMismatch):
        decode(EventStreamBuffer(), bytes(raw))


class Client:
    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads

    def invoke_model_with_response_stream(self, **_: Any) -> dict[str, Any]:
        return {"body": Body(self.reads)}


@pytest.mark.anyio
async def test_events_that_arrive_together_are_in_hand_together() -> None:
    upstream = BedrockUpstream(settings(), "us-east-1", client=Client([encoded(EVENTS)]))
    events = upstream.stream("m", {"max_tokens": 1}, beta=(), timeout=5)
    first = await events.__anext__()
    assert first[0] == "message_start"
    assert events.ready() == len(EVENTS) - 1  # the rest came in the same read
    rest = [await events.__anext__() for _ in range(events.ready())]
    assert [name for name, _ in rest] == [e["type"] for e in EVENTS[1:]]
    with pytest.raises(StopAsyncIteration):
        await events.__anext__()


@pytest.mark.anyio
async def test_the_relay_sends_the_first_event_alone_and_the_events_in_hand_in_one_write() -> None:
    from gateway.domain.failover import OpenedStream
    from gateway.domain.relay import Relay

    class End:
        finished = False
        before_finish = None

        def __init__(self) -> None:
            from gateway.models.exchange import Exchange, RequestMeta

            self.exchange = Exchange(meta=RequestMeta(request_id="r"))

        def streaming(self) -> None:
            pass

        def served(self, *_: Any) -> None:
            pass

        def stream_error(self, *_: Any) -> None:
            raise AssertionError("no error expected")

        async def finish(self) -> None:
            self.finished = True

    upstream = BedrockUpstream(settings(), "us-east-1", client=Client([encoded(EVENTS)]))
    events = upstream.stream("m", {"max_tokens": 1}, beta=(), timeout=5)
    first = await events.__anext__()
    end = End()
    relay = Relay(end, OpenedStream(upstream, first, events), idle_timeout_seconds=5)  # type: ignore[arg-type]
    writes = [chunk async for chunk in relay.frames()]

    assert len(writes) == 2
    assert writes[0].startswith(b"event: message_start\n") and writes[0].count(b"event: ") == 1
    assert writes[1].count(b"event: ") == len(EVENTS) - 1
    assert writes[1].endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert end.finished
