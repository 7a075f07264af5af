"""The audit trail holds no direct identifier of a person: source IP and user agent are pseudonymised
under the principal's key, or dropped when the tenant says so or the caller does not resolve."""

from __future__ import annotations

import dataclasses

import pytest
from gateway.domain.pseudonym import pseudonymize
from gateway.models.audit import AuditRecord

from tests.unit.runtime_fakes import SECRET
from tests.unit.test_pipeline import BODY, World

pytestmark = pytest.mark.anyio
UA = {"user-agent": "Anthropic/Python 2.14.0 (alice's laptop)"}


async def test_records_keep_source_ip_and_user_agent_only_as_pseudonyms() -> None:
    world = World()
    await world.post(BODY, headers=UA)

    [request] = world.audit.requests
    record = AuditRecord.from_exchange(request, "request").to_json()
    assert "10.0.0.9" not in record and "alice" not in record
    assert request.meta.user_agent == pseudonymize(SECRET, "user_agent", UA["user-agent"])
    # The same person's records can still be told apart from others', until the secret is erased.
    assert request.meta.source_ip == pseudonymize(SECRET, "source_ip", "10.0.0.9")
    assert pseudonymize("cd" * 32, "source_ip", "10.0.0.9") != request.meta.source_ip


async def test_a_tenant_that_drops_client_details_keeps_neither() -> None:
    world = World()
    resolve = world.tenancy.resolve

    async def dropping(identity):
        principal = await resolve(identity)
        return dataclasses.replace(principal, tenant=dataclasses.replace(principal.tenant, client_details="drop"))

    world.tenancy.resolve = dropping  # type: ignore[method-assign]
    await world.post(BODY, headers=UA)

    [outcome] = world.audit.outcomes
    assert (outcome.meta.source_ip, outcome.meta.user_agent) == ("", "")


async def test_a_caller_that_does_not_resolve_is_recorded_without_them() -> None:
    world = World()
    world.tenancy.denied_principals.add("user-1")
    response = await world.post(BODY, headers=UA)

    assert response.status_code == 403
    [outcome] = world.audit.outcomes
    assert outcome.outcome == "denied" and (outcome.meta.source_ip, outcome.meta.user_agent) == ("", "")
