"""The event-stream encoder, held to botocore's own decoder."""

from __future__ import annotations

import base64
import json

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from gatewayctl.local import eventstream


def decode(raw: bytes) -> list:
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    return list(buffer)


def test_chunk_event_decodes_with_bedrock_headers_and_base64_payload():
    event = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "héllo"}}

    [message] = decode(eventstream.chunk_event(event))

    assert message.headers == {
        ":event-type": "chunk",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert json.loads(base64.b64decode(json.loads(message.payload)["bytes"])) == event


def test_several_messages_in_one_buffer_decode_in_order():
    raw = b"".join(eventstream.chunk_event({"type": "ping", "n": n}) for n in range(3))

    payloads = [json.loads(base64.b64decode(json.loads(m.payload)["bytes"])) for m in decode(raw)]

    assert [p["n"] for p in payloads] == [0, 1, 2]


def test_exception_event_carries_the_exception_type():
    [message] = decode(eventstream.exception_event("throttlingException", "slow down"))

    assert message.headers[":message-type"] == "exception"
    assert message.headers[":exception-type"] == "throttlingException"
    assert json.loads(message.payload) == {"message": "slow down"}


@pytest.mark.parametrize("position", [5, -2])  # in the prelude CRC, in the message CRC
def test_a_corrupted_message_fails_botocores_checksum(position):
    raw = bytearray(eventstream.chunk_event({"type": "ping"}))
    raw[position] ^= 0xFF

    with pytest.raises(ChecksumMismatch):
        decode(bytes(raw))


def test_prelude_lengths_match_the_message():
    raw = eventstream.encode_message({"a": "b"}, b"xyz")

    assert int.from_bytes(raw[0:4], "big") == len(raw)
    assert int.from_bytes(raw[4:8], "big") == len(eventstream.encode_headers({"a": "b"}))
