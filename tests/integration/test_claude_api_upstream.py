"""The optional third provider: the Claude API after Vertex, its key in Secrets Manager (moto here), served
by the same Messages-API adapter. A stand-in Claude API on loopback checks the key and the version and
answers from the emulators' replies; the gateway app runs behind the stack's authorizer."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gatewayctl.local.replies import make_reply, sse_events
from gatewayctl.local.servers import ThreadedServer, bind, port_of
from tests.integration.test_audit_app import serve  # noqa: F401  (the fixture)

pytestmark = pytest.mark.integration
MODEL = "claude-opus-4-7"
HELLO = [{"role": "user", "content": "hello Claude API"}]


class ClaudeApi:
    """POST /v1/messages with x-api-key and anthropic-version, as https://docs.anthropic.com/en/api/getting-started
    describes; 401 authentication_error for any other key."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/v1/messages", self.messages, methods=["POST"])])

    async def messages(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.requests.append({"headers": dict(request.headers), "body": dict(body)})
        if request.headers.get("x-api-key") != self.key:
            error = {"type": "authentication_error", "message": "invalid x-api-key"}
            return JSONResponse({"type": "error", "error": error}, status_code=401)
        if request.headers.get("anthropic-version") != "2023-06-01":
            error = {"type": "invalid_request_error", "message": "anthropic-version"}
            return JSONResponse({"type": "error", "error": error}, status_code=400)
        model = body.pop("model")
        streaming = body.pop("stream", False)
        reply = make_reply(body, 100, model)
        if streaming:
            return StreamingResponse(sse_events(reply, None), media_type="text/event-stream")
        return JSONResponse(reply.message())


@pytest.fixture
def claude_api(faults) -> Iterator[tuple[ClaudeApi, str, str]]:
    key = "sk-ant-test-" + uuid.uuid4().hex
    arn = faults.client("secretsmanager").create_secret(Name=f"claude-api-{uuid.uuid4().hex[:8]}", SecretString=key)[
        "ARN"
    ]
    api = ClaudeApi(key)
    sock = bind(0)
    server = ThreadedServer(api.app, [sock], name="claude-api").start()
    try:
        yield api, arn, f"http://127.0.0.1:{port_of(sock)}"
    finally:
        server.stop()


@pytest.fixture
def gateway_with_claude_api(local_stack, claude_api, serve):  # noqa: F811
    from gateway.app import create_app

    api, arn, url = claude_api
    settings = dataclasses.replace(
        local_stack.settings(),
        anthropic_api_secret_arn=arn,
        anthropic_api_base_url=url,
        anthropic_api_residencies=("us",),
    )
    return api, serve(create_app(settings))


def everything_else_down(stack) -> None:
    for region in ("us-east-1", "us-west-2"):
        stack.set_fault(region, "error", status=503)
    stack.set_fault("us-east5", "error", status=503, provider="vertex")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_the_claude_api_serves_when_bedrock_and_vertex_cannot(
    gateway_with_claude_api, make_tenant, make_user, audit_stream, faults, stream, capsys
) -> None:
    api, url = gateway_with_claude_api
    everything_else_down(faults)
    tenant = make_tenant("us")
    user = make_user(tenant, roles=("power_user",))
    with anthropic.Anthropic(base_url=url, auth_token=user.token, max_retries=0) as client:
        if stream:
            with client.messages.stream(model=MODEL, max_tokens=32, messages=HELLO) as events:
                message = events.get_final_message()
        else:
            message = client.messages.create(
                model=MODEL, max_tokens=32, messages=HELLO, extra_headers={"anthropic-beta": "files-api-2025-04-14"}
            )

    assert message.content[0].text == "Emulated reply to: hello Claude API"
    [sent] = api.requests
    assert sent["body"]["model"] == "claude-opus-4-7"
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    if not stream:
        assert sent["headers"]["anthropic-beta"] == "files-api-2025-04-14"  # the Claude API takes every flag
    [outcome] = audit_stream.outcomes(tenant)
    assert [a["provider"] for a in outcome["attempts"]] == ["bedrock", "bedrock", "vertex", "anthropic"]
    assert (outcome["provider"], outcome["region"], outcome["upstream_model_id"]) == (
        "anthropic",
        "global",
        "claude-opus-4-7",
    )
    assert outcome["output_tokens"] == message.usage.output_tokens
    assert api.key not in capsys.readouterr().out  # the key is in no log line


def test_a_wrong_key_is_misconfiguration(local_stack, claude_api, serve, make_tenant, make_user, faults):  # noqa: F811
    from gateway.app import create_app

    api, _, url = claude_api
    wrong = faults.client("secretsmanager").create_secret(Name=f"wrong-{uuid.uuid4().hex[:8]}", SecretString="nope")
    settings = dataclasses.replace(
        local_stack.settings(),
        anthropic_api_secret_arn=wrong["ARN"],
        anthropic_api_base_url=url,
        anthropic_api_residencies=("us",),
    )
    app = create_app(settings)
    gateway_url = serve(app)
    everything_else_down(faults)
    tenant = make_tenant("us")
    user = make_user(tenant, roles=("power_user",))
    with (
        anthropic.Anthropic(base_url=gateway_url, auth_token=user.token, max_retries=0) as client,
        pytest.raises(anthropic.InternalServerError) as caught,
    ):
        client.messages.create(model=MODEL, max_tokens=32, messages=HELLO)
    assert "misconfigured" in caught.value.body["error"]["message"]
    assert len(api.requests) == 1 and api.requests[0]["headers"]["x-api-key"] == "nope"
