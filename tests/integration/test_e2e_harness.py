"""The end-to-end suite's cloud path for machine tokens, which CI cannot reach otherwise: the
client-credentials grant at a Cognito domain's /oauth2/token (here a stand-in that answers as Cognito
does, minting with the local pool's key, and refuses a brand-new client once, as a client that has not
propagated yet), and the token it returns is one the gateway accepts."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator

import anthropic
import pytest

from gatewayctl import admin
from gatewayctl.local import tokens
from tests.e2e.deployment import Config, Deployment, MachineClient


@pytest.fixture
def token_endpoint(backing_stack) -> Iterator[tuple[str, list[dict]]]:
    seen: list[dict] = []

    class Cognito(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers["content-length"])).decode()))
            client_id, secret = base64.b64decode(self.headers["authorization"].split()[1]).decode().split(":", 1)
            seen.append({"path": self.path, "form": form, "client_id": client_id})
            if len(seen) == 1 or self.path != "/oauth2/token" or form.get("grant_type") != "client_credentials":
                self._answer(400, {"error": "invalid_client"})
                return
            token = tokens.machine_token(
                backing_stack.client("cognito-idp"), backing_stack.cognito, client_id, secret, scope=form["scope"]
            )
            self._answer(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Cognito)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_the_client_credentials_grant_gets_a_token_the_gateway_accepts(local_stack, make_tenant, token_endpoint):
    domain, seen = token_endpoint
    target = local_stack.target()
    tenant_id = make_tenant("us")
    made = admin.create_client(target, tenant_id, "e2e-probe", ["basic_user"])
    deployment = Deployment(Config("cloud", cognito_domain=domain), local_stack.endpoint, {}, [])
    deployment.set_scope(target.output("InvokeScope"))

    token = deployment.machine_token(MachineClient(made["client_id"], made["client_secret"], "e2e-probe"))

    assert len(seen) == 2  # refused once while "propagating", then granted
    assert seen[-1]["form"] == {"grant_type": "client_credentials", "scope": target.output("InvokeScope")}
    assert seen[-1]["client_id"] == made["client_id"]
    reply = anthropic.Anthropic(base_url=local_stack.endpoint, auth_token=token, max_retries=0).messages.create(
        model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.content[0].text
