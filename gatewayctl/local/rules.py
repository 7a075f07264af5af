"""What the emulated upstreams refuse, and why: each rule names its source (docs/local-stack.md, Rules).

The emulators answer these with a 400 in their provider's shape (Bedrock InvokeModel: ValidationException;
the Messages API and Vertex: invalid_request_error), never a 500: a 500 would make the gateway fail over
every region and trip breakers for what is the caller's fault. Exact message texts are the emulator's own
unless a source quotes them (unverified otherwise).
"""

from __future__ import annotations

import json
import re
import typing
from functools import cache
from pathlib import Path
from typing import Any

import gateway

# Anthropic calls the InvokeModel/Converse integration the one "with ARN-versioned model identifiers"
# (https://platform.claude.com/docs/en/build-with-claude/claude-on-amazon-bedrock-legacy.md): ids that end
# in a version suffix, `-v1:0` (and `-v1`, as anthropic.claude-opus-4-6-v1).
ARN_VERSIONED = re.compile(r"-v\d+(:\d+)?$")

# anthropic_version on InvokeModel: bedrock-2023-05-31 is the documented value
# (https://docs.aws.amazon.com/code-library/latest/ug/bedrock-runtime_example_bedrock-runtime_InvokeModel_AnthropicClaude_section.html);
# SDK 2.14 sends 2026-10-21 by default, which "ARN-versioned models ... on Bedrock" do not support
# (the Warning on https://platform.claude.com/docs/en/build-with-claude/claude-on-amazon-bedrock-legacy.md).
BEDROCK_VERSION = "bedrock-2023-05-31"
SDK_VERSION = "2026-10-21"
# The Messages API's header versions: 2023-06-01 is what AWS documents for the Messages API
# (https://docs.aws.amazon.com/bedrock/latest/userguide/inference-messages-api.html); 2026-10-21 is what
# the SDK's Messages-API client sends (anthropic 2.14, lib/bedrock/_mantle.py). Whether Bedrock accepts
# the latter is unverified: the emulator does, as the Claude API does.
MESSAGES_VERSIONS = ("2023-06-01", SDK_VERSION)

# anthropic-beta flags each wire is known to refuse with 400 "invalid beta flag" (or its Claude API
# equivalent), with the source; `models` limits a refusal to model ids containing one of the strings.
REFUSED_BETAS: dict[str, dict[str, dict[str, Any]]] = {
    "bedrock-invoke": {
        "advanced-tool-use-2025-11-20": {
            "source": "https://github.com/anthropics/claude-code/issues/30926 (Bedrock 400 'invalid beta flag'; "
            "Bedrock knows it as tool-search-tool-2025-10-19)",
        },
        "mcp-servers-2025-12-04": {"source": "https://github.com/BerriAI/litellm/pull/19875"},
        "extended-cache-ttl-2025-04-11": {
            "source": "https://github.com/anthropics/claude-code/issues/56595 (400 'invalid beta flag' for a body "
            "whose other two flags Bedrock accepts)",
        },
        "thinking-binding-controls-2026-08-01": {
            "source": "https://github.com/BerriAI/litellm/pull/41203 (400 'invalid beta flag' on Sonnet 4.5)",
            "models": ("claude-sonnet-4-5",),
        },
    },
    "bedrock-messages": {
        "advanced-tool-use-2025-11-20": {
            "source": "LiteLLM's mapping renames it for Bedrock's Messages API: https://github.com/BerriAI/litellm/"
            "blob/030dd40a93c32960c90c2213d706a7b8a8614fb8/litellm/anthropic_beta_headers_config.json",
        },
        "mcp-servers-2025-12-04": {
            "source": "the LiteLLM mapping above drops it for every provider; https://github.com/BerriAI/litellm/pull/19875",
        },
    },
    "vertex": {
        "advanced-tool-use-2025-11-20": {
            "source": "Claude Code's CHANGELOG (tool search off on Vertex 'to avoid an unsupported beta header "
            "error'), https://github.com/anthropics/claude-code; LiteLLM's mapping renames it for Vertex",
        },
        "mcp-servers-2025-12-04": {"source": "the LiteLLM mapping above drops it for every provider"},
    },
}

# Every Messages API field whose type the Anthropic reference fixes (https://docs.anthropic.com/en/api/messages)
# and that the gateway passes through without reading; a value of the wrong type is the caller's 400.
_NUMBER = (int, float)


def _list_of(kind: type | tuple[type, ...]) -> Any:
    return lambda v: isinstance(v, list) and all(isinstance(x, kind) and not isinstance(x, bool) for x in v)


def _number_between(low: float, high: float) -> Any:
    return lambda v: isinstance(v, _NUMBER) and not isinstance(v, bool) and low <= v <= high


_RANGE_BEDROCK, _RANGE_ANTHROPIC = "expected type: Number, range: [0, 1]", "Input should be a number from 0 to 1"
FIELD_RULES: dict[str, tuple[Any, str, str]] = {
    # field: (check, Bedrock's JSON-schema words, the Claude API's words)
    "max_tokens": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "expected type: Integer, minimum: 1",
        "Input should be a valid integer greater than or equal to 1",
    ),
    "messages": (
        lambda v: isinstance(v, list) and bool(v) and all(isinstance(m, dict) for m in v),
        "expected type: JSONArray of JSONObject, minimum item count: 1",
        "Input should be a non-empty list of message objects",
    ),
    "system": (
        lambda v: isinstance(v, (str, list)),
        "expected type: String or JSONArray",
        "Input should be a valid string or list",
    ),
    "stop_sequences": (_list_of(str), "expected type: JSONArray of String", "Input should be a valid list of strings"),
    "temperature": (_number_between(0, 1), _RANGE_BEDROCK, _RANGE_ANTHROPIC),
    "top_p": (_number_between(0, 1), _RANGE_BEDROCK, _RANGE_ANTHROPIC),
    "top_k": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "expected type: Integer, minimum: 0",
        "Input should be a valid integer greater than or equal to 0",
    ),
    "stream": (lambda v: isinstance(v, bool), "expected type: Boolean", "Input should be a valid boolean"),
    "tools": (_list_of(dict), "expected type: JSONArray of JSONObject", "Input should be a valid list of objects"),
    "tool_choice": (lambda v: isinstance(v, dict), "expected type: JSONObject", "Input should be a valid object"),
    "metadata": (lambda v: isinstance(v, dict), "expected type: JSONObject", "Input should be a valid object"),
    "thinking": (lambda v: isinstance(v, dict), "expected type: JSONObject", "Input should be a valid object"),
    "anthropic_beta": (_list_of(str), "expected type: JSONArray of String", "Input should be a valid list of strings"),
}


def wrong_field(body: dict[str, Any], *, style: str) -> str | None:
    """The first present field whose value has the wrong type, in the provider's words; None if none.
    `style`: "bedrock" (InvokeModel's JSON-schema validator) or "anthropic" (the Messages API, Vertex)."""
    for name, (check, bedrock_words, anthropic_words) in FIELD_RULES.items():
        if name in body and not check(body[name]):
            if style == "bedrock":
                return f"#/{name}: {bedrock_words}"
            return f"{name}: {anthropic_words}"
    return None


def refused_beta(wire: str, flags: list[str], model_id: str) -> str | None:
    """The first flag this wire refuses for this model: one it is known to refuse, or a name no Claude
    release knows (the Claude API answers those 'Unsupported beta header', https://docs.anthropic.com/en/api/beta-headers;
    Bedrock 'invalid beta flag', https://github.com/anthropics/claude-code/issues/49648)."""
    refused = REFUSED_BETAS[wire]
    for flag in flags:
        rule = refused.get(flag)
        if rule is not None and any(m in model_id for m in rule.get("models", ("",))):
            return flag
        if flag not in known_betas():
            return flag
    return None


@cache
def known_betas() -> frozenset[str]:
    """Every flag name some Claude release or upstream knows: the installed SDK's AnthropicBetaParam
    literals, the names the gateway's betas.json lists for any wire, and the refusal table above."""
    names: set[str] = set()
    try:
        from anthropic.types.anthropic_beta_param import AnthropicBetaParam

        for arg in typing.get_args(AnthropicBetaParam):
            names.update(a for a in typing.get_args(arg) if isinstance(a, str))
    except ImportError:  # the SDK is a dependency of gatewayctl; without it only the lists below count
        pass
    betas = Path(gateway.__file__).resolve().parent / "betas.json"
    for wire in json.loads(betas.read_text())["wires"].values():
        accepted = wire.get("accepted")
        if isinstance(accepted, list):
            names.update(accepted)
        renamed = wire.get("renamed") or {}
        names.update(renamed)
        names.update(renamed.values())
    for table in REFUSED_BETAS.values():
        names.update(table)
    return frozenset(names)


def beta_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]
