"""Access tokens from the emulated pool: a person's (InitiateAuth) and a machine's (minted locally)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from gatewayctl.output import CommandError


def access_token(idp: Any, people_client_id: str, username: str, password: str) -> str:
    """A real access token (InitiateAuth USER_PASSWORD_AUTH with the people client)."""
    result = idp.initiate_auth(
        ClientId=people_client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": password},
    )
    return result["AuthenticationResult"]["AccessToken"]


def machine_token(
    idp: Any,
    cognito: Mapping[str, str],
    client_id: str,
    client_secret: str,
    *,
    scope: str | None = None,
    expires_in: int = 3600,
) -> str:
    """A client-credentials access token, as Cognito's /oauth2/token would mint it.

    LOCAL ONLY: moto has no /oauth2/token endpoint, so this checks the client and its secret
    against the pool and signs the token with moto's own (public, test-only) signing key, the
    key behind the pool's JWKS; the authorizer then validates it like any other token.
    """
    import jwt
    from moto.utilities.utils import load_resource

    described = idp.describe_user_pool_client(UserPoolId=cognito["user_pool_id"], ClientId=client_id)["UserPoolClient"]
    if described.get("ClientSecret") != client_secret:
        raise CommandError("invalid client secret")
    scope = scope or cognito["invoke_scope"]
    if scope not in described.get("AllowedOAuthScopes", []):
        raise CommandError(f"client {client_id} may not request scope {scope}")
    now = int(time.time())
    claims = {
        "sub": client_id,
        "token_use": "access",
        "scope": scope,
        "auth_time": now,
        "iss": cognito["issuer"],
        "exp": now + expires_in,
        "iat": now,
        "version": 2,
        "jti": str(uuid.uuid4()),
        "client_id": client_id,
    }
    key = jwt.PyJWK(load_resource("cognitoidp/resources/jwks-private.json"))
    return jwt.encode(claims, key.key, algorithm="RS256", headers={"kid": "dummy"})
