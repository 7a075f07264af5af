"""The local Cognito authorizer in front of an ASGI app, with real tokens from moto's Cognito.

The app behind it here is a stand-in that echoes what it received, so these tests see exactly
what the gateway app would: the x-amzn-request-context header that API Gateway + the Lambda Web
Adapter pass.
"""

from __future__ import annotations

import json
import time
import uuid

import anthropic
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from moto.utilities.utils import load_resource

from gatewayctl.local.authorizer import (
    PEOPLE_LOCAL_SCOPE,
    CognitoAuthorizer,
    JwksCache,
    issuer_for,
    jwks_url_for,
)
from gatewayctl.local.pool_clients import PoolClients
from gatewayctl.local.servers import ThreadedServer, bind, port_of


async def echo_app(scope, receive, send):
    if scope["type"] != "http":
        return
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    body = json.dumps({"path": scope["path"], "headers": headers}).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})


def serve(stack, accepted_scopes):
    pool_id = stack.cognito["user_pool_id"]
    authorizer = CognitoAuthorizer(
        echo_app,
        issuer=issuer_for(stack.options.region, pool_id),
        jwks=JwksCache(jwks_url_for(stack.moto_endpoint, pool_id)),
        client_ids=PoolClients(stack.client("cognito-idp"), pool_id),
        accepted_scopes=accepted_scopes,
    )
    sock = bind()
    server = ThreadedServer(authorizer, [sock], name="authorizer-test").start()
    return authorizer, server, f"http://127.0.0.1:{port_of(sock)}"


@pytest.fixture(scope="module")
def edge(backing_stack):
    authorizer, server, url = serve(
        backing_stack, (backing_stack.cognito["invoke_scope"], PEOPLE_LOCAL_SCOPE)
    )
    yield authorizer, url
    server.stop()


@pytest.fixture(scope="module")
def strict_edge(backing_stack):
    """Accepts only the invoke scope, as the cloud method does."""
    _, server, url = serve(backing_stack, (backing_stack.cognito["invoke_scope"],))
    yield url
    server.stop()


@pytest.fixture(scope="module")
def person(backing_stack):
    user = backing_stack.create_user(f"p-{uuid.uuid4().hex[:8]}@example.com")
    user.token = backing_stack.access_token(user.username, user.password)
    return user


def moto_signed(claims: dict) -> str:
    """A token signed with the key behind the pool's JWKS (moto's test key), for claims moto won't mint."""
    key = jwt.PyJWK(load_resource("cognitoidp/resources/jwks-private.json")).key
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "dummy"})


def access_claims(stack, **overrides) -> dict:
    now = int(time.time())
    return {
        "sub": str(uuid.uuid4()),
        "iss": stack.cognito["issuer"],
        "client_id": stack.cognito["people_client_id"],
        "token_use": "access",
        "scope": PEOPLE_LOCAL_SCOPE,
        "iat": now,
        "exp": now + 600,
        **overrides,
    }


def context_of(response: httpx.Response) -> dict:
    return json.loads(response.json()["headers"]["x-amzn-request-context"])


def test_a_valid_access_token_passes_with_the_claims_as_api_gateway_passes_them(edge, person):
    _, url = edge
    response = httpx.post(
        f"{url}/v1/messages",
        headers={"Authorization": f"Bearer {person.token}", "User-Agent": "test-agent/1.0"},
    )

    assert response.status_code == 200
    context = context_of(response)
    claims = context["authorizer"]["claims"]
    assert claims["sub"] == person.sub
    assert claims["username"] == person.username
    assert claims["token_use"] == "access"
    assert claims["scope"] == PEOPLE_LOCAL_SCOPE
    assert all(isinstance(v, str) for v in claims.values())
    assert claims["exp"].endswith(time.strftime("%Y", time.gmtime())) and " UTC " in claims["exp"]
    assert context["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "test-agent/1.0"}
    assert uuid.UUID(context["requestId"])


def test_each_request_gets_its_own_request_id(edge, person):
    _, url = edge
    ids = {
        context_of(httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {person.token}"}))[
            "requestId"
        ]
        for _ in range(3)
    }
    assert len(ids) == 3


def test_raw_token_and_x_api_key_are_accepted(edge, person):
    _, url = edge
    raw = httpx.get(f"{url}/v1/models", headers={"Authorization": person.token})
    api_key = httpx.get(f"{url}/v1/models", headers={"x-api-key": person.token})
    assert raw.status_code == 200 and api_key.status_code == 200
    assert context_of(api_key)["authorizer"]["claims"]["sub"] == person.sub


def test_a_client_supplied_request_context_is_replaced(edge, person):
    _, url = edge
    forged = json.dumps({"authorizer": {"claims": {"sub": "someone-else"}}})
    response = httpx.get(
        f"{url}/v1/models",
        headers={"Authorization": f"Bearer {person.token}", "X-Amzn-Request-Context": forged},
    )
    assert context_of(response)["authorizer"]["claims"]["sub"] == person.sub
    open_response = httpx.get(f"{url}/healthz", headers={"x-amzn-request-context": forged})
    assert "authorizer" not in context_of(open_response)


def test_healthz_is_not_protected(edge):
    _, url = edge
    assert httpx.get(f"{url}/healthz").status_code == 200


def refused(url: str, headers: dict) -> dict:
    response = httpx.post(f"{url}/v1/messages", headers=headers)
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert response.headers["request-id"]
    return body


def test_missing_token_is_refused(edge):
    _, url = edge
    assert "missing" in refused(url, {})["error"]["message"]


def test_garbage_and_forged_tokens_are_refused(edge, backing_stack):
    _, url = edge
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(access_claims(backing_stack), other_key, algorithm="RS256", headers={"kid": "dummy"})
    refused(url, {"Authorization": "Bearer not-a-jwt"})
    assert "invalid" in refused(url, {"Authorization": f"Bearer {forged}"})["error"]["message"]


def test_a_tampered_token_is_refused(edge, person):
    _, url = edge
    header, payload, signature = person.token.split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["sub"] = "someone-else"
    tampered = ".".join([header, jwt.utils.base64url_encode(json.dumps(claims).encode()).decode(), signature])
    refused(url, {"Authorization": f"Bearer {tampered}"})


def test_an_expired_token_is_refused(edge, backing_stack):
    _, url = edge
    now = int(time.time())
    expired = moto_signed(access_claims(backing_stack, iat=now - 7200, exp=now - 3600))
    assert "expired" in refused(url, {"Authorization": f"Bearer {expired}"})["error"]["message"]


def test_a_token_from_another_pool_is_refused(edge, backing_stack):
    _, url = edge
    idp = backing_stack.client("cognito-idp")
    other_pool = idp.create_user_pool(PoolName=f"other-{uuid.uuid4().hex[:6]}")["UserPool"]["Id"]
    client_id = idp.create_user_pool_client(
        UserPoolId=other_pool, ClientName="c", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    idp.admin_create_user(UserPoolId=other_pool, Username="mallory", MessageAction="SUPPRESS")
    idp.admin_set_user_password(
        UserPoolId=other_pool, Username="mallory", Password="Password-123", Permanent=True
    )
    token = idp.initiate_auth(
        ClientId=client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "mallory", "PASSWORD": "Password-123"},
    )["AuthenticationResult"]["AccessToken"]
    # moto signs every pool's tokens with the same key: only the issuer tells them apart, as it must.
    assert "another user pool" in refused(url, {"Authorization": f"Bearer {token}"})["error"]["message"]


def test_an_id_token_is_refused(edge, backing_stack, person):
    _, url = edge
    id_token = backing_stack.client("cognito-idp").initiate_auth(
        ClientId=backing_stack.cognito["people_client_id"],
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": person.username, "PASSWORD": person.password},
    )["AuthenticationResult"]["IdToken"]
    assert "access token" in refused(url, {"Authorization": f"Bearer {id_token}"})["error"]["message"]


def test_a_token_for_an_unknown_client_is_refused(edge, backing_stack):
    _, url = edge
    token = moto_signed(access_claims(backing_stack, client_id="not-a-client-of-this-pool"))
    assert "app client" in refused(url, {"Authorization": f"Bearer {token}"})["error"]["message"]


def test_a_token_without_an_accepted_scope_is_refused(edge, strict_edge, backing_stack, person):
    _, url = edge
    no_scope = moto_signed(access_claims(backing_stack, scope="openid email"))
    assert "scope" in refused(url, {"Authorization": f"Bearer {no_scope}"})["error"]["message"]
    # the cloud rule: people's password-flow tokens lack the invoke scope
    assert "scope" in refused(strict_edge, {"Authorization": f"Bearer {person.token}"})["error"]["message"]


def test_a_machine_client_created_at_run_time_gets_in_with_the_invoke_scope(strict_edge, backing_stack):
    created = backing_stack.client("cognito-idp").create_user_pool_client(
        UserPoolId=backing_stack.cognito["user_pool_id"],
        ClientName=f"m-{uuid.uuid4().hex[:6]}",
        GenerateSecret=True,
        AllowedOAuthFlows=["client_credentials"],
        AllowedOAuthScopes=[backing_stack.cognito["invoke_scope"]],
        AllowedOAuthFlowsUserPoolClient=True,
    )["UserPoolClient"]
    token = backing_stack.machine_token(created["ClientId"], created["ClientSecret"])

    response = httpx.get(f"{strict_edge}/v1/models", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200
    claims = context_of(response)["authorizer"]["claims"]
    assert claims["client_id"] == claims["sub"] == created["ClientId"]
    assert claims["scope"] == backing_stack.cognito["invoke_scope"]
    with pytest.raises(Exception, match="secret"):
        backing_stack.machine_token(created["ClientId"], "wrong")


def test_the_jwks_is_fetched_once_and_cached(backing_stack, person):
    authorizer, server, url = serve(backing_stack, (PEOPLE_LOCAL_SCOPE,))
    try:
        for _ in range(3):
            assert (
                httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {person.token}"}).status_code
                == 200
            )
        assert authorizer.jwks.fetches == 1
    finally:
        server.stop()


def test_the_anthropic_sdk_sees_an_authentication_error(edge):
    _, url = edge
    client = anthropic.Anthropic(base_url=url, auth_token="nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 401
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_a_client_cannot_choose_its_recorded_source_ip(edge, person):
    """API Gateway takes the source IP from the connection; so does the local stack (no proxy headers
    trusted), so the audit trail cannot record an address the client chose."""
    _, url = edge
    response = httpx.post(
        f"{url}/v1/messages",
        headers={
            "Authorization": f"Bearer {person.token}",
            "X-Forwarded-For": "203.0.113.7",
            "X-Real-IP": "203.0.113.8",
            "Forwarded": "for=203.0.113.9",
        },
    )

    assert context_of(response)["identity"]["sourceIp"] == "127.0.0.1"
