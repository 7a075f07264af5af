"""Server-sent events in the Anthropic framing, and what the gateway learns from the events it relays.

Upstream events arrive as JSON bytes (Bedrock: `chunk.bytes`; Vertex: SSE `data:` lines); they are
re-emitted byte for byte as `event: <type>\\ndata: <json>\\n\\n`. The tracker reads usage from
`message_start` / `message_delta` and hashes exactly what the client received.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from typing import Any

from gateway.models.exchange import Usage

# No request reads or writes a billion tokens: a larger count is garbage, not usage.
_MAX_TOKEN_COUNT = 10**9
_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


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
        self._counts = dict.fromkeys(_USAGE_FIELDS, 0)
        self._usage_seen = False
        self._usage_odd = False
        self._input_known = False  # message_start reported a readable input count
        self.completed = False
        self.bytes_sent = 0

    def observe(self, event: str, data: bytes, framed: bytes) -> None:
        self._hash.update(framed)
        self.bytes_sent += len(framed)
        if event == "message_start":
            usage = _get(json.loads(data), "message", "usage")
            self._take(usage)
            self._input_known = isinstance(usage, dict) and token_count(usage.get("input_tokens")) is not None
        elif event == "message_delta":
            self._take(_get(json.loads(data), "usage"))
        elif event == "message_stop":
            self.completed = True

    def _take(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        self._usage_seen = True
        # message_delta carries cumulative counts; a later value replaces an earlier one.
        for name in _USAGE_FIELDS:
            value = usage.get(name)
            if not value:
                continue
            count = token_count(value)
            if count is None:
                self._usage_odd = True  # relayed as it came; the gateway just cannot meter it
            else:
                self._counts[name] = count

    def usage(self) -> Usage | None:
        """The usage the events reported; None when they reported none or an unreadable one."""
        if not self._usage_seen or self._usage_odd:
            return None
        return Usage(*(self._counts[name] for name in _USAGE_FIELDS))

    def upper_bound(self, max_tokens: int, body: Any = None) -> Usage | None:
        """For a stream cut short: usage provably at or above the true one, or None when unknown.

        Input and cache counts are exact from message_start; output can be no more than max_tokens.
        Not with server tools in the request `body` (web search, code execution, ...): their results
        are fed back as more input after message_start, so its input count is not final.
        """
        usage = self.usage()
        if usage is None or not self._input_known or has_server_tools(body):
            return None
        return Usage(
            usage.input_tokens,
            max(usage.output_tokens, max_tokens),
            usage.cache_read_input_tokens,
            usage.cache_creation_input_tokens,
        )

    def sha256(self) -> str:
        return self._hash.hexdigest()


def has_server_tools(body: Any) -> bool:
    """Whether the request names a tool the server runs (its `type` is set and is not "custom")."""
    tools = body.get("tools") if isinstance(body, dict) else None
    if not isinstance(tools, list):
        return False
    return any(
        isinstance(tool, dict) and tool.get("type") not in (None, "custom") for tool in tools
    )


def token_count(value: Any) -> int | None:
    """A usage field as a token count; None for anything that is not a plausible one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= _MAX_TOKEN_COUNT:
        return value
    return None


def usage_from_message(message: Any) -> Usage | None:
    """The usage of a whole Messages response; None when it has none or an unreadable one."""
    usage = message.get("usage") if isinstance(message, dict) else None
    if not isinstance(usage, dict):
        return None
    counts = [token_count(usage.get(name) or 0) for name in _USAGE_FIELDS]
    if any(count is None for count in counts):
        return None
    return Usage(*counts)  # type: ignore[arg-type]


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj
