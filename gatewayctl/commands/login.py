"""gatewayctl login: get a Cognito access token for the gateway and cache it.

- Local stack: user name and password through the emulated pool (InitiateAuth USER_PASSWORD_AUTH
  with the people client), since moto has no hosted UI.
- Cloud: the authorization code flow with PKCE (S256) and a loopback redirect
  (http://localhost:8765/callback, stacks.definitions.CLI_CALLBACK_URL, which the people client registers
  in every environment; Cognito refuses any other redirect_uri, port included): the browser signs in
  on the Cognito domain (`--domain https://<prefix>.auth.<region>.amazoncognito.com`), the code
  comes back to a one-shot local HTTP server, and is exchanged at <domain>/oauth2/token. The token
  then carries the `<resource-server>/invoke` scope the API requires.

Tokens are kept with mode 600 (gatewayctl/credentials.py): next to the local stack's state, and
for the cloud in the user's config dir together with what a refresh needs, so that `gatewayctl
token` (Claude Code's apiKeyHelper) works from any directory with no AWS credentials. A cloud login
given --client-id and --endpoint needs no AWS credentials either. Login never prompts without a
terminal: what it would ask for is then a one-line error.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import http.server
import json
import os
import re
import secrets
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gatewayctl import credentials
from gatewayctl.credentials import fresh_token, load, save  # noqa: F401 (this module's API)
from gatewayctl.output import CommandError
from gatewayctl.target import LOCAL_STATE, Target, resolve
from stacks.definitions import CLI_REDIRECT_PATH, CLI_REDIRECT_PORT, USER_POOL

# The stacks register exactly this redirect on the people client; another --port must be registered too.
REDIRECT_PORT = CLI_REDIRECT_PORT
REDIRECT_PATH = CLI_REDIRECT_PATH


def register(sub: Any) -> None:
    parser = sub.add_parser("login", help="sign in and cache an access token for the gateway")
    parser.add_argument("--username", help="local stack: the user name (a demo person, see `local up`)")
    parser.add_argument(
        "--password", help="local stack: the password (default: $GATEWAY_PASSWORD, else asked on a terminal)"
    )
    parser.add_argument(
        "--domain",
        help="cloud: the Cognito domain URL (https://<prefix>.auth.<region>.amazoncognito.com); default: the "
        "stack's CognitoDomainUrl output",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=REDIRECT_PORT,
        help="cloud: the loopback redirect port (another than the default must be a registered callback URL)",
    )
    parser.add_argument(
        "--no-browser", action="store_true", help="cloud: print the sign-in URL, do not open it"
    )
    parser.add_argument(
        "--client-id", help="cloud: the people app client id (UserPoolClientId); with --endpoint, no AWS access needed"
    )
    parser.add_argument("--endpoint", help="cloud: the gateway's URL (ApiEndpoint), with --client-id")
    parser.add_argument(
        "--scope", default=USER_POOL.invoke_scope, help=f"cloud: the invoke scope (default {USER_POOL.invoke_scope})"
    )
    parser.set_defaults(func=_login)


def _login(args: Any) -> int:
    env = getattr(args, "env", "dev")
    target = _cloud_from_flags(args) or resolve(args)
    if target.kind == "local":
        username = args.username or _ask("user name", input, "pass --username")
        password = (
            args.password
            or os.environ.get("GATEWAY_PASSWORD")
            or _ask("password", getpass.getpass, "pass --password or set GATEWAY_PASSWORD")
        )
        tokens = password_login(target, username, password)
        cache = cache_path(target, env)
        save(cache, tokens)
    else:
        # The stateless stack's CognitoDomainUrl output names the domain; --domain wins (or stands in for it).
        domain = args.domain or target.outputs.get("CognitoDomainUrl")
        if not domain:
            raise CommandError(
                "cloud login needs the Cognito domain: the stack has no CognitoDomainUrl output (deploy the current "
                "stacks) and no --domain was given"
            )
        if not _interactive():
            raise CommandError("cloud login signs in in a browser and waits for it: run it in a terminal")
        opener = (lambda url: print(f"open this URL to sign in:\n  {url}")) if args.no_browser else _open
        tokens = pkce_login(target, domain, port=args.port, open_browser=opener)
        cache = credentials.save_cloud_login(
            env,
            region=target.region,
            domain=domain,
            client_id=target.output("UserPoolClientId"),
            scope=target.output("InvokeScope"),
            endpoint=target.output("ApiEndpoint"),
            tokens=tokens,
        )
    who = tokens.get("username") or "you"
    print(f"signed in as {who}; token cached in {cache} (valid {int(tokens['expires_at'] - time.time())}s)")
    return 0


def _interactive() -> bool:
    return sys.stdin is not None and not sys.stdin.closed and sys.stdin.isatty()


def _ask(what: str, read: Callable[[str], str], instead: str) -> str:
    """Ask on the terminal; with no terminal (a helper, a pipe, CI) never wait: fail with what to do."""
    if not _interactive():
        raise CommandError(f"no terminal to ask for the {what}: {instead}")
    return read(f"{what}: ")


def _cloud_from_flags(args: Any) -> Target | None:
    """A cloud target from --domain, --client-id and --endpoint alone (no CloudFormation, no AWS access)."""
    if getattr(args, "target", None) == "local" or not (args.domain and args.client_id):
        return None
    if not args.endpoint:
        raise CommandError("--client-id needs --endpoint too (the gateway's URL, the stack's ApiEndpoint)")
    found = re.search(r"\.auth\.([a-z0-9-]+)\.amazoncognito\.com", args.domain)
    region = getattr(args, "region", None) or (found.group(1) if found else "unknown")
    outputs = {"UserPoolClientId": args.client_id, "InvokeScope": args.scope, "ApiEndpoint": args.endpoint}
    return Target(kind="cloud", region=region, outputs=outputs)


def _open(url: str) -> None:
    print(f"opening the browser to sign in (or open this URL):\n  {url}")
    webbrowser.open(url)


# -- where the tokens are kept (gatewayctl/credentials.py) ---------------------------------------


def cache_path(target: Target, env: str = "dev") -> Path:
    if target.kind == "local":
        return LOCAL_STATE.parent / "token.json"
    return credentials.cloud_login_path(env)


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
