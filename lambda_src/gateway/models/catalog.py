"""A model catalog entry and its prices: the values `catalog.json` holds (domain/catalog.py loads them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

RESIDENCIES = ("us", "eu", "jp", "apac", "au", "global")
TIERS = ("haiku", "sonnet", "opus")
# Which Bedrock API serves a model: InvokeModel (models with an ARN-versioned id) or the Messages-API
# endpoint (/anthropic/v1/messages, every model from Opus 4.7 on).
BEDROCK_APIS = ("invoke", "messages")
STATUSES = ("active", "deprecated", "retired")


@dataclass(frozen=True)
class Rates:
    """USD per million tokens."""

    input: float
    output: float
    cache_read: float
    cache_write_5m: float
    cache_write_1h: float


@dataclass(frozen=True)
class Prices(Rates):
    # Some models bill the whole request at other rates once the prompt passes a size.
    long_prompt: Rates | None = None
    long_prompt_above: int | None = None  # prompt tokens (input + cache read + cache writes)

    def rates_for(self, prompt_tokens: int) -> Rates:
        above = self.long_prompt_above
        if self.long_prompt is not None and above is not None and prompt_tokens > above:
            return self.long_prompt
        return self

    @property
    def dearest(self) -> Rates:
        return self.long_prompt or self


@dataclass(frozen=True)
class Lifecycle:
    status: Literal["active", "deprecated", "retired"] = "active"
    end_of_life: str | None = None  # YYYY-MM-DD: when a deprecated model retires (or a retired one did)
    replacement: str | None = None  # an alias


@dataclass(frozen=True)
class CatalogEntry:
    alias: str
    tier: str
    prices: Prices
    # Claude API ids: the alias and, for models that have one, the dated snapshot id (the last one).
    anthropic_ids: tuple[str, ...] = ()
    bedrock_model_id: str | None = None
    bedrock_api: Literal["invoke", "messages"] = "invoke"
    bedrock_profiles: dict[str, str] = field(default_factory=dict)  # residency -> inference profile id
    vertex_model_id: str | None = None
    vertex_regions: tuple[str, ...] = ()  # where Google documents the model (informative)
    max_output_tokens: int | None = None  # None: only the gateway-wide ceiling applies
    context_window: int | None = None
    # The most tokens one image can cost on this model (its images are resized below this).
    max_image_tokens: int = 4784
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    # The 10% regional premium of Bedrock's geographic profiles and Vertex's regional endpoints.
    regional_uplift: bool = True
    source: str = ""

    @property
    def anthropic_id(self) -> str:
        """The id the Claude API reports for the model: the dated snapshot where one exists."""
        return self.anthropic_ids[-1] if self.anthropic_ids else self.alias

    @property
    def ids(self) -> tuple[str, ...]:
        ids = [self.alias, *self.anthropic_ids, *self.bedrock_profiles.values()]
        ids += [i for i in (self.bedrock_model_id, self.vertex_model_id) if i]
        return tuple(dict.fromkeys(ids))

    def cost_usd(
        self,
        residency: str,
        provider: str,
        *,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
        geo_uplift: float,
        region: str | None = None,
    ) -> float:
        """`cache_write_tokens` at the 5-minute rate, `cache_write_1h_tokens` at the 1-hour rate. `region`:
        the Vertex region that served it (its regional endpoints carry the uplift, `global` does not)."""
        prompt = input_tokens + cache_read_tokens + cache_write_tokens + cache_write_1h_tokens
        p = self.prices.rates_for(prompt)
        cost = (
            input_tokens * p.input
            + output_tokens * p.output
            + cache_read_tokens * p.cache_read
            + cache_write_tokens * p.cache_write_5m
            + cache_write_1h_tokens * p.cache_write_1h
        ) / 1_000_000
        if self.regional_uplift and _regional(provider, residency, region):
            cost *= 1 + geo_uplift
        return round(cost, 8)


def _regional(provider: str, residency: str, region: str | None) -> bool:
    if provider == "bedrock":
        return residency != "global"
    if provider == "vertex":
        return region is not None and region != "global"
    return False
