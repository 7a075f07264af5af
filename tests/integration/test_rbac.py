"""The RBAC matrix through the app: each default role x each capability, over HTTP with the anthropic SDK
and real Cognito tokens, allowed or refused exactly as docs/tenancy.md says (max_tokens above 4096 without
high_tokens is clamped, not refused)."""

from __future__ import annotations

import base64
import uuid

import anthropic
import pytest

# A 1x1 PNG.
PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360f8"
        "cf00000301010018dd8db40000000049454e44ae426082"
    )
).decode()
TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
HELLO = [{"role": "user", "content": "Hello"}]
pytestmark = pytest.mark.filterwarnings("ignore:The model:DeprecationWarning")

# capability -> messages.create arguments
CAPABILITIES = {
    "haiku": {"model": "claude-haiku-4-5", "max_tokens": 32, "messages": HELLO},
    "sonnet": {"model": "claude-sonnet-4-5", "max_tokens": 32, "messages": HELLO},
    "opus": {"model": "claude-opus-4-5", "max_tokens": 32, "messages": HELLO},
    "tools": {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": HELLO, "tools": [TOOL]},
    "vision": {
        "model": "claude-haiku-4-5",
        "max_tokens": 32,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}},
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    },
    "more_than_4096_tokens": {"model": "claude-haiku-4-5", "max_tokens": 4097, "messages": HELLO},
}
ALLOWED = {
    "viewer": set(),
    "basic_user": {"haiku", "sonnet"},
    "power_user": set(CAPABILITIES),
    "admin": set(CAPABILITIES),
}


@pytest.fixture(scope="module")
def role_clients(local_stack):
    tenant_id = f"rbac-{uuid.uuid4().hex[:10]}"
    local_stack.create_tenant(tenant_id, residency="us")
    clients = {}
    for role in ALLOWED:
        user = local_stack.add_user(tenant_id, f"{role}-{uuid.uuid4().hex[:8]}@example.com", [role])
        token = local_stack.access_token(user.username, user.password)
        clients[role] = anthropic.Anthropic(base_url=local_stack.endpoint, auth_token=token, max_retries=0)
    return clients


@pytest.mark.parametrize("role", sorted(ALLOWED))
@pytest.mark.parametrize("capability", sorted(CAPABILITIES))
def test_rbac_matrix(role_clients, role, capability):
    client = role_clients[role]
    if capability in ALLOWED[role]:
        message = client.messages.create(**CAPABILITIES[capability])
        assert message.type == "message" and message.usage.output_tokens > 0
    elif capability == "more_than_4096_tokens" and role != "viewer":
        raw = client.messages.with_raw_response.create(**CAPABILITIES[capability])
        assert raw.parse().type == "message"
        assert raw.headers["x-gateway-clamped"] == "max_tokens=4097->4096"
    else:
        with pytest.raises(anthropic.PermissionDeniedError) as refused:
            client.messages.create(**CAPABILITIES[capability])
        assert refused.value.status_code == 403
        assert refused.value.body["error"]["type"] == "permission_error"


def test_models_list_follows_the_role(role_clients):
    def ids(role):
        return {m.id for m in role_clients[role].models.list()}

    assert ids("viewer") == set()
    assert "claude-opus-4-5-20251101" not in ids("basic_user")
    assert "claude-haiku-4-5-20251001" in ids("basic_user")
    assert "claude-opus-4-5-20251101" in ids("power_user")


def test_a_role_change_takes_effect_for_new_principal_lookups(local_stack, target):
    from gatewayctl import admin as tenancy

    tenant_id = f"rbac-{uuid.uuid4().hex[:10]}"
    local_stack.create_tenant(tenant_id)
    tenancy.define_role(target, tenant_id, "opus_only", ["write", "opus"])
    user = local_stack.add_user(tenant_id, f"o-{uuid.uuid4().hex[:8]}@example.com", ["opus_only"])
    client = anthropic.Anthropic(
        base_url=local_stack.endpoint,
        auth_token=local_stack.access_token(user.username, user.password),
        max_retries=0,
    )
    assert client.messages.create(**CAPABILITIES["opus"]).usage.output_tokens > 0
    with pytest.raises(anthropic.PermissionDeniedError):
        client.messages.create(**CAPABILITIES["haiku"])
