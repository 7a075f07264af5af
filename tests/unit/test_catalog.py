"""The model catalog: every id form resolves to one entry; prices, lifecycles and residencies are data."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import anthropic
import pytest
from gateway.domain.catalog import Catalog, base_data, load_catalog, merged


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
    entry = load_catalog().lookup(model)
    assert entry is not None and entry.alias == "claude-sonnet-4-5"


def test_unknown_model() -> None:
    assert load_catalog().lookup("gpt-4") is None


def test_cost_carries_the_geo_uplift_only_on_geographic_bedrock_profiles() -> None:
    catalog = load_catalog()
    entry = catalog.lookup("claude-haiku-4-5")
    kw = dict(input_tokens=1_000_000, output_tokens=1_000_000, geo_uplift=catalog.geo_uplift)
    assert entry.cost_usd("global", "bedrock", **kw) == pytest.approx(6.0)
    assert entry.cost_usd("us", "bedrock", **kw) == pytest.approx(6.6)
    assert entry.cost_usd("us", "vertex", **kw) == pytest.approx(6.0)


def test_vertex_regional_endpoints_carry_the_uplift_and_older_models_none() -> None:
    catalog = load_catalog()
    kw = dict(input_tokens=1_000_000, output_tokens=0, geo_uplift=catalog.geo_uplift)
    sonnet = catalog.lookup("claude-sonnet-4-6")
    assert sonnet.cost_usd("us", "vertex", region="us-east5", **kw) == pytest.approx(3.3)
    assert sonnet.cost_usd("us", "vertex", region="global", **kw) == pytest.approx(3.0)
    older = catalog.lookup("claude-sonnet-4")
    assert older.cost_usd("us", "bedrock", **kw) == pytest.approx(3.0)


def test_cache_writes_are_priced_at_their_duration_and_reads_at_their_rate() -> None:
    entry = load_catalog().lookup("claude-sonnet-4-6")
    cost = entry.cost_usd(
        "global",
        "bedrock",
        input_tokens=0,
        output_tokens=0,
        cache_read_tokens=1_000_000,
        cache_write_tokens=1_000_000,
        cache_write_1h_tokens=1_000_000,
        geo_uplift=0.1,
    )
    assert cost == pytest.approx(0.30 + 3.75 + 6.0)


def test_a_long_prompt_bills_the_whole_request_at_its_rates() -> None:
    entry = load_catalog().lookup("claude-haiku-5-5")
    threshold = entry.prices.long_prompt_above
    assert threshold is not None and entry.prices.long_prompt is not None
    short = entry.cost_usd("global", "bedrock", input_tokens=threshold, output_tokens=1000, geo_uplift=0.1)
    long = entry.cost_usd("global", "bedrock", input_tokens=threshold + 1, output_tokens=1000, geo_uplift=0.1)
    rates = entry.prices.long_prompt
    assert long == pytest.approx(((threshold + 1) * rates.input + 1000 * rates.output) / 1e6)
    assert long > short * 4


def raw_model(name: str, **changes) -> dict:
    return {**copy.deepcopy(next(m for m in base_data()["models"] if m["alias"] == name)), **changes}


def test_an_id_naming_two_entries_is_refused() -> None:
    first = raw_model("claude-haiku-4-5")
    second = raw_model("claude-sonnet-4-6")
    second["bedrock"] = {**second["bedrock"], "profiles": {"us": first["bedrock"]["profiles"]["us"]}}
    with pytest.raises(ValueError, match="names two entries"):
        Catalog.from_dict({"regional_uplift": 0.1, "models": [first, second]})


def test_max_output_tokens_is_data_and_bad_values_are_refused() -> None:
    assert all(entry.max_output_tokens and entry.max_output_tokens >= 32_000 for entry in load_catalog().entries)
    raw = raw_model("claude-haiku-4-5")
    del raw["max_output_tokens"]
    assert Catalog.from_dict({"regional_uplift": 0.1, "models": [raw]}).entries[0].max_output_tokens is None
    for bad in (0, -5, True, 1.5, "64000"):
        with pytest.raises(ValueError, match="max_output_tokens"):
            Catalog.from_dict({"regional_uplift": 0.1, "models": [{**raw, "max_output_tokens": bad}]})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tier": "giant"}, "unknown tier"),
        ({"bedrock": {"api": "converse"}}, "bedrock.api"),
        ({"lifecycle": {"status": "retired"}}, "needs lifecycle.replacement"),
        ({"lifecycle": {"status": "deprecated"}}, "needs lifecycle.end_of_life"),
        ({"lifecycle": {"status": "deprecated", "end_of_life": "30/11/2026"}}, "YYYY-MM-DD"),
        ({"lifecycle": {"status": "retired", "replacement": "claude-nothing"}}, "not in the catalog"),
        ({"source": ""}, "source"),
        ({"prices": {"input": -1}}, "prices.input"),
        ({"colour": "blue"}, "unknown fields"),
    ],
)
def test_bad_entries_are_refused_naming_the_field(change: dict, message: str) -> None:
    raw = raw_model("claude-haiku-4-5")
    for key, value in change.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(raw.get(key), dict) else value
    with pytest.raises(ValueError, match=message):
        Catalog.from_dict({"regional_uplift": 0.1, "models": [raw]})


def test_every_entry_has_a_source_and_a_lifecycle_that_resolves() -> None:
    catalog = load_catalog()
    for entry in catalog.entries:
        assert entry.source.startswith(("http", "anthropic ", "npm ")), entry.alias
        if entry.lifecycle.status == "retired":
            replacement = catalog.lookup(entry.lifecycle.replacement or "")
            assert replacement is not None and replacement.lifecycle.status == "active", entry.alias


def test_the_catalog_knows_every_model_the_official_sdk_lists() -> None:
    """Every Claude model id the installed `anthropic` SDK names resolves to an entry (or is retired there)."""
    from typing import get_args

    from anthropic.types.model_param import ModelParam

    literals = [m for arg in get_args(ModelParam) for m in get_args(arg) if isinstance(m, str)]
    assert literals, f"no model literals found in anthropic {anthropic.__version__}"
    catalog = load_catalog()
    missing = [m for m in literals if catalog.lookup(m) is None and "preview" not in m]
    assert missing == []


def test_the_sdk_deprecation_dates_match_the_catalog() -> None:
    import anthropic._data.deprecated_models as deprecated

    text = Path(deprecated.__file__).read_text()
    entry = load_catalog().lookup("claude-sonnet-4-5")
    assert entry.lifecycle.status == "deprecated" and entry.lifecycle.end_of_life == "2026-11-30"
    assert "claude-sonnet-4-5" in text and "November 30th, 2026" in text


def test_overrides_add_change_and_disable_models() -> None:
    base = base_data()
    new = raw_model("claude-haiku-4-5", alias="claude-haiku-4-5-tuned")
    new["anthropic_ids"] = ["claude-haiku-4-5-tuned"]
    profile = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc"
    new["bedrock"] = {"api": "invoke", "profiles": {"us": profile}}
    del new["vertex"]
    overrides = {
        "models": {
            "claude-sonnet-4-6": {"prices": {"input": 2.5}, "bedrock": {"profiles": {"us": "us.custom-sonnet"}}},
            "claude-opus-4-1": None,
            "claude-haiku-4-5-tuned": new,
        }
    }
    catalog = load_catalog(None, json.dumps(overrides))
    sonnet = catalog.lookup("claude-sonnet-4-6")
    assert sonnet.prices.input == 2.5 and sonnet.prices.output == 15.0
    assert sonnet.bedrock_profiles["us"] == "us.custom-sonnet" and "eu" in sonnet.bedrock_profiles
    assert catalog.lookup("claude-opus-4-1") is None
    assert catalog.lookup("claude-haiku-4-5-tuned").bedrock_profiles["us"].endswith("/abc")
    assert base == base_data()  # the shipped data is never changed by an environment's overrides


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model": {}}, "unknown keys"),
        ({"models": {"claude-nothing": None}}, "cannot disable"),
        ({"models": {"claude-new": {"tier": "opus", "source": "https://example.com/new"}}}, "prices must be an object"),
        ({"models": {"claude-sonnet-4-6": "off"}}, "must be an object or null"),
    ],
)
def test_bad_overrides_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Catalog.from_dict(merged(base_data(), overrides))
