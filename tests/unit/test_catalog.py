"""The model catalog: every id form resolves to one entry; prices and residencies are data."""

from __future__ import annotations

import pytest
from gateway.domain.catalog import Catalog, load_catalog


@pytest.mark.parametrize(
    "model",
    [
        "claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929",
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "claude-sonnet-4-5@20250929",
    ],
)
def test_every_id_form_resolves_to_the_same_entry(model: str) -> None:
    entry = load_catalog().resolve(model)
    assert entry is not None and entry.alias == "claude-sonnet-4-5"


def test_unknown_model() -> None:
    assert load_catalog().resolve("gpt-4") is None


def test_cost_carries_the_geo_uplift_only_on_geographic_bedrock_profiles() -> None:
    catalog = load_catalog()
    entry = catalog.resolve("claude-haiku-4-5")
    kw = dict(input_tokens=1_000_000, output_tokens=1_000_000, geo_uplift=catalog.geo_uplift)
    assert entry.cost_usd("global", "bedrock", **kw) == pytest.approx(6.0)
    assert entry.cost_usd("us", "bedrock", **kw) == pytest.approx(6.6)
    assert entry.cost_usd("us", "vertex", **kw) == pytest.approx(6.0)


def test_an_id_naming_two_entries_is_refused() -> None:
    raw = load_catalog()
    data = {"geo_uplift": 0.1, "models": []}
    for entry in raw.entries[:2]:
        data["models"].append(
            {
                "alias": entry.alias,
                "anthropic_id": entry.anthropic_id,
                "tier": entry.tier,
                "bedrock_model_id": entry.bedrock_model_id,
                "bedrock_profiles": {"us": "same-profile"},
                "vertex_model_id": entry.vertex_model_id,
                "prices": vars(entry.prices),
            }
        )
    with pytest.raises(ValueError, match="names two entries"):
        Catalog.from_dict(data)


def test_every_model_has_its_max_output_tokens_and_bad_values_are_refused() -> None:
    assert all(entry.max_output_tokens == 64_000 for entry in load_catalog().entries)
    entry = load_catalog().entries[0]
    raw = {
        "alias": entry.alias,
        "anthropic_id": entry.anthropic_id,
        "tier": entry.tier,
        "bedrock_model_id": entry.bedrock_model_id,
        "bedrock_profiles": {"us": "p"},
        "vertex_model_id": entry.vertex_model_id,
        "prices": vars(entry.prices),
    }
    assert Catalog.from_dict({"geo_uplift": 0.1, "models": [raw]}).entries[0].max_output_tokens is None
    for bad in (0, -5, True, 1.5, "64000"):
        with pytest.raises(ValueError, match="max_output_tokens"):
            Catalog.from_dict({"geo_uplift": 0.1, "models": [{**raw, "max_output_tokens": bad}]})
