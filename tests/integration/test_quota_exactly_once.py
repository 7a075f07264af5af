"""Quota writes take effect once whatever is retried and whichever answer is lost (docs/tenancy.md,
"Exactly once"), against the moto server: a DynamoDB client whose answers are lost after the write
committed (botocore's own retry sends it again, or the gateway's), and the local stack's moto honouring
ClientRequestToken as DynamoDB does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from gateway.adapters.dynamo_quota import UNKNOWN_RESENDS, DynamoQuotaStore
from gateway.app import dynamo_services
from gateway.domain import quota
from gateway.domain.catalog import load_catalog
from gateway.domain.errors import ServiceUnavailableError
from gateway.models.exchange import Usage
from gateway.models.quota import HOLD, HoldGrant, HoldReturn
from gateway.models.usage_items import hold_home

from gatewayctl import admin
from gatewayctl.local import moto_patches
from tests.integration import test_tenancy_support as support
from tests.integration.test_tenancy_adapters import identity, request, stored

moto_url, moto_tables = support.moto_url, support.moto_tables  # fixtures
pytestmark = pytest.mark.anyio

CATALOG = load_catalog()
NOW = datetime(2026, 11, 23, 3, 40, 10, tzinfo=UTC).timestamp()
MINUTE = quota.window_at("minute", NOW).sk
# botocore's `max_attempts` counts retries: the clients' 2 make three sends of one call.
SENDS = 3


class LostAnswers:
    """Lets the next `n` calls of `operation` reach DynamoDB (the write commits), then raises botocore's
    ReadTimeoutError as if the answer never came: botocore's own retry sends the call again, and once its
    attempts are spent the gateway's adapter does."""

    def __init__(self, client, operation: str = "TransactWriteItems") -> None:
        self.client = client
        self.pending = 0
        self.lost = 0
        self.tokens: list[str] = []
        client.meta.events.register(f"before-send.dynamodb.{operation}", self._send)

    def lose(self, n: int) -> LostAnswers:
        self.pending = n
        return self

    def _send(self, request, **_kwargs):
        import json

        self.tokens.append(json.loads(request.body).get("ClientRequestToken", ""))
        if self.pending <= 0:
            return None
        self.pending -= 1
        response = self.client._endpoint.http_session.send(request)
        assert response.status_code == 200, response.content
        self.lost += 1
        raise ReadTimeoutError(endpoint_url=request.url)


@pytest.fixture
def tenant(moto_tables):
    moto_patches.honour_client_request_tokens()
    admin.create_tenant(moto_tables.target, "acme", limits={"tokens_per_minute": 10_000, "requests_per_minute": 10})
    admin.add_principal(moto_tables.target, "acme", "sub-1", ["basic_user"])
    return moto_tables


async def reserved(t, max_tokens=180, input_tokens=20):
    tenancy, quota_ = dynamo_services(t.settings, CATALOG, client=t.ddb, clock=lambda: NOW)
    principal = await tenancy.resolve(identity("sub-1"))
    asked = request(max_tokens=max_tokens, input_tokens=input_tokens)
    decision = await tenancy.authorize(principal, asked)
    return quota_, await quota_.reserve(principal, decision, asked)


def counters(t) -> tuple[int, int]:
    item = stored(t, "USAGE#acme", MINUTE)
    return item.get("requests", 0), item.get("tokens", 0)


@pytest.mark.parametrize("lost", [1, SENDS], ids=["botocore-retries", "gateway-resends"])
async def test_a_lost_answer_on_the_reservation_charges_it_once(tenant, lost):
    answers = LostAnswers(tenant.ddb).lose(lost)
    await reserved(tenant)
    assert answers.lost == lost
    assert counters(tenant) == (1, 200)
    assert len(set(answers.tokens)) == 1  # every send of it carried one token


@pytest.mark.parametrize("lost", [1, SENDS], ids=["botocore-retries", "gateway-resends"])
async def test_a_lost_answer_on_the_settlement_settles_it_once(tenant, lost):
    quota_, reservation = await reserved(tenant)
    answers = LostAnswers(tenant.ddb).lose(lost)
    await quota_.settle(reservation, Usage(input_tokens=20, output_tokens=90), 0.0)
    assert answers.lost == lost
    assert counters(tenant) == (1, 110)  # doubled, it would leave 20


@pytest.mark.parametrize("lost", [1, SENDS], ids=["botocore-retries", "gateway-resends"])
async def test_a_lost_answer_on_the_release_releases_it_once(tenant, lost):
    quota_, reservation = await reserved(tenant)
    answers = LostAnswers(tenant.ddb).lose(lost)
    await quota_.release(reservation)
    assert answers.lost == lost
    assert counters(tenant) == (0, 0)  # doubled, it would leave -1 request and -200 tokens


async def test_a_repeat_after_the_token_window_is_a_no_op(tenant):
    # Past ten minutes DynamoDB treats the token as new: the state item's condition stops the repeat.
    quota_, reservation = await reserved(tenant)
    hold = reservation.lease
    await quota_.settle(reservation, Usage(input_tokens=20, output_tokens=90), 0.0)
    moto_patches.forget_client_request_tokens()
    again = HoldReturn(hold.id, hold.grant.home, 0, hold.grant.keys, (-reservation.amount,) * 3)
    assert (await quota_.store.give_back(again)).applied is False
    assert counters(tenant) == (1, 110)
    state = tenant.client("dynamodb").get_item(
        TableName=tenant.settings.usage_table,
        Key={"pk": {"S": hold.grant.home[0]}, "sk": {"S": hold.grant.home[1]}},
    )["Item"]
    assert state["state"]["S"] == "returned"


async def test_a_repeated_acquisition_after_the_token_window_is_a_no_op(tenant):
    store = DynamoQuotaStore(tenant.settings, client=tenant.ddb)
    grant = hold_grant(store, "h-1")
    assert (await store.acquire(grant)).applied
    moto_patches.forget_client_request_tokens()
    assert (await store.acquire(grant)).applied  # its state item exists: it already happened
    assert counters(tenant) == (1, 200)


async def test_an_outcome_that_stays_unknown_fails_closed_and_never_counts_twice(tenant):
    # Every answer lost: botocore's attempts and the gateway's re-sends all commit nothing new after the first.
    answers = LostAnswers(tenant.ddb).lose(SENDS * (1 + UNKNOWN_RESENDS))
    with pytest.raises(ServiceUnavailableError):
        await reserved(tenant)
    assert answers.lost == SENDS * (1 + UNKNOWN_RESENDS)
    # The hold committed on the first send, and the gateway gave it back once it could not confirm it.
    assert counters(tenant) == (0, 0)


async def test_the_local_moto_applies_a_token_once_and_refuses_it_with_other_parameters(tenant):
    ddb = tenant.client("dynamodb")
    table = tenant.settings.usage_table

    def add(n: int, token: str) -> None:
        ddb.transact_write_items(
            ClientRequestToken=token,
            TransactItems=[
                {
                    "Update": {
                        "TableName": table,
                        "Key": {"pk": {"S": "T"}, "sk": {"S": "x"}},
                        "UpdateExpression": "ADD n :n",
                        "ExpressionAttributeValues": {":n": {"N": str(n)}},
                    }
                }
            ],
        )

    add(1, "token-a")
    add(1, "token-a")
    assert stored(tenant, "T", "x")["n"] == 1
    with pytest.raises(ClientError) as mismatch:
        add(2, "token-a")
    assert mismatch.value.response["Error"]["Code"] == "IdempotentParameterMismatchException"
    moto_patches.forget_client_request_tokens()  # ten minutes later the token is new
    add(1, "token-a")
    assert stored(tenant, "T", "x")["n"] == 2


async def test_hold_state_items_expire(tenant):
    quota_, reservation = await reserved(tenant)
    hold = reservation.lease
    item = tenant.client("dynamodb").get_item(
        TableName=tenant.settings.usage_table,
        Key={"pk": {"S": hold.grant.home[0]}, "sk": {"S": hold.grant.home[1]}},
    )["Item"]
    ttl = int(item["expires_at"]["N"])
    policy = quota_.policy
    assert ttl == int(NOW + policy.hold_seconds + policy.hold_retention)
    assert ttl - NOW <= 2 * 3600  # a few hours at most, however many requests there are
    from stacks import definitions

    assert definitions.USAGE.ttl_attribute == "expires_at"


async def test_an_unreachable_quota_store_fails_closed_without_crashing(moto_tables):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    store = DynamoQuotaStore(moto_tables.settings, client=support._botocore_client(dead))
    with pytest.raises(ServiceUnavailableError):
        await store.acquire(hold_grant(store, "h-2"))


def hold_grant(store, hold_id: str) -> HoldGrant:
    plan = quota.plan("acme", "sub-1", _limits(), _limits(None), quota.Amount(1, 200, 0), NOW)
    home = hold_home(["USAGE#acme"], HOLD, hold_id, NOW + 900)
    return HoldGrant(
        id=hold_id,
        kind=HOLD,
        home=home,
        key="USAGE#acme",
        charges=plan.charges,
        amounts=(plan.amount,) * 3,
        committed=(plan.amount,) * 3,
        ends_at=NOW + 900,
        expires_at=int(NOW + 900 + 3600),
    )


def _limits(tokens: int | None = 10_000):
    from gateway.models.tenancy import Limits

    return Limits(tokens_per_minute=tokens)
