"""gatewayctl login: get a Cognito access token for the gateway and cache it.

- Local stack: user name and password through the emulated pool (InitiateAuth USER_PASSWORD_AUTH
  with the people client), since moto has no hosted UI.
- Cloud: the authorization code flow with PKCE (S256) and a loopback redirect
  (http://localhost:8765/callback, the people client's registered callback): the browser signs in
  on the Cognito domain (`--domain https://<prefix>.auth.<region>.amazoncognito.com`), the code
  comes back to a one-shot local HTTP server, and is exchanged at <domain>/oauth2/token. The token
  then carries the `<resource-server>/invoke` scope the API requires.

Tokens are cached (mode 600) in .local/token.json for the local stack, and in
~/.cache/claude-gateway/<env>-<region>.json for the cloud. `fresh_token` refreshes them with the
refresh token (InitiateAuth REFRESH_TOKEN_AUTH) shortly before they expire; `gatewayctl token`
prints one, which makes it usable as Claude Code's apiKeyHelper.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import http.server
import json
import os
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gatewayctl.output import CommandError
from gatewayctl.target import LOCAL_STATE, Target, resolve

REDIRECT_PORT = 8765
REDIRECT_PATH = "/callback"
REFRESH_MARGIN_SECONDS = 120


def register(sub: Any) -> None:
    parser = sub.add_parser("login", help="sign in and cache an access token for the gateway")
    parser.add_argument("--username", help="local stack: the user name (a demo person, see `local up`)")
    parser.add_argument(
        "--password", help="local stack: the password (default: $GATEWAY_PASSWORD, else prompt)"
    )
    parser.add_argument(
        "--domain", help="cloud: the Cognito domain URL (https://<prefix>.auth.<region>.amazoncognito.com)"
    )
    parser.add_argument("--port", type=int, default=REDIRECT_PORT, help="cloud: the loopback redirect port")
    parser.add_argument(
        "--no-browser", action="store_true", help="cloud: print the sign-in URL, do not open it"
    )
    parser.set_defaults(func=_login)


def _login(args: Any) -> int:
    target = resolve(args)
    cache = cache_path(target, getattr(args, "env", "dev"))
    if target.kind == "local":
        username = args.username or input("user name: ")
        password = args.password or os.environ.get("GATEWAY_PASSWORD") or getpass.getpass("password: ")
        tokens = password_login(target, username, password)
    else:
        if not args.domain:
            raise CommandError("cloud login needs --domain (the user pool's Cognito domain URL)")
        opener = (lambda url: print(f"open this URL to sign in:\n  {url}")) if args.no_browser else _open
        tokens = pkce_login(target, args.domain, port=args.port, open_browser=opener)
    save(cache, tokens)
    who = tokens.get("username") or "you"
    print(f"signed in as {who}; token cached in {cache} (valid {int(tokens['expires_at'] - time.time())}s)")
    return 0


def _open(url: str) -> None:
    print(f"opening the browser to sign in (or open this URL):\n  {url}")
    webbrowser.open(url)


# -- the cache ---------------------------------------------------------------------------------


def cache_path(target: Target, env: str = "dev") -> Path:
    if target.kind == "local":
        return LOCAL_STATE.parent / "token.json"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "claude-gateway" / f"{env}-{target.region}.json"


def save(path: Path, tokens: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(tokens, out)
    tmp.replace(path)


def load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def fresh_token(target: Target, path: Path, *, now: Callable[[], float] = time.time) -> str:
    """The cached access token, refreshed first if it expires within REFRESH_MARGIN_SECONDS."""
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


def endpoint_of(target: Target) -> str:
    if target.kind == "local":
        return target.local.get("endpoint") or target.output("ApiEndpoint")
    return target.output("ApiEndpoint")


# -- the local stack: user name and password ----------------------------------------------------


def password_login(target: Target, username: str, password: str) -> dict[str, Any]:
    client_id = target.output("UserPoolClientId")
    cognito = target.client("cognito-idp")
    try:
        result = cognito.initiate_auth(
            ClientId=client_id,
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": password},
        )
    except cognito.exceptions.NotAuthorizedException:
        raise CommandError("wrong user name or password") from None
    except cognito.exceptions.UserNotFoundException:
        raise CommandError("wrong user name or password") from None
    if "AuthenticationResult" not in result:
        raise CommandError(
            f"sign-in needs a {result.get('ChallengeName')} challenge, which login does not handle"
        )
    return _tokens(result["AuthenticationResult"], client_id, username)


def _tokens(result: dict[str, Any], client_id: str, username: str | None) -> dict[str, Any]:
    access = result.get("AccessToken") or result["access_token"]
    return {
        "access_token": access,
        "refresh_token": result.get("RefreshToken") or result.get("refresh_token"),
        "expires_at": time.time() + int(result.get("ExpiresIn") or result.get("expires_in") or 3600),
        "client_id": client_id,
        "username": username or _claim(access, "username"),
    }


def _claim(jwt_text: str, name: str) -> Any:
    try:
        payload = jwt_text.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get(name)
    except (IndexError, ValueError):
        return None


# -- the cloud: authorization code with PKCE and a loopback redirect ---------------------------


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) as RFC 7636 defines them."""
    verifier = secrets.token_urlsafe(64)[:96]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def authorize_url(
    domain: str, client_id: str, redirect_uri: str, scope: str, state: str, challenge: str
) -> str:
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": f"openid email {scope}",
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return f"{domain.rstrip('/')}/oauth2/authorize?{query}"


def pkce_login(
    target: Target,
    domain: str,
    *,
    port: int = REDIRECT_PORT,
    open_browser: Callable[[str], None] = _open,
    timeout: float = 300.0,
) -> dict[str, Any]:
    client_id = target.output("UserPoolClientId")
    redirect_uri = f"http://localhost:{port}{REDIRECT_PATH}"
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(24)
    received: dict[str, str] = {}
    done = threading.Event()

    class Callback(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            url = urllib.parse.urlsplit(self.path)
            if url.path != REDIRECT_PATH:
                self.send_error(404)
                return
            received.update({k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()})
            ok = received.get("state") == state and "code" in received
            self.send_response(200 if ok else 400)
            self.send_header("content-type", "text/plain; charset=utf-8")
            self.end_headers()
            self.wfile.write(
                b"Signed in; you can close this tab." if ok else b"Sign-in failed; see the terminal."
            )
            done.set()

        def log_message(self, *args: Any) -> None:
            pass

    try:
        server = http.server.HTTPServer(("127.0.0.1", port), Callback)
    except OSError:
        raise CommandError(
            f"port {port} (the login redirect) is in use; pass --port (and register it)"
        ) from None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        open_browser(
            authorize_url(domain, client_id, redirect_uri, target.output("InvokeScope"), state, challenge)
        )
        if not done.wait(timeout):
            raise CommandError(f"no sign-in within {timeout:.0f}s")
    finally:
        server.shutdown()
        server.server_close()
    if received.get("error"):
        raise CommandError(
            f"sign-in refused: {received['error']} {received.get('error_description', '')}".strip()
        )
    if received.get("state") != state:
        raise CommandError("sign-in answer with a wrong state (not this login): refused")
    body = urllib.parse.urlencode(
        {
            "grant_type": "authorization_code",
            "client_id": client_id,
            "code": received["code"],
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
    ).encode()
    request = urllib.request.Request(
        f"{domain.rstrip('/')}/oauth2/token",
        data=body,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            result = json.load(response)
    except urllib.error.HTTPError as exc:
        raise CommandError(f"token exchange failed: HTTP {exc.code} {exc.read()[:200]!r}") from None
    return _tokens(result, client_id, None)
