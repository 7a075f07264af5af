"""The local authorizer without sockets: keys from memory, the ASGI app called directly."""

from __future__ import annotations

import asyncio
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gatewayctl.local.authorizer import CognitoAuthorizer, JwksCache, api_gateway_claims

ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TEST"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class MemoryJwks(JwksCache):
    def __init__(self) -> None:
        super().__init__("memory://")

    def _fetch(self):
        return {"k1": KEY.public_key()}


def token(**overrides) -> str:
    now = int(time.time())
    claims = {
        "sub": "u-1",
        "iss": ISSUER,
        "client_id": "c-1",
        "token_use": "access",
        "scope": "gateway/invoke",
        "iat": now,
        "exp": now + 60,
        "cognito:groups": ["a", "b"],
        **overrides,
    }
    return jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": "k1"})


def call(headers: dict[str, str], path: str = "/v1/messages") -> tuple[int, dict, dict | None]:
    seen: dict = {}

    async def app(scope, receive, send):
        seen.update({k.decode(): v.decode() for k, v in scope["headers"]})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    authorizer = CognitoAuthorizer(
        app, issuer=ISSUER, jwks=MemoryJwks(), client_ids={"c-1"}, accepted_scopes={"gateway/invoke"}
    )
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "client": ("10.0.0.9", 5555),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    asyncio.run(authorizer(scope, receive, send))
    body = json.loads(sent[1]["body"]) if sent[0]["status"] != 200 else None
    context = json.loads(seen["x-amzn-request-context"]) if seen else None
    return sent[0]["status"], body or {}, context


def test_claims_become_strings_the_way_api_gateway_renders_them():
    claims = api_gateway_claims(
        {"exp": 0, "auth_time": 5, "cognito:groups": ["x", "y"], "flag": True, "s": "v"}
    )
    assert claims == {
        "exp": "Thu Jan 01 00:00:00 UTC 1970",
        "auth_time": "5",
        "cognito:groups": "x,y",
        "flag": "true",
        "s": "v",
    }


def test_valid_token_reaches_the_app_with_the_request_context():
    status, _, context = call(
        {"Authorization": f"Bearer {token()}", "User-Agent": "ua", "Host": "gw.example"}
    )
    assert status == 200
    assert context["authorizer"]["claims"]["sub"] == "u-1"
    assert context["authorizer"]["claims"]["cognito:groups"] == "a,b"
    assert context["identity"] == {"sourceIp": "10.0.0.9", "userAgent": "ua"}
    assert context["domainName"] == "gw.example" and context["httpMethod"] == "POST"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"exp": int(time.time()) - 10}, "expired"),
        ({"iss": "https://cognito-idp.us-east-1.amazonaws.com/other"}, "another user pool"),
        ({"token_use": "id"}, "access token"),
        ({"client_id": "c-2"}, "app client"),
        ({"scope": "aws.cognito.signin.user.admin"}, "scope"),
    ],
)
def test_invalid_claims_are_refused(overrides, fragment):
    status, body, context = call({"Authorization": f"Bearer {token(**overrides)}"})
    assert status == 401 and context is None
    assert body["error"]["type"] == "authentication_error"
    assert fragment in body["error"]["message"]


def test_an_unknown_key_id_is_refused():
    unknown = jwt.encode({"sub": "x"}, KEY, algorithm="RS256", headers={"kid": "k9"})
    status, body, _ = call({"Authorization": unknown})
    assert status == 401 and "unknown key" in body["error"]["message"]


def test_x_api_key_is_read_when_authorization_is_absent():
    assert call({"x-api-key": token()})[0] == 200
    assert call({})[0] == 401
