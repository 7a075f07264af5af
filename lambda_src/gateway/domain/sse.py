"""Server-sent events in the Anthropic framing, and what the gateway learns from the events it relays.

Upstream events arrive as JSON bytes (Bedrock: `chunk.bytes`; Vertex: SSE `data:` lines); they are
re-emitted byte for byte as `event: <type>\\ndata: <json>\\n\\n`. The tracker reads usage from
`message_start` / `message_delta` and hashes exactly what the client received.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from gateway.domain.ports import Usage


def frame(event_type: str, data: bytes) -> bytes:
    return b"event: " + event_type.encode() + b"\ndata: " + data + b"\n\n"


def error_frame(error_type: str, message: str) -> bytes:
    data = json.dumps(
        {"type": "error", "error": {"type": error_type, "message": message}}, separators=(",", ":")
    )
    return frame("error", data.encode())


def event_type(data: bytes) -> str:
    """The `type` of one event's JSON; the cheap path avoids a full parse of large deltas."""
    prefix = b'{"type":"'
    if data.startswith(prefix):
        j = data.find(b'"', len(prefix), 64)
        if j != -1:
            return data[len(prefix) : j].decode()
    parsed = json.loads(data)
    return str(parsed.get("type", "message")) if isinstance(parsed, dict) else "message"


class SSEParser:
    """Incremental parser for an upstream SSE byte stream (Vertex streamRawPredict): yields (event, data)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> Iterator[tuple[str, bytes]]:
        self._buffer += chunk
        while True:
            end = _frame_end(self._buffer)
            if end is None:
                return
            raw, self._buffer = self._buffer[: end[0]], self._buffer[end[1] :]
            event, data_lines = "", []
            for line in raw.replace(b"\r\n", b"\n").split(b"\n"):
                if line.startswith(b"event:"):
                    event = line[6:].strip().decode()
                elif line.startswith(b"data:"):
                    data_lines.append(line[5:].lstrip(b" "))
            if data_lines:
                data = b"\n".join(data_lines)
                yield event or event_type(data), data


def _frame_end(buffer: bytes) -> tuple[int, int] | None:
    for sep in (b"\n\n", b"\r\n\r\n"):
        i = buffer.find(sep)
        if i != -1:
            return i, i + len(sep)
    return None


class StreamTracker:
    """Follows the relayed events: usage totals, the response hash, whether the stream completed."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read = 0
        self.cache_write = 0
        self.completed = False
        self.bytes_sent = 0

    def observe(self, event: str, data: bytes, framed: bytes) -> None:
        self._hash.update(framed)
        self.bytes_sent += len(framed)
        if event == "message_start":
            usage = _get(json.loads(data), "message", "usage")
            self._take(usage)
        elif event == "message_delta":
            self._take(_get(json.loads(data), "usage"))
        elif event == "message_stop":
            self.completed = True

    def _take(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        # message_delta carries cumulative counts; a later value replaces an earlier one.
        self.input_tokens = int(usage.get("input_tokens") or self.input_tokens)
        self.output_tokens = int(usage.get("output_tokens") or self.output_tokens)
        self.cache_read = int(usage.get("cache_read_input_tokens") or self.cache_read)
        self.cache_write = int(usage.get("cache_creation_input_tokens") or self.cache_write)

    def usage(self) -> Usage:
        return Usage(self.input_tokens, self.output_tokens, self.cache_read, self.cache_write)

    def sha256(self) -> str:
        return self._hash.hexdigest()


def usage_from_message(message: Any) -> Usage:
    usage = message.get("usage") if isinstance(message, dict) else None
    if not isinstance(usage, dict):
        return Usage()
    return Usage(
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        cache_read_input_tokens=int(usage.get("cache_read_input_tokens") or 0),
        cache_creation_input_tokens=int(usage.get("cache_creation_input_tokens") or 0),
    )


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj
