"""Access tokens for the gateway: where they are kept, how they are refreshed, which one `token` prints.

- Local stack: the tokens sit next to the stack's state (token.json) and are refreshed with
  InitiateAuth REFRESH_TOKEN_AUTH against the emulated pool (moto has no /oauth2/token).
- Cloud: `login` saves everything a refresh needs (the Cognito domain and its token endpoint, the
  app client id, the region, the gateway's endpoint, the tokens) in the user's config dir,
  login-<env>.json, mode 600. A refresh is the OAuth refresh_token grant at that token endpoint:
  `token` needs no AWS credentials and reads no CloudFormation output, and the refreshed token keeps
  the invoke scope the API requires.

Nothing here asks anything: a missing or expired sign-in is a CommandError that says to log in.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gatewayctl import paths
from gatewayctl.output import CommandError
from gatewayctl.target import LOCAL_STATE, Target, load_local

REFRESH_MARGIN_SECONDS = 120


def save(path: Path, tokens: dict[str, Any]) -> None:
    """Write tokens with mode 600 (they are credentials), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(tokens, out)
    tmp.chmod(0o600)  # an existing .tmp keeps its mode through os.open
    tmp.replace(path)


def load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


# -- which gateway, which token ----------------------------------------------------------------


def session(args: Any) -> tuple[str, str]:
    """(access token, gateway endpoint) for the target the arguments name: the local stack when one is
    found (or --target local), else the cloud environment's saved login (--env)."""
    kind = getattr(args, "target", None) or ("local" if LOCAL_STATE.exists() else "cloud")
    if kind == "local":
        target = load_local()
        return fresh_token(target, local_token_path()), target.local.get("endpoint") or target.output("ApiEndpoint")
    if kind == "cloud":
        env = getattr(args, "env", "dev")
        return cloud_token(env), cloud_login(env)["endpoint"]
    raise CommandError(f"unknown target {kind!r}: use 'local' or 'cloud'")


def local_token_path() -> Path:
    return LOCAL_STATE.parent / "token.json"


def cloud_login_path(env: str) -> Path:
    return paths.config_dir() / f"login-{env}.json"


# -- the local stack -----------------------------------------------------------------------------


def fresh_token(target: Target, path: Path, *, now: Callable[[], float] = time.time) -> str:
    """The cached local access token, refreshed first if it expires within REFRESH_MARGIN_SECONDS."""
    tokens = load(path)
    if tokens is None:
        raise CommandError("not signed in: run `gatewayctl login` first")
    if tokens.get("client_id") != target.output("UserPoolClientId"):
        raise CommandError("the cached token is for another user pool client: run `gatewayctl login` again")
    if tokens["expires_at"] - now() > REFRESH_MARGIN_SECONDS:
        return tokens["access_token"]
    if not tokens.get("refresh_token"):
        raise CommandError("the token has expired and cannot be refreshed: run `gatewayctl login` again")
    try:
        result = target.client("cognito-idp").initiate_auth(
            ClientId=tokens["client_id"],
            AuthFlow="REFRESH_TOKEN_AUTH",
            AuthParameters={"REFRESH_TOKEN": tokens["refresh_token"]},
        )["AuthenticationResult"]
    except Exception as exc:  # botocore ClientError: the refresh token expired or was revoked
        raise CommandError(f"cannot refresh the token ({exc}): run `gatewayctl login` again") from None
    tokens.update(access_token=result["AccessToken"], expires_at=now() + int(result.get("ExpiresIn", 3600)))
    save(path, tokens)
    return tokens["access_token"]


# -- the cloud -----------------------------------------------------------------------------------


def save_cloud_login(
    env: str, *, region: str, domain: str, client_id: str, scope: str, endpoint: str, tokens: dict[str, Any]
) -> Path:
    """What `login` learned, kept so that `token` can refresh with nothing else."""
    path = cloud_login_path(env)
    domain = domain.rstrip("/")
    save(
        path,
        {
            **tokens,
            "env": env,
            "region": region,
            "domain": domain,
            "token_endpoint": f"{domain}/oauth2/token",
            "client_id": client_id,
            "scope": scope,
            "endpoint": endpoint,
        },
    )
    return path


def cloud_login(env: str) -> dict[str, Any]:
    saved = load(cloud_login_path(env))
    if saved is None:
        raise CommandError(
            f"not signed in to the {env} gateway: run `gatewayctl --target cloud --env {env} login --domain ...` first"
        )
    return saved


def cloud_token(env: str, *, now: Callable[[], float] = time.time, post: Callable[..., Any] | None = None) -> str:
    """The saved access token, refreshed at the token endpoint if it expires within REFRESH_MARGIN_SECONDS."""
    saved = cloud_login(env)
    if saved.get("access_token") and saved.get("expires_at", 0) - now() > REFRESH_MARGIN_SECONDS:
        return saved["access_token"]
    if not saved.get("refresh_token"):
        raise CommandError(f"the sign-in has expired: run `gatewayctl --target cloud --env {env} login` again")
    form = {"grant_type": "refresh_token", "client_id": saved["client_id"], "refresh_token": saved["refresh_token"]}
    result = (post or post_form)(saved["token_endpoint"], form)
    saved.update(
        access_token=result["access_token"],
        expires_at=now() + int(result.get("expires_in") or 3600),
        # Cognito keeps the refresh token unless rotation is on; then the new one replaces it.
        refresh_token=result.get("refresh_token") or saved["refresh_token"],
    )
    save(cloud_login_path(env), saved)
    return saved["access_token"]


def post_form(url: str, form: dict[str, str], *, timeout: float = 15.0) -> dict[str, Any]:
    """POST an OAuth form to a token endpoint; a refused grant is a CommandError that says what to do."""
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(form).encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:200].decode(errors="replace")
        raise CommandError(
            f"the token endpoint refused the refresh (HTTP {exc.code} {detail}): run `gatewayctl login` again"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CommandError(f"cannot reach the token endpoint {url}: {exc}") from None
