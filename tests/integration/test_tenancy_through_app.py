"""Tenant policy through the app: suspension, consent, the system-prompt notice, residency, machine
clients made by `gatewayctl client create`, and a crash between reservation and settlement."""

from __future__ import annotations

import time

import anthropic
import pytest

from gatewayctl import admin as tenancy

pytestmark = pytest.mark.filterwarnings("ignore:The model:DeprecationWarning")
HELLO = [{"role": "user", "content": "Hello"}]
MODEL = "claude-haiku-4-5"


def last_bedrock_request(stack) -> dict:
    return stack.recent_requests("bedrock")[-1]


def test_suspended_tenants_and_removed_principals_are_refused(
    local_stack, target, make_tenant, make_user, gateway_client
):
    tenant_id = make_tenant(prefix="susp")
    tenancy.suspend_tenant(target, tenant_id)  # before the gateway has cached anything of it
    user = make_user(tenant_id, ["admin"])
    with pytest.raises(anthropic.PermissionDeniedError, match="suspended"):
        gateway_client(user.token).messages.create(model=MODEL, max_tokens=16, messages=HELLO)

    other = make_tenant(prefix="rm")
    gone = make_user(other, ["admin"])
    tenancy.remove_principal(target, gone.sub)
    with pytest.raises(anthropic.PermissionDeniedError):
        gateway_client(gone.token).messages.create(model=MODEL, max_tokens=16, messages=HELLO)


def test_consent_is_required_where_the_tenant_asks(local_stack, make_tenant, make_user, gateway_client):
    tenant_id = make_tenant(prefix="consent", consent_required=True)
    without = make_user(tenant_id, ["basic_user"], consent=False)
    with pytest.raises(anthropic.PermissionDeniedError, match="consent"):
        gateway_client(without.token).messages.create(model=MODEL, max_tokens=16, messages=HELLO)
    with_consent = make_user(tenant_id, ["basic_user"], consent=True)
    assert gateway_client(with_consent.token).messages.create(model=MODEL, max_tokens=16, messages=HELLO)


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        (None, "NOTICE: processed under the DPA."),
        ("Be brief.", "Be brief.\n\nNOTICE: processed under the DPA."),
        (
            [{"type": "text", "text": "Be brief."}],
            [
                {"type": "text", "text": "Be brief."},
                {"type": "text", "text": "NOTICE: processed under the DPA."},
            ],
        ),
    ],
)
def test_the_tenants_notice_reaches_the_model_in_the_system_prompt(
    local_stack, faults, make_tenant, make_user, gateway_client, system, expected
):
    tenant_id = make_tenant(prefix="notice", notice="NOTICE: processed under the DPA.")
    user = make_user(tenant_id, ["basic_user"])
    extra = {} if system is None else {"system": system}
    gateway_client(user.token).messages.create(model=MODEL, max_tokens=16, messages=HELLO, **extra)
    sent = last_bedrock_request(faults)["body"]
    assert sent["system"] == expected
    assert sent["messages"] == HELLO


def test_without_a_notice_the_system_prompt_is_untouched(
    local_stack, faults, make_tenant, make_user, gateway_client
):
    tenant_id = make_tenant(prefix="plain")
    user = make_user(tenant_id, ["basic_user"])
    gateway_client(user.token).messages.create(model=MODEL, max_tokens=16, messages=HELLO, system="Be brief.")
    assert last_bedrock_request(faults)["body"]["system"] == "Be brief."


def test_residency_picks_the_upstream_chain(local_stack, faults, make_tenant, make_user, gateway_client):
    tenant_id = make_tenant("eu", prefix="eu")
    user = make_user(tenant_id, ["basic_user"])
    gateway_client(user.token).messages.create(model=MODEL, max_tokens=16, messages=HELLO)
    sent = last_bedrock_request(faults)
    assert sent["target"] in local_stack.options.bedrock_regions["eu"]
    assert sent["model_id"].startswith("eu.")


def test_a_machine_client_created_by_gatewayctl_calls_with_its_roles(local_stack, target, make_tenant):
    tenant_id = make_tenant(prefix="m2m")
    made = tenancy.create_client(target, tenant_id, "batch", ["basic_user"])
    token = local_stack.machine_token(made["client_id"], made["client_secret"])
    client = anthropic.Anthropic(base_url=local_stack.endpoint, auth_token=token, max_retries=0)
    assert client.messages.create(model=MODEL, max_tokens=16, messages=HELLO).usage.output_tokens > 0
    with pytest.raises(anthropic.PermissionDeniedError):
        client.messages.create(model="claude-opus-4-5", max_tokens=16, messages=HELLO)


def test_a_crash_after_reservation_leaves_the_counters_over_the_true_usage(
    local_stack, target, faults, make_tenant, make_user, gateway_client
):
    """The app reserves, then dies before settling (simulated: settlement and release never run).
    The counters keep the whole reservation: above what the upstream really used, never below."""
    from gateway.domain import quota

    app_quota = local_stack.authorizer.app.state.quota
    tenant_id = make_tenant(prefix="crash")
    user = make_user(tenant_id, ["basic_user"])

    async def lost(*_args, **_kwargs):
        return None

    original = (app_quota.settle, app_quota.release)
    app_quota.settle = app_quota.release = lost  # the process "dies" between reservation and settlement
    try:
        served = gateway_client(user.token).messages.create(model=MODEL, max_tokens=300, messages=HELLO)
        time.sleep(0.5)  # the background step that would have settled has run (and done nothing)
    finally:
        app_quota.settle, app_quota.release = original
    item = target.client("dynamodb").get_item(
        TableName=target.outputs["UsageTableName"],
        Key={"pk": {"S": quota.tenant_pk(tenant_id)}, "sk": {"S": quota.window_at("day", time.time()).sk}},
        ConsistentRead=True,
    )["Item"]
    true_tokens = served.usage.input_tokens + served.usage.output_tokens
    assert int(item["tokens"]["N"]) >= 300 > true_tokens
    assert int(item["requests"]["N"]) == 1
