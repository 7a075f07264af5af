"""Parse and check a Messages API body: only the fields policy and quota read, the rest passes through.

Tolerant by design (raw passthrough, docs/ARCHITECTURE.md): unknown top-level fields and unknown content
block types are kept untouched in `body`; only the fields the gateway acts on are type-checked, so bad
input is answered with a 400 here and never reaches an upstream.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from gateway.domain.errors import InvalidRequestError, RequestTooLargeError
from gateway.models.exchange import MessagesRequest

# Anthropic bills an image at about (width * height) / 750 tokens, capped near this figure; the
# estimate reserves the cap rather than counting base64 characters as text.
IMAGE_TOKEN_ESTIMATE = 1600
# A text or PDF document is estimated from its size, about one token per 4 bytes (the estimate
# counts a byte as a character): a flat figure would under-reserve a large document many times over.
_CHARS_PER_TOKEN = 4
_ROLES = ("user", "assistant")
# No Claude model writes more than this many output tokens (the per-model bound is the catalog's
# max_output_tokens); a bound here keeps absurd values (10**400) out of cost and quota arithmetic.
MAX_TOKENS_CEILING = 128_000


def _no_constant(name: str) -> Any:
    # json.loads accepts NaN and +-Infinity, which are not JSON: the upstream would get a body it rejects.
    raise InvalidRequestError(f"request body is not valid JSON: {name} is not a JSON number")


def decode_json_body(raw: bytes, *, max_body_bytes: int) -> dict[str, Any]:
    if len(raw) > max_body_bytes:
        raise RequestTooLargeError(f"request body is {len(raw)} bytes; the limit is {max_body_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(f"request body is not valid UTF-8 (byte {exc.start})") from None
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise InvalidRequestError("request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("request body must be a JSON object")
    return body


def parse_messages_request(
    raw: bytes, *, max_body_bytes: int, beta: tuple[str, ...] = (), require_max_tokens: bool = True
) -> MessagesRequest:
    body = decode_json_body(raw, max_body_bytes=max_body_bytes)
    try:
        return _parse_body(body, raw, beta, require_max_tokens)
    except RecursionError:  # deeply nested content blocks (tool_result in tool_result ...)
        raise InvalidRequestError("request body is nested too deeply") from None


def _parse_body(
    body: dict[str, Any], raw: bytes, beta: tuple[str, ...], require_max_tokens: bool
) -> MessagesRequest:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("model: field required (a non-empty string)")
    max_tokens = body.get("max_tokens")
    if require_max_tokens or max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise InvalidRequestError("max_tokens: field required (an integer)")
        if max_tokens < 1:
            raise InvalidRequestError("max_tokens: must be at least 1")
        if max_tokens > MAX_TOKENS_CEILING:
            raise InvalidRequestError(f"max_tokens: must be at most {MAX_TOKENS_CEILING}")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequestError("stream: must be a boolean")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("messages: field required (a non-empty list)")
    text_chars = 0
    visual = flat = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequestError(f"messages.{i}: must be an object")
        if message.get("role") not in _ROLES:
            raise InvalidRequestError(f"messages.{i}.role: must be one of {list(_ROLES)}")
        chars, v, f = _content_size(message.get("content"), f"messages.{i}.content")
        text_chars += chars
        visual += v
        flat += f
    system = body.get("system")
    if system is not None:
        if isinstance(system, str):
            text_chars += len(system)
        elif isinstance(system, list):
            text_chars += _content_size(system, "system")[0]
        else:
            raise InvalidRequestError("system: must be a string or a list of content blocks")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise InvalidRequestError("tools: must be a list")
    if tools:
        text_chars += len(json.dumps(tools))
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidRequestError("metadata: must be an object")
    return MessagesRequest(
        model=model,
        max_tokens=max_tokens if isinstance(max_tokens, int) else 0,
        stream=stream,
        uses_tools=bool(tools) or _has_block(messages, ("tool_use", "tool_result")),
        has_images=visual > 0,
        estimated_input_tokens=max(1, text_chars // _CHARS_PER_TOKEN + flat * IMAGE_TOKEN_ESTIMATE),
        body=body,
        body_sha256=hashlib.sha256(raw).hexdigest(),
        beta=beta,
    )


def parse_beta_header(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _content_size(content: Any, where: str) -> tuple[int, int, int]:
    """(characters, image and document blocks, blocks estimated at IMAGE_TOKEN_ESTIMATE) of a content
    value; a document counts its bytes as characters; unknown block types count as their JSON."""
    if isinstance(content, str):
        return len(content), 0, 0
    if not isinstance(content, list):
        raise InvalidRequestError(f"{where}: must be a string or a list of content blocks")
    chars = visual = flat = 0
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise InvalidRequestError(f"{where}.{j}: must be a content block object with a string type")
        kind = block["type"]
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise InvalidRequestError(f"{where}.{j}.text: must be a string")
            chars += len(text)
        elif kind == "image":
            visual += 1
            flat += 1
        elif kind == "document":
            visual += 1
            size = _document_size(block.get("source"), f"{where}.{j}.source")
            if size is None:  # by reference (url, file id): the size is unknown here
                flat += 1
            else:
                chars += size[0]
                flat += size[1]
        elif kind == "tool_result":
            inner = block.get("content")
            if inner is not None:
                c, v, f = _content_size(inner, f"{where}.{j}.content")
                chars += c
                visual += v
                flat += f
        else:
            chars += len(json.dumps(block))
    return chars, visual, flat


def _document_size(source: Any, where: str) -> tuple[int, int] | None:
    """A document's (characters, blocks estimated at IMAGE_TOKEN_ESTIMATE); None when only referenced.

    Base64 data counts its decoded bytes, and at least one image's worth: a PDF page is billed as its
    text plus an image of the page, so even a small PDF costs that much. `content` documents count
    their text and their image blocks."""
    if not isinstance(source, dict):
        return None
    data = source.get("data")
    kind = source.get("type")
    if kind == "base64" and isinstance(data, str):
        return max(len(data) // 4 * 3, IMAGE_TOKEN_ESTIMATE * _CHARS_PER_TOKEN), 0
    if kind == "text" and isinstance(data, str):
        return len(data), 0
    if kind == "content":
        try:
            chars, _, flat = _content_size(source.get("content"), f"{where}.content")
        except InvalidRequestError:  # passed through as it is; the upstream judges it
            return None
        return chars, flat
    return None


def _has_block(messages: list[dict[str, Any]], kinds: tuple[str, ...]) -> bool:
    return any(
        isinstance(block, dict) and block.get("type") in kinds
        for message in messages
        if isinstance(message.get("content"), list)
        for block in message["content"]
    )
