"""gatewayctl's admin library, the parts without I/O: command-line limits and the DynamoDB item codec."""

from __future__ import annotations

import pytest
from gateway.adapters.dynamo_tenancy import from_item, to_item

from gatewayctl.admin import validation
from gatewayctl.output import CommandError


def test_parse_limits():
    assert validation.parse_limits(None) is None
    assert validation.parse_limits(
        ["requests_per_minute=60", "usd_per_month = 12.5", "tokens_per_day=none"]
    ) == {
        "requests_per_minute": "60",
        "usd_per_month": "12.5",
        "tokens_per_day": None,
    }


@pytest.mark.parametrize("pair", ["requests_per_minute", "=5", "tokens_per_day="])
def test_parse_limits_refuses_malformed_pairs(pair):
    with pytest.raises(CommandError, match="NAME=VALUE"):
        validation.parse_limits([pair])


def test_item_codec_round_trip():
    item = {
        "pk": "TENANT#acme",
        "limits": {"requests_per_minute": 60, "usd_per_month": 12.5},
        "allowed_models": ["claude-haiku-4-5"],
        "roles": [],
        "consent_required": True,
        "notice": None,
    }
    encoded = to_item(item)
    assert encoded["limits"] == {"M": {"requests_per_minute": {"N": "60"}, "usd_per_month": {"N": "12.5"}}}
    assert encoded["consent_required"] == {"BOOL": True}
    assert from_item(encoded) == item
    assert from_item({"s": {"SS": ["b", "a"]}, "n": {"N": "3.0"}}) == {"s": ["a", "b"], "n": 3}
    with pytest.raises(ValueError):
        to_item({"x": float("nan")})


def test_model_ids_normalise_to_aliases_and_unknown_models_are_refused():
    assert validation.models(["us.anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5"]) == [
        "claude-haiku-4-5"
    ]
    with pytest.raises(CommandError, match="unknown model"):
        validation.models(["claude-3-nonexistent"])
