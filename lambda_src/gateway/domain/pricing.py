"""What a request may cost and what it did cost, in tokens and USD, from the catalog's prices.

A reservation must bound the real usage from above, whatever the script and content (docs/tenancy.md,
Reservations): input at most the body's bytes outside image and document data (no tokenizer makes more
tokens than bytes) plus what the body does not show, each image at the model's largest image, capped
by the model's context window (the upstream refuses a longer prompt), which is also the only bound a
PDF has; output at most max_tokens; all of it at the dearest rate the request can incur.
"""

from __future__ import annotations

from gateway.domain import quota
from gateway.domain.catalog import Catalog
from gateway.models.catalog import CatalogEntry
from gateway.models.exchange import MessagesRequest, PolicyDecision, Usage
from gateway.models.quota import Amount

# The beta that lifts a model's context window to a million tokens (Sonnet 4.x, Opus 4.6).
LONG_CONTEXT_BETA = "context-1m-2025-08-07"
LONG_CONTEXT = 1_000_000


def cost(
    catalog: Catalog, decision: PolicyDecision, provider: str, usage: Usage, region: str | None = None
) -> float:
    return decision.entry.cost_usd(
        decision.residency,
        provider,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_input_tokens,
        cache_write_tokens=usage.cache_creation_input_tokens,
        geo_uplift=catalog.geo_uplift,
        region=region,
    )


def context_cap(entry: CatalogEntry, request: MessagesRequest) -> int | None:
    window = entry.context_window
    if window is not None and LONG_CONTEXT_BETA in request.beta:
        window = max(window, LONG_CONTEXT)
    return window


def input_ceiling(entry: CatalogEntry, request: MessagesRequest) -> int:
    """Input tokens the request can be billed at most (input, cache reads and cache writes together)."""
    if request.input_bound is None:  # a request built without a body walk (tests, benchmarks)
        return request.estimated_input_tokens
    cap = context_cap(entry, request)
    bound = request.input_bound + request.images * entry.max_image_tokens
    if request.unbounded_documents and cap is not None:
        return cap
    return bound if cap is None else min(bound, cap)


def ceiling(
    catalog: Catalog, decision: PolicyDecision, request: MessagesRequest, input_floor: int = 0
) -> tuple[Usage, float]:
    """One reservation's worth: the input ceiling (at least `input_floor`) plus max_tokens, priced at the
    dearest rate: as cache writes where the request asks for a cache breakpoint, with the regional uplift."""
    entry = decision.entry
    inputs = max(input_ceiling(entry, request), input_floor)
    outputs = decision.max_tokens or request.max_tokens
    usage = Usage(inputs, outputs, 0, 0)
    usd = entry.cost_usd(
        "us",  # a geographic profile: the regional uplift applies, as it does on Vertex's regional endpoints
        "bedrock",
        input_tokens=0 if request.cache_ttl else inputs,
        output_tokens=outputs,
        cache_write_tokens=inputs if request.cache_ttl == "5m" else 0,
        cache_write_1h_tokens=inputs if request.cache_ttl == "1h" else 0,
        geo_uplift=catalog.geo_uplift,
    )
    return usage, usd


def reservation_amount(usage: Usage, cost_usd: float) -> Amount:
    return Amount(requests=1, tokens=usage.input_tokens + usage.output_tokens, usd_micros=quota.usd_micros(cost_usd))


def charged_amount(usage: Usage, cost_usd: float) -> Amount:
    """What a settled request counts against the limits (cache reads are not counted, as the API does)."""
    tokens = quota.billable_tokens(usage.input_tokens, usage.output_tokens, usage.cache_creation_input_tokens)
    return Amount(requests=1, tokens=tokens, usd_micros=quota.usd_micros(cost_usd))
