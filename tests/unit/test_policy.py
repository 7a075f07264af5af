"""The permission model and policy decisions (gateway.domain.policy): plain values, no I/O."""

from __future__ import annotations

import pytest
from gateway.domain import policy
from gateway.domain.catalog import load_catalog
from gateway.domain.errors import NotFoundError, PermissionDeniedError
from gateway.domain.pseudonym import new_secret
from gateway.models import tenancy as tenancy_model
from gateway.models import tenant_items
from gateway.models.exchange import MessagesRequest

CATALOG = load_catalog()


def request(
    model="claude-sonnet-4-5", *, max_tokens=1024, tools=False, images=False, body=None
) -> MessagesRequest:
    body = body if body is not None else {"model": model, "max_tokens": max_tokens, "messages": []}
    return MessagesRequest(
        model=model,
        max_tokens=max_tokens,
        stream=False,
        uses_tools=tools,
        has_images=images,
        estimated_input_tokens=10,
        body=body,
        body_sha256="0" * 64,
    )


def tenant(**kwargs) -> tenancy_model.TenantConfig:
    return tenancy_model.TenantConfig(tenant_id="acme", name="Acme", **kwargs)


def principal(*roles: str, **kwargs) -> tenancy_model.PrincipalRecord:
    return tenancy_model.PrincipalRecord(
        id="sub-1", tenant_id="acme", roles=roles, pseudonym_secret=new_secret(), **kwargs
    )


def decide(t, p, r):
    return policy.decide(t, p, r, CATALOG)


# Given each default role and each capability, When the request asks for it, Then DESIGN.md section 3 holds.
CAPABILITIES = {
    "haiku": request("claude-haiku-4-5"),
    "sonnet": request("claude-sonnet-4-5"),
    "opus": request("claude-opus-4-5"),
    "tools": request("claude-sonnet-4-5", tools=True),
    "vision": request("claude-sonnet-4-5", images=True),
    "high_tokens": request("claude-sonnet-4-5", max_tokens=4097),
}
EXPECTED = {
    "viewer": set(),
    "basic_user": {"haiku", "sonnet"},
    "power_user": {"haiku", "sonnet", "opus", "tools", "vision", "high_tokens"},
    "admin": {"haiku", "sonnet", "opus", "tools", "vision", "high_tokens"},
}


@pytest.mark.parametrize("role", sorted(EXPECTED))
@pytest.mark.parametrize("capability", sorted(CAPABILITIES))
def test_rbac_matrix(role, capability):
    allowed = capability in EXPECTED[role]
    if allowed:
        decision = decide(tenant(), principal(role), CAPABILITIES[capability])
        assert decision.entry is not None and decision.clamped == ()
    elif capability == "high_tokens" and "write" in policy.permissions_of((role,), {}):
        # Without high_tokens, max_tokens is clamped to 4096, not refused (docs/tenancy.md).
        decision = decide(tenant(), principal(role), CAPABILITIES[capability])
        assert decision.max_tokens == 4096 and decision.body["max_tokens"] == 4096
    else:
        with pytest.raises(PermissionDeniedError):
            decide(tenant(), principal(role), CAPABILITIES[capability])


def test_max_tokens_is_clamped_to_exactly_4096_without_high_tokens():
    assert decide(tenant(), principal("basic_user"), request(max_tokens=4096)).clamped == ()
    decision = decide(tenant(), principal("basic_user"), request(max_tokens=32000))
    assert (decision.max_tokens, decision.body["max_tokens"]) == (4096, 4096)
    assert decision.clamped == ("max_tokens=32000->4096",)
    assert decide(tenant(), principal("power_user"), request(max_tokens=32000)).max_tokens == 32000


def test_a_thinking_budget_above_the_clamped_value_is_lowered_or_thinking_turned_off():
    def thinking_request(max_tokens, budget):
        body = {"model": "claude-sonnet-4-5", "max_tokens": max_tokens, "messages": [],
                "thinking": {"type": "enabled", "budget_tokens": budget}}  # fmt: skip
        return request(max_tokens=max_tokens, body=body)

    decision = decide(tenant(), principal("basic_user"), thinking_request(32000, 16000))
    assert decision.body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "thinking.budget_tokens=16000->2048" in decision.clamped
    kept = decide(tenant(), principal("basic_user"), thinking_request(32000, 2000))
    assert kept.body["thinking"]["budget_tokens"] == 2000
    capped = tenant(limits=tenancy_model.Limits(max_tokens_per_request=1500))
    decision = decide(capped, principal("power_user"), thinking_request(32000, 16000))
    assert decision.body["thinking"] == {"type": "disabled"} and decision.max_tokens == 1500


def test_max_tokens_per_request_limit_tenant_and_principal_clamp():
    t = tenant(limits=tenancy_model.Limits(max_tokens_per_request=2000))
    assert decide(t, principal("power_user"), request(max_tokens=2001)).max_tokens == 2000
    p = principal("power_user", limits=tenancy_model.Limits(max_tokens_per_request=100))
    decision = decide(tenant(), p, request(max_tokens=101))
    assert decision.max_tokens == 100 and decision.clamped == ("max_tokens=101->100",)
    assert decide(tenant(), p, request(max_tokens=100)).clamped == ()
    # the request's own body is never changed; the decision's body carries the clamp
    r = request(max_tokens=101)
    decide(tenant(), p, r)
    assert r.body["max_tokens"] == 101


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        (None, "NOTICE"),
        ("You are terse.", "You are terse.\n\nNOTICE"),
        (
            [{"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}}],
            [
                {"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "NOTICE"},
            ],
        ),
    ],
)
def test_notice_is_appended_to_the_system_prompt_string_or_blocks(system, expected):
    body = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    if system is not None:
        body["system"] = system
    original = repr(body)
    decision = decide(tenant(notice="NOTICE"), principal("basic_user"), request(body=body))
    assert decision.body["system"] == expected
    assert repr(body) == original  # the parsed request is untouched
    assert {k: v for k, v in decision.body.items() if k != "system"} == {
        k: v for k, v in body.items() if k != "system"
    }


def test_without_a_notice_the_body_is_forwarded_as_is():
    r = request()
    assert decide(tenant(), principal("basic_user"), r).body is r.body


def test_allowed_models_follow_roles_allow_list_and_residency():
    def aliases(t, role):
        perms = policy.permissions_of((role,), t.roles)
        return {e.alias for e in policy.allowed_models(t, perms, CATALOG)}

    assert aliases(tenant(), "viewer") == set()
    servable_in_us = {
        e.alias for e in CATALOG.entries if e.tier in ("haiku", "sonnet") and "us" in e.bedrock_profiles
    }
    assert {"claude-haiku-4-5", "claude-sonnet-4-6", "claude-sonnet-4-5"} <= aliases(tenant(), "basic_user")
    # Retired models are never offered (claude-sonnet-4 has a us profile but is retired).
    assert aliases(tenant(), "basic_user") == servable_in_us - {"claude-sonnet-4"}
    assert "claude-opus-4-5" in aliases(tenant(), "power_user")
    assert aliases(tenant(allowed_models=("claude-opus-4-5",)), "basic_user") == set()
    assert "claude-opus-4-5" not in aliases(tenant(residency="apac"), "admin")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"requests_per_minute": -1}, "negative"),
        ({"usd_per_month": -0.5}, "negative"),
        ({"tokens_per_day": 1.5}, "whole"),
        ({"tokens_per_day": "many"}, "number"),
        ({"nonsense": 1}, "unknown"),
    ],
)
def test_limits_validation(raw, message):
    with pytest.raises(ValueError, match=message):
        tenancy_model.Limits.from_mapping(raw)


def test_limits_parse_and_round_trip():
    limits = tenancy_model.Limits.from_mapping(
        {"requests_per_minute": "60", "usd_per_month": "12.5", "tokens_per_day": None}
    )
    assert limits == tenancy_model.Limits(requests_per_minute=60, usd_per_month=12.5)
    assert tenancy_model.Limits.from_mapping(limits.to_mapping()) == limits
    assert tenancy_model.Limits().empty and not limits.empty


def test_items_parse_into_configs():
    t = tenant_items.tenant_from_item(
        {
            "tenant_id": "acme",
            "residency": "eu",
            "limits": {"requests_per_minute": 5},
            "consent_required": True,
        },
        [{"sk": "ROLE#analyst", "permissions": ["read", "write", "haiku"]}],
    )
    assert t.residency == "eu" and t.limits.requests_per_minute == 5 and t.consent_required
    assert t.roles == {"analyst": frozenset({"read", "write", "haiku"})}
    p = tenant_items.principal_from_item(
        {"principal_id": "s", "tenant_id": "acme", "roles": ["viewer"], "limits": {}}
    )
    assert p.limits == tenancy_model.Limits() and p.roles == ("viewer",)
    assert policy.principal_limits(t, p) == tenancy_model.Limits()
    p2 = tenant_items.principal_from_item({"principal_id": "s", "tenant_id": "acme", "roles": []})
    t2 = tenancy_model.TenantConfig("acme", "Acme", principal_limits=tenancy_model.Limits(requests_per_minute=3))
    assert policy.principal_limits(t2, p2).requests_per_minute == 3


def test_policy_refusals_are_marked_and_bad_input_is_not():
    """The pipeline audits `policy_refusal` errors as `denied`; an unknown model is bad input (`error`)."""

    def refusal(t, p, r) -> Exception:
        with pytest.raises(Exception) as caught:
            decide(t, p, r)
        return caught.value

    not_here = refusal(tenant(residency="apac"), principal("admin"), request("claude-opus-4-5"))
    assert isinstance(not_here, NotFoundError) and not_here.status == 404
    assert not_here.policy_refusal
    assert refusal(tenant(), principal("viewer"), request()).policy_refusal
    unknown = refusal(tenant(), principal("admin"), request("gpt-4"))
    assert isinstance(unknown, NotFoundError) and not unknown.policy_refusal
