"""A model catalog entry and its prices: the values `catalog.json` holds (domain/catalog.py loads them)."""

from __future__ import annotations

from dataclasses import dataclass

RESIDENCIES = ("us", "eu", "apac", "global")
TIERS = ("haiku", "sonnet", "opus")


@dataclass(frozen=True)
class Prices:
    """USD per million tokens."""

    input: float
    output: float
    cache_read: float
    cache_write: float


@dataclass(frozen=True)
class CatalogEntry:
    alias: str
    anthropic_id: str
    tier: str
    bedrock_model_id: str
    bedrock_profiles: dict[str, str]  # residency -> inference profile id
    vertex_model_id: str
    prices: Prices
    # The model's largest max_tokens (None: only the gateway-wide ceiling applies).
    max_output_tokens: int | None = None

    @property
    def ids(self) -> tuple[str, ...]:
        return (
            self.alias,
            self.anthropic_id,
            self.bedrock_model_id,
            self.vertex_model_id,
            *self.bedrock_profiles.values(),
        )

    def cost_usd(
        self,
        residency: str,
        provider: str,
        *,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        geo_uplift: float,
    ) -> float:
        p = self.prices
        cost = (
            input_tokens * p.input
            + output_tokens * p.output
            + cache_read_tokens * p.cache_read
            + cache_write_tokens * p.cache_write
        ) / 1_000_000
        # Geographic cross-region profiles are priced above the global ones.
        if provider == "bedrock" and residency != "global":
            cost *= 1 + geo_uplift
        return round(cost, 8)
