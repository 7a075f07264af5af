"""Through the app on the local stack: the audit trail keeps callers' source IP and user agent only as
pseudonyms under the principal's key, or not at all when the tenant says so (gatewayctl tenant
--client-details drop); erasure then leaves nothing that links them to the person."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration
MODEL = "claude-haiku-4-5"
HELLO = [{"role": "user", "content": "hello"}]


def _records(audit_stream, tenant_id: str) -> list[dict]:
    audit_stream.outcomes(tenant_id)
    return audit_stream.records(tenant_id)


def test_source_ip_and_user_agent_are_pseudonyms(make_tenant, make_user, gateway_client, audit_stream):
    tenant_id = make_tenant()
    user = make_user(tenant_id)
    with gateway_client(user.token) as client:
        client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)

    records = _records(audit_stream, tenant_id)
    assert {r["event_type"] for r in records} == {"request", "response"}
    for record in records:
        assert record["source_ip"] and "127.0.0.1" not in record["source_ip"]
        user_agent = record["user_agent"]
        assert user_agent and "Anthropic" not in user_agent and "python" not in user_agent.lower()
    # One person's records agree with each other: an auditor can still group them.
    assert len({r["source_ip"] for r in records}) == 1


def test_a_tenant_that_drops_client_details_records_neither(make_tenant, make_user, gateway_client, audit_stream):
    tenant_id = make_tenant(client_details="drop")
    user = make_user(tenant_id)
    with gateway_client(user.token) as client:
        client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)

    for record in _records(audit_stream, tenant_id):
        assert record["source_ip"] is None and record["user_agent"] is None
