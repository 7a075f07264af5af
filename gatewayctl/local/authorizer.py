"""A local stand-in for API Gateway's Cognito User Pools authorizer, as ASGI middleware.

It wraps the same ASGI app that runs in Lambda and does what API Gateway does before the Lambda
Web Adapter hands the request to the app:

- Validates the Cognito JWT against the pool's JWKS (fetched once from the moto server, cached;
  fetched again only when a token names an unknown key id): RS256 signature, `exp`, `iss`
  (https://cognito-idp.<region>.amazonaws.com/<pool_id>, as Cognito and moto mint it),
  `token_use` = access, `client_id` one of the pool's app clients, and an accepted scope.
- Builds `x-amzn-request-context` as the REST API passes it: JSON with
  ["authorizer"]["claims"] (every value a string: lists comma-joined, `exp`/`iat` as API Gateway
  renders them, e.g. "Tue Apr 04 18:39:39 UTC 2023"), ["requestId"], ["identity"]["sourceIp"],
  ["identity"]["userAgent"]. A client-supplied x-amzn-request-context is always removed first.
- Leaves `GET /healthz` unprotected.

Decisions (local-only where marked):

- Where the token comes from. API Gateway's Cognito authorizer reads its identity source header
  (the stacks use `Authorization`), as the raw JWT or `Bearer <jwt>`; the anthropic SDK's
  `auth_token` sends `Authorization: Bearer`, and Claude Code sends its apiKeyHelper value both as
  `X-Api-Key` and as `Authorization: Bearer` (Claude Code settings docs), so Authorization covers
  both in the cloud. Locally `x-api-key` is also read when Authorization is absent (a client built
  with `api_key=`); that is a LOCAL leniency: in the cloud such a client gets 401.
- Scope. In the cloud the method requires `<resource-server>/invoke`. moto cannot mint custom
  scopes (no /oauth2/token; its access tokens carry only `aws.cognito.signin.user.admin`, as do
  real tokens from InitiateAuth), so `accepted_scopes` is configurable: the local stack accepts
  the invoke scope OR aws.cognito.signin.user.admin (a LOCAL-ONLY substitute for people signing
  in with a password). A token with neither is refused.
- The 401 body. API Gateway itself answers `{"message":"Unauthorized"}`; the stacks map the
  UNAUTHORIZED gateway response to the Anthropic shape so that the SDK raises
  AuthenticationError. This middleware answers what the SDK understands:
  `{"type":"error","error":{"type":"authentication_error","message":...}}`, status 401, with a
  request id header. Insufficient scope is a 401 too, as API Gateway answers it.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Container, Iterable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import jwt

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]

PEOPLE_LOCAL_SCOPE = "aws.cognito.signin.user.admin"
REQUEST_CONTEXT_HEADER = b"x-amzn-request-context"
OPEN_PATHS = frozenset({"/healthz"})


class Unauthorized(Exception):
    pass


def issuer_for(region: str, pool_id: str) -> str:
    return f"https://cognito-idp.{region}.amazonaws.com/{pool_id}"


def jwks_url_for(moto_endpoint: str, pool_id: str) -> str:
    return f"{moto_endpoint.rstrip('/')}/{pool_id}/.well-known/jwks.json"


class JwksCache:
    """The pool's signing keys by kid; refetched at most every `min_refresh_seconds` for unknown kids."""

    def __init__(self, url: str, *, min_refresh_seconds: float = 30.0) -> None:
        self.url = url
        self.min_refresh_seconds = min_refresh_seconds
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    def _fetch(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url, timeout=5) as response:
            data = json.load(response)
        return {k["kid"]: jwt.PyJWK(k).key for k in data.get("keys", []) if k.get("kid")}

    async def key(self, kid: str) -> Any:
        if kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            if kid not in self._keys and time.monotonic() - self._fetched_at >= self.min_refresh_seconds:
                self._fetched_at = time.monotonic()
                self.fetches += 1
                try:
                    self._keys = await asyncio.to_thread(self._fetch)
                except OSError as exc:
                    raise Unauthorized(f"cannot fetch the signing keys: {exc}") from None
        try:
            return self._keys[kid]
        except KeyError:
            raise Unauthorized("the token is signed by an unknown key") from None


class CognitoAuthorizer:
    def __init__(
        self,
        app: ASGIApp,
        *,
        issuer: str,
        jwks: JwksCache,
        client_ids: Container[str],
        accepted_scopes: Iterable[str],
        open_paths: Iterable[str] = OPEN_PATHS,
        stage: str = "local",
    ) -> None:
        self.app = app
        self.issuer = issuer
        self.jwks = jwks
        # a set, or a live view of the pool's clients (machine clients are created at run time)
        self.client_ids = client_ids
        self.accepted_scopes = frozenset(accepted_scopes)
        self.open_paths = frozenset(open_paths)
        self.stage = stage

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != REQUEST_CONTEXT_HEADER]
        request_id = str(uuid.uuid4())
        claims: dict[str, Any] | None = None
        if scope["path"] not in self.open_paths:
            try:
                claims = await self.validate(_token(headers))
            except Unauthorized as exc:
                await _unauthorized(send, str(exc), request_id)
                return
        context = self.request_context(scope, headers, request_id, claims)
        headers.append((REQUEST_CONTEXT_HEADER, json.dumps(context, separators=(",", ":")).encode()))
        await self.app({**scope, "headers": headers}, receive, send)

    async def validate(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the token is not a JWT") from None
        if header.get("alg") != "RS256":
            raise Unauthorized("the token is not signed with RS256")
        key = await self.jwks.key(str(header.get("kid")))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                issuer=self.issuer,
                options={"require": ["exp", "iat", "iss", "token_use"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("the token was issued by another user pool") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the token is invalid: {exc}") from None
        if claims.get("token_use") != "access":
            raise Unauthorized("an access token is required, not an id token")
        known = self.client_ids
        client_id = claims.get("client_id")
        is_known = (
            client_id in known
            if isinstance(known, (set, frozenset))
            else await asyncio.to_thread(known.__contains__, client_id)
        )
        if not is_known:
            raise Unauthorized("the token was issued to an unknown app client")
        if not self.accepted_scopes & set(str(claims.get("scope", "")).split()):
            raise Unauthorized("the token lacks the required scope")
        return claims

    def request_context(
        self, scope: Scope, headers: list[tuple[bytes, bytes]], request_id: str, claims: dict[str, Any] | None
    ) -> dict[str, Any]:
        client = scope.get("client") or ("127.0.0.1", 0)
        now = datetime.now(UTC)
        context: dict[str, Any] = {
            "accountId": "123456789012",  # moto's default account
            "apiId": "local",
            "domainName": _header(headers, b"host"),
            "resourcePath": scope["path"],
            "httpMethod": scope.get("method", "GET"),
            "path": f"/{self.stage}{scope['path']}",
            "protocol": f"HTTP/{scope.get('http_version', '1.1')}",
            "stage": self.stage,
            "requestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "identity": {"sourceIp": client[0], "userAgent": _header(headers, b"user-agent")},
        }
        if claims is not None:
            context["authorizer"] = {"claims": api_gateway_claims(claims)}
        return context


def api_gateway_claims(claims: dict[str, Any]) -> dict[str, str]:
    """Claims as the REST API's Cognito authorizer passes them: strings only."""
    out: dict[str, str] = {}
    for name, value in claims.items():
        if name in ("exp", "iat") and isinstance(value, (int, float)):
            out[name] = datetime.fromtimestamp(value, UTC).strftime("%a %b %d %H:%M:%S UTC %Y")
        elif isinstance(value, (list, tuple)):
            out[name] = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        else:
            out[name] = str(value)
    return out


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _token(headers: list[tuple[bytes, bytes]]) -> str:
    raw = _header(headers, b"authorization").strip() or _header(headers, b"x-api-key").strip()
    if not raw:
        raise Unauthorized("missing credentials: send `Authorization: Bearer <token>`")
    scheme, _, rest = raw.partition(" ")
    return rest.strip() if scheme.lower() == "bearer" and rest else raw


async def _unauthorized(send: Callable, message: str, request_id: str) -> None:
    body = json.dumps(
        {"type": "error", "error": {"type": "authentication_error", "message": message}},
        separators=(",", ":"),
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"request-id", request_id.encode()),
                (b"x-amzn-requestid", request_id.encode()),
                (b"www-authenticate", b"Bearer"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
