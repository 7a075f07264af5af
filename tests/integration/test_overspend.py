"""Zero overspend whatever the script: 200 concurrent requests against request, token and USD limits
that the requests' real usage would fit 50 times, in ASCII, BMP CJK and CJK extension B text, streamed
and not. The emulated model bills CJK at about a token per character and extension B at two
(gatewayctl/local/replies.py), so a reservation estimated per character would be overrun; the
gateway's bound (UTF-8 bytes) must hold. The admitted count and the usable share are printed."""

from __future__ import annotations

import asyncio
import time

import anthropic
import pytest
from gateway.domain import quota
from gateway.domain.catalog import load_catalog

from tests.integration.test_quota import away_from_minute_end, counters, eventually, serialize_moto_dynamodb

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:The model:DeprecationWarning")]
MODEL = "claude-haiku-4-5"
MAX_TOKENS = 64
TEXTS = {
    "ascii": "the quick brown fox jumps over the lazy dog " * 12,
    "bmp-cjk": "日本語の文章と漢字の長い文です" * 12,
    "extension-b": "𠀀𠀁𠀂𠀃𠀄𠀅𠀆𠀇" * 20,
}


def cost(usage) -> int:
    catalog = load_catalog()
    usd = catalog.lookup(MODEL).cost_usd(
        "us",
        "bedrock",
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        geo_uplift=catalog.geo_uplift,
    )
    return quota.usd_micros(usd)


async def ask(client: anthropic.AsyncAnthropic, text: str, stream: bool):
    """The final message (with its usage), or the refusal."""
    request = {"model": MODEL, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": text}]}
    try:
        if stream:
            async with client.messages.stream(**request) as events:
                return await events.get_final_message()
        return await client.messages.create(**request)
    except anthropic.RateLimitError as exc:
        return exc


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("script", sorted(TEXTS))
def test_200_concurrent_requests_against_limits_that_fit_50_never_overspend(
    local_stack, target, make_tenant, make_user, script: str, stream: bool
) -> None:
    serialize_moto_dynamodb()
    text = TEXTS[script]
    # What one such request really costs, measured on a tenant without limits.
    probe_user = make_user(make_tenant(prefix="probe"))

    async def probe():
        async with anthropic.AsyncAnthropic(
            base_url=local_stack.endpoint, auth_token=probe_user.token, max_retries=0
        ) as c:
            return await ask(c, text, stream)

    one = asyncio.run(probe())
    real_tokens = one.usage.input_tokens + one.usage.output_tokens
    limits = {
        "requests_per_minute": 50,
        "tokens_per_minute": 50 * real_tokens,
        "usd_per_month": 50 * cost(one.usage) / 1e6,
    }
    tenant_id = make_tenant(limits=limits, prefix=f"over-{script}")
    user = make_user(tenant_id, ["basic_user"])
    away_from_minute_end()
    started = time.time()

    async def run() -> list:
        # A guard against a hang, not a speed check: 200 at once through one local stack can take a
        # minute on a loaded 2-core machine.
        async with anthropic.AsyncAnthropic(
            base_url=local_stack.endpoint, auth_token=user.token, max_retries=0, timeout=300
        ) as client:
            return await asyncio.gather(*(ask(client, text, stream) for _ in range(200)))

    results = asyncio.run(run())
    served = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, anthropic.RateLimitError)]
    assert len(served) + len(refused) == 200 and served

    used = {
        "requests": len(served),
        "tokens": sum(m.usage.input_tokens + m.usage.output_tokens for m in served),
        "usd_micros": sum(cost(m.usage) for m in served),
    }
    assert eventually(lambda: counters(target, tenant_id, "minute", started), used) == used
    # Zero overspend on every counter.
    assert used["requests"] <= 50
    assert used["tokens"] <= limits["tokens_per_minute"]
    assert used["usd_micros"] <= quota.usd_micros(limits["usd_per_month"])
    share = used["tokens"] / limits["tokens_per_minute"]
    mode = "stream" if stream else "whole"
    print(f"{script} {mode}: admitted {len(served)} of 200, usable share of the token budget {share:.0%}")
