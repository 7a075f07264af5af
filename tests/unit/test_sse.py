"""SSE framing, the incremental upstream parser, and what the stream tracker learns."""

from __future__ import annotations

import hashlib
import json

from gateway.domain.sse import SSEParser, StreamTracker, error_frame, event_type, frame


def test_frame_and_error_frame() -> None:
    assert frame("ping", b'{"type":"ping"}') == b'event: ping\ndata: {"type":"ping"}\n\n'
    framed = error_frame("overloaded_error", "busy")
    assert framed.startswith(b"event: error\ndata: ")
    assert json.loads(framed.split(b"data: ", 1)[1]) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "busy"},
    }


def test_event_type_fast_path_and_fallback() -> None:
    assert event_type(b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta"}}') == (
        "content_block_delta"
    )
    # Not first in the object: the nested type must not be taken for the event's.
    assert event_type(b'{"index":0,"delta":{"type":"text_delta"},"type":"content_block_delta"}') == (
        "content_block_delta"
    )
    assert event_type(b'{ "type": "message_stop" }') == "message_stop"


def test_parser_handles_frames_split_anywhere() -> None:
    stream = b'event: message_start\ndata: {"type":"message_start"}\n\n'
    stream += b'event: ping\r\ndata: {"type":"ping"}\r\n\r\n'
    for cut in range(1, len(stream)):
        parser = SSEParser()
        events = list(parser.feed(stream[:cut])) + list(parser.feed(stream[cut:]))
        assert [e for e, _ in events] == ["message_start", "ping"]


def test_tracker_usage_and_hash() -> None:
    tracker = StreamTracker()
    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {"usage": {"input_tokens": 9, "cache_read_input_tokens": 4}},
            },
        ),
        ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 3}}),
        ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 7}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    sent = b""
    for name, data in events:
        raw = json.dumps(data).encode()
        framed = frame(name, raw)
        sent += framed
        tracker.observe(name, raw, framed)

    usage = tracker.usage()
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (9, 7, 4)
    assert tracker.completed
    assert tracker.sha256() == hashlib.sha256(sent).hexdigest()


def test_odd_usage_values_make_the_usage_unknown_never_an_exception() -> None:
    from gateway.domain.sse import usage_from_message
    from gateway.models.exchange import Usage

    assert usage_from_message({"usage": {"input_tokens": 3, "output_tokens": 2.0}}) == Usage(3, 2)
    for odd in ("12", -1, 10**400, float("nan"), True, [1], {"n": 1}, 1.5):
        assert usage_from_message({"usage": {"input_tokens": odd, "output_tokens": 1}}) is None, odd
    assert usage_from_message({"no": "usage"}) is None
    assert usage_from_message(None) is None

    tracker = StreamTracker()
    start = {"type": "message_start", "message": {"usage": {"input_tokens": "nine", "output_tokens": 1}}}
    raw = json.dumps(start).encode()
    tracker.observe("message_start", raw, frame("message_start", raw))
    stop = b'{"type":"message_stop"}'
    tracker.observe("message_stop", stop, frame("message_stop", stop))
    assert tracker.completed and tracker.usage() is None
    assert StreamTracker().usage() is None  # no usage seen at all
