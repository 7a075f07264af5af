"""What a platform team runs after its first deploy (and CI runs against a local stack): the official SDK
creates and streams; a capability the role lacks is a 403 and a tiny limit a 429; every one of those
requests is in the audit trail, found with `gatewayctl audit query`; `audit verify` finds the trail
complete for them; `gdpr export` returns the caller's records and nobody else's."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import anthropic
import pytest

from tests.e2e.conftest import Suite
from tests.e2e.deployment import Deployment, wait_for

HELLO = [{"role": "user", "content": "Say hello"}]
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
RECORDS_SQL = (
    "SELECT request_id, event_type, status, error_type, quota_decision, principal "
    "FROM audit_events WHERE tenant = ? AND dt >= ? AND dt <= ?"
)


def client(deployment: Deployment, token: str) -> anthropic.Anthropic:
    # No SDK retries: a 429 or a 5xx must reach the test as it was answered.
    return anthropic.Anthropic(base_url=deployment.endpoint, auth_token=token, max_retries=0, timeout=120)


def create(deployment: Deployment, token: str, **kwargs: Any) -> Any:
    with client(deployment, token) as sdk:
        return sdk.messages.create(model=deployment.config.model, max_tokens=32, messages=HELLO, **kwargs)


@pytest.fixture(scope="module")
def traffic(deployment: Deployment, suite: Suite) -> dict[str, Any]:
    """One request of each kind, made once for the audit, verify and export tests; their request ids."""
    ids: dict[str, Any] = {"day_from": dt.datetime.now(dt.UTC).date()}
    ids["created"] = create(deployment, suite.writer.token)._request_id
    with client(deployment, suite.writer.token) as sdk, sdk.messages.stream(
        model=deployment.config.model, max_tokens=32, messages=HELLO
    ) as stream:
        stream.get_final_message()
        ids["streamed"] = stream.response.headers["request-id"]
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        create(deployment, suite.writer.token, tools=[WEATHER])
    ids["refused"] = refused.value.request_id
    ids["served_limited"], ids["limited_error"] = limited_pair(deployment, suite)
    ids["limited"] = ids["limited_error"].request_id
    ids["day_to"] = dt.datetime.now(dt.UTC).date()
    return ids


def limited_pair(deployment: Deployment, suite: Suite) -> tuple[str, anthropic.RateLimitError]:
    """(a served request id, the 429) for the client allowed one request a minute. A third request
    covers a minute that ended between the first two (each minute is a new budget)."""
    served = None
    for _ in range(3):
        try:
            served = create(deployment, suite.limited.token)._request_id
        except anthropic.RateLimitError as exc:
            assert served is not None, "the first request of a new client was refused"
            return served, exc
    raise AssertionError("three requests in a row fitted a limit of one a minute")


def test_create_with_the_official_sdk(deployment: Deployment, suite: Suite) -> None:
    message = create(deployment, suite.writer.token)

    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message._request_id


def test_stream_with_the_official_sdk(deployment: Deployment, suite: Suite) -> None:
    with client(deployment, suite.writer.token) as sdk, sdk.messages.stream(
        model=deployment.config.model, max_tokens=32, messages=HELLO
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text and final.content[0].text == text
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0


def test_a_capability_the_role_lacks_is_refused_with_403(deployment: Deployment, suite: Suite) -> None:
    # basic_user has no `tools` permission
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        create(deployment, suite.writer.token, tools=[WEATHER])

    assert refused.value.status_code == 403
    assert refused.value.body["error"]["type"] == "permission_error"
    assert "tools" in refused.value.body["error"]["message"]
    assert refused.value.request_id


def test_a_tiny_limit_is_a_429_with_retry_after(traffic: dict[str, Any]) -> None:
    refused: anthropic.RateLimitError = traffic["limited_error"]

    assert refused.status_code == 429 and refused.request_id
    assert refused.body["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused.response.headers["retry-after"]) <= 60
    assert refused.response.headers["anthropic-ratelimit-requests-remaining"] == "0"


def test_a_person_signed_in_is_served(deployment: Deployment) -> None:
    token = deployment.person_token()
    if token is None:
        pytest.skip("no person's token: set GATEWAY_E2E_TOKEN (`gatewayctl --env ENV token`) to check sign-in")
    message = create(deployment, token)
    assert message.content[0].text


def records_by_request(deployment: Deployment, suite: Suite, traffic: dict[str, Any]) -> dict[str, list[dict]]:
    rows = deployment.gatewayctl_json(
        "audit",
        "query",
        RECORDS_SQL,
        "--param",
        suite.tenant_id,
        "--param",
        traffic["day_from"].isoformat(),
        "--param",
        traffic["day_to"].isoformat(),
    )
    found: dict[str, list[dict]] = {}
    for row in rows:
        found.setdefault(row["request_id"], []).append(row)
    return found


# What each request leaves: a request record when it got past policy, and exactly one outcome.
EXPECTED = {
    "created": ["request", "response"],
    "streamed": ["request", "response"],
    "refused": ["denied"],  # refused by policy before the request record
    "served_limited": ["request", "response"],
    "limited": ["denied", "request"],  # the quota's refusal: recorded and reserved concurrently
}


def test_the_audit_records_are_found_with_audit_query(
    deployment: Deployment, suite: Suite, traffic: dict[str, Any]
) -> None:
    def complete() -> dict[str, list[dict]] | None:
        found = records_by_request(deployment, suite, traffic)
        done = all(sorted(r["event_type"] for r in found.get(traffic[k], [])) == v for k, v in EXPECTED.items())
        return found if done else None

    found = wait_for(complete, what="the suite's audit records in the trail", timeout=deployment.config.wait_seconds)

    outcome = {k: next(r for r in found[traffic[k]] if r["event_type"] != "request") for k in EXPECTED}
    assert (outcome["created"]["status"], outcome["streamed"]["status"]) == (200, 200)
    assert (outcome["refused"]["status"], outcome["refused"]["error_type"]) == (403, "permission_error")
    assert (outcome["limited"]["status"], outcome["limited"]["error_type"]) == (429, "rate_limit_error")
    assert outcome["limited"]["quota_decision"].startswith("refused")
    # The writer's records carry one pseudonym, the limited client's another; neither is a client id.
    writer = {r["principal"] for k in ("created", "streamed", "refused") for r in found[traffic[k]]}
    limited = {r["principal"] for k in ("served_limited", "limited") for r in found[traffic[k]]}
    assert len(writer) == len(limited) == 1 and writer != limited
    assert not ({suite.writer.client_id, suite.limited.client_id} & (writer | limited))


def test_audit_verify_finds_the_trail_complete(deployment: Deployment, traffic: dict[str, Any]) -> None:
    ours = {traffic[k] for k in EXPECTED}
    window = ("--from", traffic["day_from"].isoformat(), "--to", traffic["day_to"].isoformat())

    def clean() -> dict | None:
        done = deployment.gatewayctl("--json", "audit", "verify", *window, check=False)
        report = json.loads(done.stdout)
        flagged = {e["request_id"] for kind in ("missing", "incomplete", "extra") for e in report[kind]}
        # Access logs arrive in batches: until ours are in, our records show as `extra`.
        return report if done.returncode == 0 and report["ok"] and not ours & flagged else None

    report = wait_for(clean, what="`audit verify` to find the trail complete", timeout=deployment.config.wait_seconds)

    assert report["witnessed"] >= len(ours) and report["objects_checked"] >= 1
    assert report["unlocked"] == []


def test_gdpr_export_returns_the_callers_records_only(
    deployment: Deployment, suite: Suite, traffic: dict[str, Any]
) -> None:
    writer_ids = {traffic[k] for k in ("created", "streamed", "refused")}

    def exported() -> dict | None:
        data = json.loads(deployment.gatewayctl("gdpr", "export", suite.writer.client_id).stdout)
        return data if writer_ids <= {r["request_id"] for r in data["records"]} else None

    data = wait_for(exported, what="the writer's records in its GDPR export", timeout=deployment.config.wait_seconds)

    assert data["principal_id"] == suite.writer.client_id and data["pseudonym"]
    assert "pseudonym_secret" not in (data["principal"] or {})
    assert {r["principal"] for r in data["records"]} == {data["pseudonym"]}
    assert not {traffic["served_limited"], traffic["limited"]} & {r["request_id"] for r in data["records"]}
