"""Deterministic model replies for the emulators: the same request always gets the same answer.

Usage is realistic enough for quota and cost tests: input tokens from the body size (about 4 bytes
per token, as English text averages), output tokens one per word of the reply. max_tokens is
honoured (the reply is cut, stop_reason "max_tokens"), so are stop_sequences (the reply ends
before the first word that contains one, stop_reason "stop_sequence"), and a request that offers
tools and asks for one ("use the tool", "call <name>", "use <name>") gets a tool_use reply. A request
with thinking on (`enabled` or `adaptive`) gets a thinking block first, with a signature, as the
Messages API returns it (https://platform.claude.com/docs/en/build-with-claude/extended-thinking).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.domain.catalog import load_catalog

if TYPE_CHECKING:
    from gatewayctl.local.faults import Fault


@dataclass(frozen=True)
class Reply:
    message_id: str
    model: str
    words: tuple[str, ...]  # text content, one token per word
    tool_use: dict[str, Any] | None
    stop_reason: str
    input_tokens: int
    stop_sequence: str | None = None
    thinking: str | None = None  # the thinking block's text, when the request turned thinking on

    @property
    def output_tokens(self) -> int:
        tool_tokens = len(json.dumps(self.tool_use["input"])) // 4 + 10 if self.tool_use else 0
        thinking_tokens = len(self.thinking.split()) if self.thinking else 0
        return max(1, len(self.words) + tool_tokens + thinking_tokens)

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def usage(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": self.output_tokens,
        }

    @property
    def signature(self) -> str:
        return "emu-signature-" + self.message_id

    def content(self) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if self.thinking:
            blocks.append({"type": "thinking", "thinking": self.thinking, "signature": self.signature})
        if self.words:
            blocks.append({"type": "text", "text": self.text})
        if self.tool_use:
            blocks.append(self.tool_use)
        return blocks

    def message(self) -> dict[str, Any]:
        return {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": self.content(),
            "stop_reason": self.stop_reason,
            "stop_sequence": self.stop_sequence,
            "usage": self.usage(),
        }

    def events(self) -> list[dict[str, Any]]:
        """The Anthropic streaming events, in order, as the Messages API sends them."""
        start = {**self.message(), "content": [], "stop_reason": None, "stop_sequence": None}
        start["usage"] = {**self.usage(), "output_tokens": 1}
        events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
        index = 0
        if self.thinking:
            thinking_delta = {"type": "thinking_delta", "thinking": self.thinking}
            signature_delta = {"type": "signature_delta", "signature": self.signature}
            events += [
                {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
                {"type": "content_block_delta", "index": 0, "delta": thinking_delta},
                {"type": "content_block_delta", "index": 0, "delta": signature_delta},
                {"type": "content_block_stop", "index": 0},
            ]
            index = 1
        if self.words:
            events.append(
                {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
            )
            for i, word in enumerate(self.words):
                piece = word if i == 0 else " " + word
                events.append(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": piece},
                    }
                )
            events.append({"type": "content_block_stop", "index": index})
            index += 1
        if self.tool_use:
            events.append(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {**self.tool_use, "input": {}},
                }
            )
            events.append(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": json.dumps(self.tool_use["input"])},
                }
            )
            events.append({"type": "content_block_stop", "index": index})
        events.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason, "stop_sequence": self.stop_sequence},
                "usage": {"output_tokens": self.output_tokens},
            }
        )
        events.append({"type": "message_stop"})
        return events


def model_name(model_id: str) -> str:
    """The Anthropic model id the providers report for a Bedrock/Vertex id (the id itself if unknown)."""
    entry = load_catalog().lookup(model_id)
    return entry.anthropic_id if entry else model_id


def known_model(model_id: str) -> bool:
    return catalog_entry(model_id) is not None


def catalog_entry(model_id: str) -> Any:
    """The catalog entry an upstream id names (the emulators know the models the catalog knows)."""
    return load_catalog().lookup(model_id)


def make_reply(body: dict[str, Any], raw_size: int, model_id: str) -> Reply:
    prompt = _last_user_text(body.get("messages") or [])
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    max_tokens = int(body.get("max_tokens") or 1)
    tool = _requested_tool(body.get("tools") or [], prompt)
    words = ["Emulated", "reply", "to:", *prompt.split()[:40]] if prompt else ["Emulated", "reply."]
    stop_reason = "end_turn"
    tool_use = None
    if tool is not None:
        words = ["Calling", tool["name"] + "."]
        tool_use = {
            "type": "tool_use",
            "id": "toolu_emu" + digest[:20],
            "name": tool["name"],
            "input": _example_input(tool.get("input_schema") or {}, prompt),
        }
        stop_reason = "tool_use"
    stop_sequence = None
    for i, word in enumerate(words):
        hit = next((s for s in body.get("stop_sequences") or [] if isinstance(s, str) and s and s in word), None)
        if hit is not None:
            words, tool_use, stop_reason, stop_sequence = words[:i], None, "stop_sequence", hit
            break
    if len(words) > max_tokens:
        words, tool_use, stop_reason, stop_sequence = words[:max_tokens], None, "max_tokens", None
    return Reply(
        message_id="msg_emu" + digest[:24],
        model=model_name(model_id),
        words=tuple(words),
        tool_use=tool_use,
        stop_reason=stop_reason,
        input_tokens=input_tokens(body, raw_size),
        stop_sequence=stop_sequence,
        thinking=_thinking(body, prompt),
    )


def _thinking(body: dict[str, Any], prompt: str) -> str | None:
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
        return None
    return "Emulated thinking about: " + " ".join(prompt.split()[:8]) if prompt else "Emulated thinking."


def input_tokens(body: dict[str, Any], raw_size: int) -> int:
    """What the emulated model bills as input. Anthropic does not publish its tokenizer; this follows the
    usual estimate (about 4 ASCII characters to a token, about a token per CJK character) and counts
    characters outside the Basic Multilingual Plane (CJK extension B, emoji) at two tokens each, so
    that scripts cost what they cost and a reservation estimated per character would be caught short.
    Strings count their text; the rest of the body (structure, numbers) its bytes at 4 to a token."""
    text = "".join(_strings(body))
    ascii_chars = sum(1 for c in text if c < "\x80")
    astral = sum(1 for c in text if c > "\uffff")
    other = len(text) - ascii_chars - astral
    structure = max(0, raw_size - len(text.encode("utf-8", "surrogatepass")))
    return max(1, (ascii_chars + structure) // 4 + other + 2 * astral)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _requested_tool(tools: list[Any], prompt: str) -> dict[str, Any] | None:
    named = [t for t in tools if isinstance(t, dict) and t.get("name")]
    if not named:
        return None
    lowered = prompt.lower()
    for tool in named:
        if re.search(rf"\b(use|call)\s+(the\s+)?{re.escape(tool['name'].lower())}\b", lowered):
            return tool
    if re.search(r"\b(use|call)\s+(the|a)\s+tool\b", lowered):
        return named[0]
    return None


def _example_input(schema: dict[str, Any], prompt: str = "") -> dict[str, Any]:
    """An input that fits the tool's schema; a path-like word in the prompt fills a path or file field."""
    examples = {"string": "example", "integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}}
    paths = re.findall(r"/[\w./-]+\.\w+", prompt)  # absolute paths, as file tools take them
    path = paths[-1] if paths else None
    out = {}
    properties = schema.get("properties") or {}
    required = schema.get("required")
    for name, spec in properties.items():
        if isinstance(required, list) and name not in required:
            continue
        kind = (spec or {}).get("type", "string")
        out[name] = (
            path if path and kind == "string" and ("path" in name or "file" in name) else examples.get(kind, "example")
        )
    return out


async def sse_events(reply: Reply, fault: Fault | None) -> AsyncIterator[bytes]:
    """The Messages API's SSE framing (`event: <type>` / `data: <json>`, a ping after message_start)."""
    events = reply.events()
    events.insert(1, {"type": "ping"})
    for n, event in enumerate(events):
        if fault is not None and n >= fault.after_events and fault.kind == "stall":
            await asyncio.sleep(fault.hang_seconds)
            return
        if fault is not None and n >= fault.after_events:
            error = {
                "type": "error",
                "error": {"type": fault.error_type or "overloaded_error", "message": "Overloaded"},
            }
            yield f"event: error\ndata: {json.dumps(error)}\n\n".encode()
            return
        yield f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()
        await asyncio.sleep(0)
