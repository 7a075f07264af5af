"""What a request may cost and what it did cost, in tokens and USD, from the catalog's prices."""

from __future__ import annotations

from gateway.domain import quota
from gateway.domain.catalog import Catalog
from gateway.models.exchange import MessagesRequest, PolicyDecision, Usage
from gateway.models.quota import Amount


def cost(catalog: Catalog, decision: PolicyDecision, provider: str, usage: Usage) -> float:
    return decision.entry.cost_usd(
        decision.residency,
        provider,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_input_tokens,
        cache_write_tokens=usage.cache_creation_input_tokens,
        geo_uplift=catalog.geo_uplift,
    )


def ceiling(
    catalog: Catalog, decision: PolicyDecision, request: MessagesRequest, input_floor: int = 0
) -> tuple[Usage, float]:
    """One reservation's worth: the estimated input (at least `input_floor`) plus max_tokens, priced on
    Bedrock's geographic profiles, the dearest upstream."""
    usage = Usage(max(request.estimated_input_tokens, input_floor), request.max_tokens, 0, 0)
    return usage, cost(catalog, decision, "bedrock", usage)


def reservation_amount(usage: Usage, cost_usd: float) -> Amount:
    return Amount(requests=1, tokens=usage.input_tokens + usage.output_tokens, usd_micros=quota.usd_micros(cost_usd))


def charged_amount(usage: Usage, cost_usd: float) -> Amount:
    """What a settled request counts against the limits (cache reads are not counted, as the API does)."""
    tokens = quota.billable_tokens(usage.input_tokens, usage.output_tokens, usage.cache_creation_input_tokens)
    return Amount(requests=1, tokens=tokens, usd_micros=quota.usd_micros(cost_usd))
