"""`gatewayctl models` and `gatewayctl models check` through the real CLI entry point, against this worker's
local stack: the emulated Bedrock control plane (ListFoundationModels, ListInferenceProfiles) and Vertex's
publisher-model get, with their switches (a hidden profile, a LEGACY model, a hidden Vertex model)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway.domain import policy
from gateway.domain.catalog import load_catalog

from gatewayctl.local.stack import LocalStack
from gatewayctl.local.state import write_state


@pytest.fixture
def catalogs(local_stack: LocalStack) -> Iterator[LocalStack]:
    """The stack, every emulated provider offering the whole base catalog before and after the test."""
    local_stack.reset_catalogs()
    yield local_stack
    local_stack.reset_catalogs()


@pytest.fixture
def state_dir(local_stack: LocalStack, tmp_path: Path) -> Path:
    """A .local/ whose stack.json is this worker's stack, as `local up` writes it."""
    write_state(tmp_path / "stack.json", local_stack.state())
    return tmp_path


def _check(run_gatewayctl, state_dir: Path, *args: str):
    result = run_gatewayctl(state_dir, "--json", "models", "check", *args)
    return result, json.loads(result.stdout or "[]")


def _expected_bedrock_routes(stack: LocalStack) -> int:
    catalog = load_catalog()
    return sum(
        len(regions)
        for residency, regions in stack.options.bedrock_regions.items()
        for e in catalog.entries
        if residency in e.bedrock_profiles and e.bedrock_model_id and e.lifecycle.status != "retired"
    )


def test_a_healthy_local_stack_passes_the_check(catalogs, state_dir, run_gatewayctl):
    # Given the emulators offering what the catalog names
    # When the operator checks the catalog
    result, rows = _check(run_gatewayctl, state_dir)

    # Then every route is served and the command exits 0
    assert result.returncode == 0, result.stderr
    assert {r["status"] for r in rows} == {"ok"}
    bedrock = [r for r in rows if r["provider"] == "bedrock"]
    vertex = [r for r in rows if r["provider"] == "vertex"]
    assert len(bedrock) == _expected_bedrock_routes(catalogs)
    assert {r["region"] for r in bedrock} == {r for rs in catalogs.options.bedrock_regions.values() for r in rs}
    assert {r["region"] for r in vertex} == set(catalogs.options.vertex_regions.values())
    assert "routes: " in result.stderr and "0 that cannot work" in result.stderr


def test_a_hidden_profile_fails_the_check_naming_the_route(catalogs, state_dir, run_gatewayctl):
    # Given us-west-2 no longer offers the us profile of Sonnet 4.6
    profile = load_catalog().lookup("claude-sonnet-4-6").bedrock_profiles["us"]
    catalogs.hide_profile(profile, "us-west-2")

    # When checked (the table, as a person reads it)
    result = run_gatewayctl(state_dir, "models", "check", "--problems")

    # Then the command exits 1 and names that one route
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if "error" in line]
    assert line.split()[:5] == ["us", "bedrock", "us-west-2", "claude-sonnet-4-6", "invoke"]
    assert f"inference profile {profile} is not offered in us-west-2 (ListInferenceProfiles)" in line
    assert "1 that cannot work" in result.stderr
    # and the same model's route in us-east-1 still works
    _, rows = _check(run_gatewayctl, state_dir)
    east = [r for r in rows if r["model"] == "claude-sonnet-4-6" and r["region"] == "us-east-1"]
    assert [r["status"] for r in east] == ["ok"]


def test_a_legacy_base_model_is_a_warning_with_its_dates(catalogs, state_dir, run_gatewayctl):
    entry = load_catalog().lookup("claude-sonnet-4-5")
    catalogs.mark_legacy(
        entry.bedrock_model_id, legacy_time="2026-01-15T00:00:00Z", end_of_life="2026-12-01T00:00:00Z"
    )

    result, rows = _check(run_gatewayctl, state_dir)

    assert result.returncode == 0, result.stderr
    flagged = [r for r in rows if r["status"] != "ok"]
    assert flagged and {r["model"] for r in flagged} == {"claude-sonnet-4-5"}
    assert {r["status"] for r in flagged} == {"warning"}
    assert all(r["provider"] == "bedrock" for r in flagged)
    assert flagged[0]["detail"] == (
        f"Bedrock lists {entry.bedrock_model_id} as LEGACY in {flagged[0]['region']} "
        "(legacy since 2026-01-15, end of life 2026-12-01)"
    )


def test_a_vertex_model_the_region_does_not_offer_fails_the_check(catalogs, state_dir, run_gatewayctl):
    catalogs.hide_vertex_model("claude-opus-4-6")

    result, rows = _check(run_gatewayctl, state_dir, "--problems")

    assert result.returncode == 1
    assert {(r["provider"], r["model"], r["status"]) for r in rows} == {("vertex", "claude-opus-4-6", "error")}
    assert {r["region"] for r in rows} == set(catalogs.options.vertex_regions.values())


def test_the_check_uses_the_environment_catalog_overrides(catalogs, state_dir, run_gatewayctl):
    # Given the environment adds a model whose profile Bedrock does not offer, and disables Opus 4.5
    state = json.loads((state_dir / "stack.json").read_text())
    added = {
        "tier": "haiku",
        "prices": {"input": 1, "output": 5, "cache_read": 0.1, "cache_write_5m": 1.25, "cache_write_1h": 2},
        "bedrock": {"api": "invoke", "model_id": "anthropic.claude-private-v1:0", "profiles": {"us": "us.private"}},
        "source": "https://example.com/contract",
    }
    overrides = {"models": {"claude-private": added, "claude-opus-4-5": None}}
    state["gateway_env"]["CATALOG_OVERRIDES"] = json.dumps(overrides)
    write_state(state_dir / "stack.json", state)

    result, rows = _check(run_gatewayctl, state_dir)

    assert result.returncode == 1
    assert not any(r["model"] == "claude-opus-4-5" for r in rows)
    private = [r for r in rows if r["model"] == "claude-private"]
    assert {r["region"] for r in private} == set(catalogs.options.bedrock_regions["us"])
    assert all(r["status"] == "error" and "us.private is not offered" in r["detail"] for r in private)

    # and overrides the loader refuses are one clear error, not a traceback
    state["gateway_env"]["CATALOG_OVERRIDES"] = json.dumps({"models": {"claude-sonnet-4-6": None}})
    write_state(state_dir / "stack.json", state)
    refused = run_gatewayctl(state_dir, "models", "check")
    assert refused.returncode == 1
    assert refused.stderr.startswith("gatewayctl: error: the gateway's CATALOG_OVERRIDES are invalid: catalog: ")


def test_models_for_a_tenant_role_is_the_runtime_policy(local_stack, state_dir, run_gatewayctl, make_tenant):
    tenant_id = make_tenant("us", allowed_models=["claude-sonnet-4-5", "claude-opus-4-6", "claude-haiku-4-5"])

    basic = run_gatewayctl(state_dir, "--json", "models", "--tenant", tenant_id, "--role", "basic_user")
    power = run_gatewayctl(state_dir, "--json", "models", "--tenant", tenant_id, "--role", "power_user")

    assert basic.returncode == 0, basic.stderr
    rows = json.loads(basic.stdout)
    # basic_user has no opus; the allow-list leaves out everything else
    assert [r["model"] for r in rows] == ["claude-haiku-4-5", "claude-sonnet-4-5"]
    sonnet = rows[1]
    entry = load_catalog().lookup("claude-sonnet-4-5")
    assert sonnet["lifecycle"] == "deprecated" and sonnet["end_of_life"] == entry.lifecycle.end_of_life
    assert sonnet["replacement"] == entry.lifecycle.replacement and sonnet["bedrock_api"] == "invoke"
    assert sonnet["providers"] == ["bedrock:us-east-1", "bedrock:us-west-2", "vertex:us-east5"]
    assert [r["model"] for r in json.loads(power.stdout)] == [
        "claude-haiku-4-5",
        "claude-sonnet-4-5",
        "claude-opus-4-6",
    ]
    assert set(policy.DEFAULT_ROLES["power_user"]) >= {"opus"}


def test_models_refuses_an_unknown_role_or_a_lone_tenant(local_stack, state_dir, run_gatewayctl, make_tenant):
    tenant_id = make_tenant("us")
    unknown = run_gatewayctl(state_dir, "models", "--tenant", tenant_id, "--role", "wizard")
    assert unknown.returncode == 1 and "unknown role(s) ['wizard']" in unknown.stderr
    lone = run_gatewayctl(state_dir, "models", "--tenant", tenant_id)
    assert lone.returncode == 2 and "--tenant and --role go together" in lone.stderr


def test_models_for_the_signed_in_caller(local_stack, state_dir, run_gatewayctl, make_tenant, make_user):
    # Given a basic user of an eu tenant, signed in through the CLI
    tenant_id = make_tenant("eu")
    user = make_user(tenant_id, ("basic_user",))
    login = run_gatewayctl(state_dir, "login", "--username", user.username, "--password", user.password)
    assert login.returncode == 0, login.stderr

    # When they list their models
    result = run_gatewayctl(state_dir, "--json", "models")

    # Then they get what GET /v1/models gives them, with each model's lifecycle and Bedrock API
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    import anthropic

    client = anthropic.Anthropic(base_url=local_stack.endpoint, auth_token=user.token, max_retries=0)
    assert [r["id"] for r in rows] == [m.id for m in client.models.list()]
    assert rows and {r["tier"] for r in rows} <= {"haiku", "sonnet"}
    for row in rows:
        entry = load_catalog().lookup(row["model"])
        assert row["lifecycle"] == entry.lifecycle.status and row["bedrock_api"] == entry.bedrock_api
