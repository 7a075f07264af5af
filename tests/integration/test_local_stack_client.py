"""The client side: gatewayctl login (password flow locally, PKCE against a stand-in Cognito domain),
the token cache and refresh, `gatewayctl token` and `gatewayctl chat` against the harness's stack."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import stat
import threading
import time
import urllib.parse
import uuid

import anthropic
import httpx
import pytest

from gatewayctl.commands import login
from gatewayctl.local.processes import free_port
from gatewayctl.output import CommandError
from stacks.config import load
from tests.infrastructure.sites import site_for


@pytest.fixture
def person(backing_stack, make_tenant, make_user):
    return make_user(make_tenant("us"), ("basic_user",))


def test_password_login_caches_a_token_the_gateway_accepts(local_stack, person, tmp_path):
    target = local_stack.target()
    tokens = login.password_login(target, person.username, person.password)
    cache = tmp_path / "token.json"
    login.save(cache, tokens)

    token = login.fresh_token(target, cache)
    reply = anthropic.Anthropic(
        base_url=login.endpoint_of(target), auth_token=token, max_retries=0
    ).messages.create(
        model="claude-haiku-4-5", max_tokens=20, messages=[{"role": "user", "content": "via login"}]
    )

    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert tokens["username"] == person.username and tokens["refresh_token"]
    assert reply.content[0].text == "Emulated reply to: via login"


def test_wrong_password_is_a_clear_error(backing_stack, person):
    with pytest.raises(CommandError, match="wrong user name or password"):
        login.password_login(backing_stack.target(), person.username, "not-the-password")


def test_a_token_close_to_expiry_is_refreshed(backing_stack, person, tmp_path):
    target = backing_stack.target()
    cache = tmp_path / "token.json"
    tokens = login.password_login(target, person.username, person.password)
    login.save(cache, {**tokens, "expires_at": 0})  # as if it had expired

    refreshed = login.fresh_token(target, cache)

    assert refreshed != tokens["access_token"]
    assert login.load(cache)["access_token"] == refreshed
    assert login.load(cache)["expires_at"] > 0
    assert login.fresh_token(target, cache) == refreshed  # fresh now: served from the cache


def test_not_signed_in_or_not_refreshable(backing_stack, person, tmp_path):
    target = backing_stack.target()
    with pytest.raises(CommandError, match="not signed in"):
        login.fresh_token(target, tmp_path / "none.json")
    cache = tmp_path / "token.json"
    tokens = login.password_login(target, person.username, person.password)
    login.save(cache, {**tokens, "expires_at": 0, "refresh_token": None})
    with pytest.raises(CommandError, match="login"):
        login.fresh_token(target, cache)


def registered_callback_urls(env: str) -> tuple[str, ...]:
    """The people client's callback URLs in `env`, as the stack registers them (test_stateless checks the
    synthesized template holds exactly these)."""
    return load(env, site_for(env)).people_callback_urls


class FakeCognitoDomain:
    """The two hosted-UI endpoints login uses: /oauth2/authorize (signs the user in at once and
    redirects with a code) and /oauth2/token (checks the PKCE verifier against the challenge).

    Like Cognito, it refuses a redirect_uri that is not one of the client's registered callback URLs
    (exactly, port included): the browser then lands on the domain's error page, never on the redirect.
    """

    def __init__(self, callback_urls: tuple[str, ...]) -> None:
        self.callback_urls = callback_urls
        self.codes: dict[str, dict] = {}
        self.exchanges: list[dict] = []
        self.refused: list[str] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                query = {
                    k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).items()
                }
                if query.get("redirect_uri") not in fake.callback_urls:
                    fake.refused.append(query.get("redirect_uri", ""))
                    self.send_response(400)
                    self.send_header("content-type", "text/plain")
                    self.end_headers()
                    self.wfile.write(b"error=redirect_mismatch")
                    return
                code = uuid.uuid4().hex
                fake.codes[code] = query
                location = f"{query['redirect_uri']}?" + urllib.parse.urlencode(
                    {"code": code, "state": query["state"]}
                )
                self.send_response(302)
                self.send_header("location", location)
                self.end_headers()

            def do_POST(self):  # noqa: N802
                form = {
                    k: v[0]
                    for k, v in urllib.parse.parse_qs(
                        self.rfile.read(int(self.headers["content-length"])).decode()
                    ).items()
                }
                fake.exchanges.append(form)
                asked = fake.codes.pop(form.get("code"), None)
                digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                challenge = base64.urlsafe_b64encode(digest).decode().rstrip("=")
                ok = (
                    asked
                    and asked["code_challenge"] == challenge
                    and asked["redirect_uri"] == form["redirect_uri"]
                    and form["redirect_uri"] in fake.callback_urls
                )
                body = json.dumps(
                    {
                        "access_token": "header.eyJ1c2VybmFtZSI6ImRhbmEifQ.sig",
                        "refresh_token": "r",
                        "expires_in": 3600,
                        "token_type": "Bearer",
                    }
                    if ok
                    else {"error": "invalid_grant"}
                )
                self.send_response(200 if ok else 400)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(params=["dev", "staging", "prod"])
def cognito_domain(request):
    fake = FakeCognitoDomain(registered_callback_urls(request.param))
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def _following_browser(opened: list[str]):
    def browser(url):  # the person signs in: the browser follows the redirect to our loopback server
        opened.append(url)
        threading.Thread(
            target=httpx.get, args=(url,), kwargs={"follow_redirects": True}, daemon=True
        ).start()

    return browser


def _login_on_the_registered_port(target, domain: str, browser, timeout: float = 60.0) -> dict:
    """The registered port is fixed, so another login test (another worker, another checkout) may hold it
    for a moment: wait for it rather than fail."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return login.pkce_login(target, domain, open_browser=browser, timeout=20)
        except CommandError as exc:
            if "is in use" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def test_pkce_login_with_a_loopback_redirect(backing_stack, cognito_domain):
    # Given the environment's registered callbacks, when login runs with its default (registered) port...
    target = backing_stack.target()
    opened = []
    browser = _following_browser(opened)

    tokens = _login_on_the_registered_port(target, cognito_domain.url, browser)

    asked = urllib.parse.parse_qs(urllib.parse.urlsplit(opened[0]).query)
    assert asked["code_challenge_method"] == ["S256"]
    assert target.output("InvokeScope") in asked["scope"][0].split()
    assert asked["client_id"] == [target.output("UserPoolClientId")]
    assert tokens["access_token"].startswith("header.") and tokens["username"] == "dana"
    [exchange] = cognito_domain.exchanges
    assert exchange["grant_type"] == "authorization_code" and len(exchange["code_verifier"]) >= 43
    assert cognito_domain.refused == []


def test_pkce_login_with_an_unregistered_redirect_never_gets_a_code(backing_stack, cognito_domain):
    # A port that is not registered: Cognito (and the fake) refuse the redirect_uri, so no code comes back.
    port = free_port()
    with pytest.raises(CommandError, match="no sign-in within"):
        login.pkce_login(
            backing_stack.target(), cognito_domain.url, port=port, open_browser=_following_browser([]), timeout=3
        )
    assert cognito_domain.refused == [f"http://localhost:{port}/callback"]
    assert cognito_domain.exchanges == []


def test_pkce_login_refuses_an_answer_with_another_state(backing_stack, cognito_domain):
    port = free_port()

    def forged_browser(url):
        threading.Thread(
            target=httpx.get, args=(f"http://localhost:{port}/callback?code=x&state=forged",), daemon=True
        ).start()

    with pytest.raises(CommandError, match="wrong state"):
        login.pkce_login(
            backing_stack.target(), cognito_domain.url, port=port, open_browser=forged_browser, timeout=20
        )
    assert cognito_domain.exchanges == []


@pytest.fixture
def gatewayctl(tmp_path, run_gatewayctl):
    def run(*args: str):
        return run_gatewayctl(tmp_path / ".local", *args)

    return run


def test_login_token_and_chat_commands(local_stack, person, tmp_path, gatewayctl):
    (tmp_path / ".local").mkdir()
    (tmp_path / ".local" / "stack.json").write_text(json.dumps(local_stack.state()))

    logged_in = gatewayctl("login", "--username", person.username, "--password", person.password)
    token = gatewayctl("token")
    chat = gatewayctl("chat", "hello", "from", "the", "cli")
    plain = gatewayctl("chat", "--no-stream", "again")

    assert logged_in.returncode == 0, logged_in.stderr
    assert person.username in logged_in.stdout
    assert token.returncode == 0 and token.stdout.count(".") == 2  # only the JWT on stdout
    assert token.stdout.strip() == login.load(tmp_path / ".local" / "token.json")["access_token"]
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.strip() == "Emulated reply to: hello from the cli"
    assert "stop end_turn" in chat.stderr
    assert plain.stdout.strip() == "Emulated reply to: again"


def test_chat_without_login_says_what_to_do(local_stack, tmp_path, gatewayctl):
    (tmp_path / ".local").mkdir()
    (tmp_path / ".local" / "stack.json").write_text(json.dumps(local_stack.state()))
    result = gatewayctl("chat", "hi")
    assert result.returncode == 1 and "gatewayctl login" in result.stderr
