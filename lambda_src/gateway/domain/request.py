"""Parse a Messages API body: read only the fields policy and quota need; the rest passes through.

Raw passthrough (docs/ARCHITECTURE.md): model, max_tokens and stream are checked because the gateway acts
on them; messages, system and the content blocks are walked to find what can carry a capability (tools,
vision) and to bound the input; every other field, role and block type is forwarded as it came, and
the upstream is the authority on its validity. The body must be JSON the gateway can forward faithfully:
a lone surrogate, a non-finite or oversized number, or a duplicated key is refused here, before any
reservation or record of a model call.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from gateway.domain.errors import InvalidRequestError, RequestTooLargeError
from gateway.models.exchange import MessagesRequest

# The count_tokens estimate: Anthropic bills an image at about (width * height) / 750 tokens, capped
# near this figure, and text at about one token per 4 characters (ASCII); see `upper bound` below for
# what quota reserves instead.
IMAGE_TOKEN_ESTIMATE = 1600
_CHARS_PER_TOKEN = 4
# No Claude model writes more than this many output tokens (the per-model bound is the catalog's
# max_output_tokens); a bound here keeps absurd values (10**400) out of cost and quota arithmetic.
MAX_TOKENS_CEILING = 128_000
# Tool use adds a system prompt of its own, which the body does not show (a few hundred tokens).
TOOL_PROMPT_TOKENS = 1024
# Framing tokens around a request (role markers, the start and end of the turn), beyond its bytes.
FRAMING_TOKENS = 64
# Block types whose nested `content` holds more blocks (and so may carry images, tool results, ...).
_NESTING = frozenset(
    {"tool_result", "search_result", "mcp_tool_result", "web_search_tool_result", "web_fetch_tool_result"}
)
_SURROGATE = re.compile(rb"\\u[dD][89abAB]", re.ASCII)


def _no_constant(name: str) -> Any:
    # json.loads accepts NaN and +-Infinity, which are not JSON: the upstream would get a body it rejects.
    raise InvalidRequestError(f"request body is not valid JSON: {name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: forwarded, it would become Infinity, which is not JSON
        raise InvalidRequestError(f"request body has a number out of range: {text[:40]}")
    return value


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # json.loads would keep the last: forwarding would change the request
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidRequestError(f"request body has a duplicated key {key[:60]!r}; it cannot be forwarded")
            seen.add(key)
    return obj


def decode_json_body(raw: bytes, *, max_body_bytes: int) -> dict[str, Any]:
    if len(raw) > max_body_bytes:
        raise RequestTooLargeError(f"request body is {len(raw)} bytes; the limit is {max_body_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(f"request body is not valid UTF-8 (byte {exc.start})") from None
    try:
        body = json.loads(text, parse_constant=_no_constant, parse_float=_finite, object_pairs_hook=_unique)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise InvalidRequestError("request body is nested too deeply") from None
    except ValueError as exc:  # an integer past Python's digit limit (4,300 digits)
        raise InvalidRequestError(f"request body has a number the gateway cannot read ({exc})") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("request body must be a JSON object")
    if _SURROGATE.search(raw):
        _check_unicode(body)
    return body


def _check_unicode(body: Any) -> None:
    """A `\\ud800`-style escape that is not half of a pair decodes to a lone surrogate: valid JSON text,
    but not Unicode, so no upstream can be sent it as UTF-8."""
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(
            f"request body has an unpaired UTF-16 surrogate (\\u{ord(exc.object[exc.start]):04x}); "
            "text must be valid Unicode"
        ) from None


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
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidRequestError("metadata: must be an object")
    # Bedrock's and Vertex's body form of anthropic-beta: the same flags, filtered per upstream alike.
    body_betas = body.get("anthropic_beta")
    if body_betas is not None:
        if not isinstance(body_betas, list) or not all(isinstance(b, str) for b in body_betas):
            raise InvalidRequestError("anthropic_beta: must be a list of strings")
        beta = (*beta, *(b for b in dict.fromkeys(body_betas) if b not in beta))
    walk = _Walk()
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequestError(f"messages.{i}: must be an object")
        walk.content(message.get("content"), f"messages.{i}.content")
    system = body.get("system")
    if system is not None:
        walk.content(system, "system")
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        walk.chars += len(json.dumps(tools))
    uses_tools = bool(tools) or any(kind in _TOOL_HINTS for kind in walk.kinds)
    # The upper bound of input tokens, before the per-model image bound and context cap (pricing.py):
    # every byte of the body that is not image or document data, as if each were a token (no tokenizer
    # makes more tokens than bytes), plus what the body does not show.
    text_bytes = len(raw) - walk.media_bytes
    bound = text_bytes + FRAMING_TOKENS + (TOOL_PROMPT_TOKENS if uses_tools else 0)
    return MessagesRequest(
        model=model,
        max_tokens=max_tokens if isinstance(max_tokens, int) else 0,
        stream=stream,
        uses_tools=uses_tools,
        has_images=walk.visual > 0,
        estimated_input_tokens=max(1, walk.chars // _CHARS_PER_TOKEN + walk.flat * IMAGE_TOKEN_ESTIMATE),
        body=body,
        body_sha256=hashlib.sha256(raw).hexdigest(),
        beta=beta,
        fields=tuple(name for name in body if name not in _PLAIN_FIELDS),
        blocks=tuple(walk.kinds.items()),
        input_bound=bound,
        images=walk.images,
        unbounded_documents=walk.unbounded_documents,
        cache_ttl=walk.cache_ttl or _cache_ttl(system) or _cache_ttl(tools),
    )


# Top-level fields the gateway itself reads; every other field is looked up in policy's carrier table.
_PLAIN_FIELDS = frozenset({"model", "max_tokens", "messages", "system", "stream"})
_TOOL_HINTS = frozenset({"tool_use", "tool_result"})


class _Walk:
    """What the content of messages and system holds: block kinds (with where first seen), sizes."""

    def __init__(self) -> None:
        self.kinds: dict[str, str] = {}
        self.chars = 0  # the count_tokens estimate's text
        self.visual = 0  # image and document blocks
        self.flat = 0  # blocks estimated at IMAGE_TOKEN_ESTIMATE
        self.images = 0
        self.unbounded_documents = 0  # documents whose tokens only the context window bounds
        self.media_bytes = 0  # base64 data of images and documents (bounded by their own rules)
        self.cache_ttl: str | None = None

    def content(self, content: Any, where: str) -> None:
        if isinstance(content, str):
            self.chars += len(content)
            return
        if not isinstance(content, list):
            return  # forwarded as it is; the upstream judges it
        for j, block in enumerate(content):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise InvalidRequestError(f"{where}.{j}: must be a content block object with a string type")
            self.block(block, f"{where}.{j}")

    def block(self, block: dict[str, Any], where: str) -> None:
        kind = block["type"]
        self.kinds.setdefault(kind, where)
        self.cache_ttl = _stronger(self.cache_ttl, _cache_ttl([block]))
        if kind == "text":
            text = block.get("text")
            self.chars += len(text) if isinstance(text, str) else len(json.dumps(text))
        elif kind == "image":
            self.visual += 1
            self.flat += 1
            self.images += 1
            self.media_bytes += _data_bytes(block.get("source"))
        elif kind == "document":
            self.document(block.get("source"), where)
        elif kind in _NESTING:
            inner = block.get("content")
            if isinstance(inner, (list, str)):
                self.content(inner, f"{where}.content")
        else:
            self.chars += len(json.dumps(block))

    def document(self, source: Any, where: str) -> None:
        """Base64 data counts its decoded bytes, and at least one image's worth (a PDF page is billed as
        its text plus an image of the page); `content` documents count their blocks. For the bound, a
        PDF's tokens are not bounded by its bytes (compressed text, page images): only the context is."""
        self.visual += 1
        kind = source.get("type") if isinstance(source, dict) else None
        data = source.get("data") if isinstance(source, dict) else None
        if kind == "base64" and isinstance(data, str):
            self.chars += max(len(data) // 4 * 3, IMAGE_TOKEN_ESTIMATE * _CHARS_PER_TOKEN)
            self.media_bytes += len(data)
            self.unbounded_documents += 1
        elif kind == "text" and isinstance(data, str):
            self.chars += len(data)
        elif kind == "content":
            inner = source.get("content")
            if isinstance(inner, (list, str)):
                self.content(inner, f"{where}.source.content")
        else:  # by reference (url, file id): the size is unknown here
            self.flat += 1
            self.unbounded_documents += 1


def _data_bytes(source: Any) -> int:
    data = source.get("data") if isinstance(source, dict) else None
    return len(data) if isinstance(data, str) else 0


def _cache_ttl(items: Any) -> str | None:
    """"1h" or "5m" when a block or tool asks for a cache breakpoint (the dearer if both)."""
    ttl = None
    if isinstance(items, list):
        for item in items:
            control = item.get("cache_control") if isinstance(item, dict) else None
            if isinstance(control, dict):
                ttl = _stronger(ttl, "1h" if control.get("ttl") == "1h" else "5m")
    return ttl


def _stronger(a: str | None, b: str | None) -> str | None:
    return "1h" if "1h" in (a, b) else (a or b)


def parse_beta_header(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())
