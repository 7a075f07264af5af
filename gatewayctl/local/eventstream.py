"""The AWS event-stream wire format (application/vnd.amazon.eventstream), encoder side.

Each message: a 12-byte prelude (total length, headers length, CRC32 of those 8 bytes), the
headers, the payload, and a CRC32 of everything before it. Headers here are all strings (type 7),
which is what Bedrock sends. botocore's `EventStreamBuffer` is the decoder the tests hold us to.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Mapping

_STRING = 7
_PRELUDE = struct.Struct(">II")


def encode_headers(headers: Mapping[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        if len(raw_name) > 255 or len(raw_value) > 32767:
            raise ValueError(f"event-stream header {name!r} too long")
        out += struct.pack(">B", len(raw_name)) + raw_name
        out += struct.pack(">BH", _STRING, len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    raw_headers = encode_headers(headers)
    total = _PRELUDE.size + 4 + len(raw_headers) + len(payload) + 4
    prelude = _PRELUDE.pack(total, len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + raw_headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def chunk_event(event: Mapping) -> bytes:
    """One Bedrock `chunk`: {"bytes": base64(json of one Anthropic streaming event)}."""
    inner = json.dumps(event, separators=(",", ":")).encode()
    payload = json.dumps({"bytes": base64.b64encode(inner).decode()}).encode()
    return encode_message(
        {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}, payload
    )


def exception_event(exception_type: str, message: str, **fields: object) -> bytes:
    """A modelled stream exception, e.g. throttlingException; botocore raises EventStreamError."""
    payload = json.dumps({"message": message, **fields}).encode()
    return encode_message(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        payload,
    )
