"""Generated hostile requests against the app (in process): whatever comes in, no 5xx, every error in
the Anthropic shape, no model call and no reservation kept for a request the gateway refuses, and every
body forwarded to a model is JSON an upstream can read.

The domain is real (tenancy, policy, parsing, the failover chain); the ports at the edge are in-memory:
a tenant store with principals of every built-in role (and one with tools but not vision), a recording
quota, a recording audit sink, and upstreams that answer every call. PROPERTY_EXAMPLES sets the count
(default 5,000).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway.app import create_app
from gateway.domain.catalog import load_catalog
from gateway.domain.pseudonym import new_secret
from gateway.domain.tenancy import TenancyService
from gateway.models.tenancy import PrincipalRecord, TenantConfig
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.runtime_fakes import FakeAudit, FakeQuota, FakeUpstream, context_header
from tests.unit.runtime_fakes import settings as gateway_settings

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "5000"))
ROLES = ("viewer", "basic_user", "power_user", "admin", "coder")
CATALOG = load_catalog()
MODELS = [e.alias for e in CATALOG.entries] + [CATALOG.entries[0].anthropic_id, "gpt-4", "", "claude-sonnet-4"]


class MemoryTenants:
    """The tenants table in memory: one tenant, a principal per role (sub = the role's name)."""

    def __init__(self) -> None:
        self.config = TenantConfig(
            "t1", "T1", residency="us", roles={"coder": frozenset({"read", "write", "haiku", "sonnet", "tools"})}
        )
        self.principals = {role: PrincipalRecord(role, "t1", (role,), pseudonym_secret=new_secret()) for role in ROLES}

    async def principal(self, principal_id: str) -> PrincipalRecord | None:
        return self.principals.get(principal_id)

    async def tenant(self, tenant_id: str) -> TenantConfig | None:
        return self.config if tenant_id == "t1" else None


class World:
    def __init__(self) -> None:
        self.quota = FakeQuota()
        self.audit = FakeAudit()
        self.upstreams = [
            FakeUpstream("bedrock", "us-east-1"),
            FakeUpstream("bedrock", "us-west-2"),
            FakeUpstream("vertex", "us-east5"),
        ]
        self.app = create_app(
            gateway_settings(max_body_bytes=256 * 1024),
            tenancy=TenancyService(MemoryTenants(), CATALOG, ttl_seconds=60),
            quota=self.quota,
            audit=self.audit,
            upstreams={"us": self.upstreams},
        )

    @property
    def calls(self) -> list[dict[str, Any]]:
        return [call for up in self.upstreams for call in up.calls]


# -- generated requests ------------------------------------------------------------------------------


def mostly(good, bad, *, out_of: int = 6):
    """`good` all but one time in `out_of`: enough well-formed requests get far enough to reach a model."""
    return st.integers(1, out_of).flatmap(lambda n: bad if n == out_of else good)


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
BLOCK_TYPES = [
    "text",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "server_tool_use",
    "thinking",
    "search_result",
    "web_search_tool_result",
    "mcp_tool_use",
    "container_upload",
    "hologram",
    "",
]
block = st.fixed_dictionaries(
    {"type": st.sampled_from(BLOCK_TYPES) | values},
    optional={"text": st.text(max_size=40) | values, "source": values, "content": values, "cache_control": values},
)
content = mostly(st.text(max_size=60) | st.lists(block, min_size=1, max_size=3), values)
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]) | values, "content": content})
body = st.fixed_dictionaries(
    {
        "model": mostly(st.sampled_from(MODELS), values),
        "max_tokens": mostly(st.integers(1, 8192), st.integers(-5, 200_000) | values),
        "messages": mostly(st.lists(message, min_size=1, max_size=3), values),
    },
    optional={
        "stream": st.booleans() | values,
        "system": st.text(max_size=20) | st.lists(block, max_size=2) | values,
        "tools": st.lists(
            st.fixed_dictionaries({"name": st.text(max_size=8)}, optional={"type": st.text(max_size=12)}), max_size=2
        )
        | values,
        "tool_choice": values,
        "mcp_servers": values,
        "metadata": st.dictionaries(st.text(max_size=8), values, max_size=2) | values,
        "thinking": st.fixed_dictionaries(
            {
                "type": st.sampled_from(["enabled", "adaptive", "disabled"]),
                "budget_tokens": st.integers(-5, 200_000) | values,
            }
        )
        | values,
        "temperature": values,
        "stop_sequences": values,
        "container": values,
        "unknown_field": values,
    },
)
# Byte-level damage no JSON encoder would produce: lone surrogates, huge and non-finite numbers,
# duplicated keys, deep nesting, invalid UTF-8, truncation.
DAMAGE = [
    lambda raw: raw.replace(b'"messages"', b'"x": "\\ud800", "messages"', 1),
    lambda raw: raw.replace(b'"messages"', b'"x": "\\udfff\\ud800", "messages"', 1),
    lambda raw: raw.replace(b'"messages"', b'"x": ' + b"9" * 5000 + b', "messages"', 1),
    lambda raw: raw.replace(b'"messages"', b'"x": 1e400, "messages"', 1),
    lambda raw: raw.replace(b'"messages"', b'"x": -1e400, "messages"', 1),
    lambda raw: raw.replace(b'"messages"', b'"x": NaN, "messages"', 1),
    lambda raw: raw.replace(b'"messages"', b'"model": "claude-haiku-4-5", "messages"', 1),
    lambda raw: raw.replace(b'"messages"', b'"x": ' + b"[" * 3000 + b"]" * 3000 + b', "messages"', 1),
    lambda raw: raw + b"\xff",
    lambda raw: raw[: len(raw) // 2],
    lambda raw: b"\xef\xbb\xbf" + raw,
]
clean = st.tuples(body, st.booleans()).map(lambda t: json.dumps(t[0], ensure_ascii=t[1]).encode())
damaged = st.tuples(body, st.lists(st.sampled_from(range(len(DAMAGE))), min_size=1, max_size=2)).map(
    lambda t: _damaged(json.dumps(t[0]).encode(), t[1])
)
raw_bodies = mostly(
    clean,
    st.one_of(damaged, values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200)),
    out_of=3,
)
ROUTES = [("POST", "/v1/messages")] * 6 + [
    ("POST", "/v1/messages/count_tokens"), ("GET", "/v1/models"), ("GET", "/v1/usage"),
    ("POST", "/v1/nothing"), ("GET", "/v1/messages"), ("DELETE", "/v1/models"), ("POST", "/v1/messages?beta=true"),
]  # fmt: skip
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
headers = st.fixed_dictionaries(
    {"x-amzn-request-context": mostly(st.sampled_from(ROLES).map(lambda role: context_header(sub=role)), header_text)},
    optional={
        "anthropic-beta": header_text
        | st.lists(
            st.sampled_from(
                ["interleaved-thinking-2025-05-14", "claude-code-20250219", "nope-1", "context-1m-2025-08-07", ""]
            ),
            max_size=4,
        ).map(",".join),
        "anthropic-version": header_text,
        "content-type": st.sampled_from(["application/json", "text/plain", "", "application/json; charset=latin-1"]),
        "user-agent": header_text,
        "x-forwarded-for": header_text,
    },
)


def _damaged(raw: bytes, which: list[int]) -> bytes:
    for index in which:
        raw = DAMAGE[index](raw)
    return raw


# -- the property ------------------------------------------------------------------------------------

WORLD = World()
LOOP = asyncio.new_event_loop()
# What the run tried and got, for docs/faults.md (written to bench/results/property.json at the end).
FIGURES: Counter[str] = Counter({"5xx": 0, "refused with a model call": 0, "refused keeping a reservation": 0})
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "property.json"


@pytest.fixture(scope="module", autouse=True)
def figures():
    yield
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(dict(sorted(FIGURES.items())), indent=2) + "\n")
    print(f"\nproperty suite figures: {dict(sorted(FIGURES.items()))}")


def send(method: str, path: str, raw: bytes, hdrs: dict[str, str]) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=WORLD.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            response = await client.request(method, path, content=raw if method != "GET" else None, headers=hdrs)
        await WORLD.app.state.background.drain()
        return response

    return LOOP.run_until_complete(go())


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(route=st.sampled_from(ROUTES), raw=raw_bodies, hdrs=headers)
def test_no_input_gets_a_5xx_and_every_refusal_calls_no_model_and_keeps_nothing(route, raw, hdrs) -> None:
    method, path = route
    calls, reserved = len(WORLD.calls), len(WORLD.quota.reserved)
    kept_before = len(WORLD.quota.kept)

    response = send(method, path, raw, hdrs)
    FIGURES["requests"] += 1
    FIGURES[f"{response.status_code // 100}xx"] += 1
    FIGURES["model calls"] += len(WORLD.calls) - calls
    if response.status_code >= 400:
        FIGURES["refused with a model call"] += len(WORLD.calls) > calls
        FIGURES["refused keeping a reservation"] += len(WORLD.quota.kept) > kept_before

    assert response.status_code < 500, (response.status_code, response.text[:300])
    assert response.headers.get("request-id")
    new_calls = WORLD.calls[calls:]
    for call in new_calls:  # what reached a model is JSON any upstream can read
        json.dumps(call["body"], allow_nan=False, ensure_ascii=False).encode("utf-8")
    if response.status_code >= 400:
        error = response.json()
        assert error["type"] == "error" and isinstance(error["error"]["type"], str), error
        assert isinstance(error["error"]["message"], str) and error["error"]["message"]
        assert new_calls == [], "a refused request reached a model"
        assert len(WORLD.quota.kept) == kept_before, "a refused request kept a reservation"
    elif path.startswith("/v1/messages") and method == "POST" and "count_tokens" not in path:
        assert len(new_calls) == 1 and len(WORLD.quota.reserved) == reserved + 1


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
