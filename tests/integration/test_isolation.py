"""Tenant isolation through the app: a principal of tenant A can never consume, read or change tenant B's
quota or usage, whatever it puts in headers, query or body."""

from __future__ import annotations

import json
import uuid

import anthropic
import httpx
import pytest

pytestmark = pytest.mark.filterwarnings("ignore:The model:DeprecationWarning")
HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def two_tenants(local_stack, make_tenant, make_user):
    a = make_tenant(limits={"requests_per_minute": 1000}, prefix="iso-a")
    b = make_tenant(limits={"requests_per_minute": 2}, prefix="iso-b")
    user_a = make_user(a, ["power_user"])
    user_b = make_user(b, ["power_user"])
    return a, b, user_a, user_b


def usage(local_stack, token: str, **kwargs) -> dict:
    response = httpx.get(
        f"{local_stack.endpoint}/v1/usage",
        headers={"authorization": f"Bearer {token}", **kwargs.pop("headers", {})},
        **kwargs,
    )
    assert response.status_code == 200, response.text
    return response.json()


def minute_requests(report: dict) -> int:
    return next(w for w in report["windows"] if w["window"] == "minute")["requests"]["used"]


def test_naming_another_tenant_in_headers_or_body_charges_and_shows_only_your_own(
    local_stack, two_tenants, gateway_client
):
    a, b, user_a, user_b = two_tenants
    forged_context = json.dumps(
        {"requestId": "x", "authorizer": {"claims": {"sub": user_b.sub, "scope": "gateway/invoke"}}}
    )
    spoof = {
        "x-tenant-id": b,
        "anthropic-tenant": b,
        "x-amzn-request-context": forged_context,  # the authorizer replaces any client-supplied context
    }
    client_a = gateway_client(user_a.token)
    for _ in range(3):
        client_a.messages.create(
            model="claude-haiku-4-5",
            max_tokens=16,
            messages=HELLO,
            metadata={"user_id": user_b.sub},
            extra_headers=spoof,
            extra_body={"tenant_id": b},
        )

    # B's window is untouched (its budget of 2 would have been exhausted by A's 3 requests otherwise)
    report_b = usage(local_stack, user_b.token)
    assert report_b["tenant_id"] == b and minute_requests(report_b) == 0
    report_a = usage(local_stack, user_a.token, headers=spoof, params={"tenant_id": b, "tenant": b})
    assert report_a["tenant_id"] == a and minute_requests(report_a) == 3
    gateway_client(user_b.token).messages.create(model="claude-haiku-4-5", max_tokens=16, messages=HELLO)


def test_one_tenants_exhausted_quota_does_not_block_another(local_stack, two_tenants, gateway_client):
    a, b, user_a, user_b = two_tenants
    client_b = gateway_client(user_b.token)
    for _ in range(2):
        client_b.messages.create(model="claude-haiku-4-5", max_tokens=16, messages=HELLO)
    with pytest.raises(anthropic.RateLimitError):
        client_b.messages.create(model="claude-haiku-4-5", max_tokens=16, messages=HELLO)
    assert (
        gateway_client(user_a.token)
        .messages.create(model="claude-haiku-4-5", max_tokens=16, messages=HELLO)
        .usage.output_tokens
        > 0
    )
    assert minute_requests(usage(local_stack, user_a.token)) == 1


def test_usage_cannot_be_changed_over_http(local_stack, two_tenants):
    a, b, user_a, user_b = two_tenants
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = httpx.request(
            method,
            f"{local_stack.endpoint}/v1/usage",
            headers={"authorization": f"Bearer {user_a.token}"},
            json={"tenant_id": b, "requests": 0},
        )
        assert response.status_code in (404, 405), (method, response.status_code)
    assert minute_requests(usage(local_stack, user_b.token)) == 0


def test_a_principal_unknown_to_the_gateway_sees_nothing(local_stack, backing_stack):
    # a valid Cognito user that no tenant registered
    user = backing_stack.create_user(f"stray-{uuid.uuid4().hex[:8]}@example.com")
    token = backing_stack.access_token(user.username, user.password)
    response = httpx.get(f"{local_stack.endpoint}/v1/usage", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"
