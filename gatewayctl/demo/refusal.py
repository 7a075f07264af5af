"""Step 2: a refused capability: a basic_user asks for opus, then offers tools; no model is called."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gatewayctl.demo.model import HAIKU, OPUS, Call, StepResult

if TYPE_CHECKING:
    from gatewayctl.demo.runner import Demo


def show(demo: Demo, result: StepResult) -> None:
    import anthropic

    alice = demo.people["alice"]
    client = demo.client(alice)
    before = demo.upstream_counts()
    tool = {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    asks = [
        ("2 opus", f"model={OPUS!r}", {"model": OPUS}),
        ("2 tools", f"model={HAIKU!r} with tools=[get_weather]", {"model": HAIKU, "tools": [tool]}),
    ]
    for label, described, kwargs in asks:
        demo.out.line(f"{alice.username} (basic_user) asks for {described}:")
        try:
            client.messages.create(
                max_tokens=64, messages=[{"role": "user", "content": "use the tool, please"}], **kwargs
            )
        except anthropic.PermissionDeniedError as exc:
            body = exc.body.get("error", {}) if isinstance(exc.body, dict) else {}
            request_id = exc.response.headers.get("request-id", "")
            demo.out.line(f"-> {exc.status_code} {body.get('type')}: {body.get('message')}", indent=4)
            demo.calls.append(Call(request_id, label, "acme", "denied", 403))
            demo.check(
                result,
                exc.status_code == 403 and body.get("type") == "permission_error",
                f"refused with 403 permission_error (request id {request_id})",
            )
        else:
            demo.check(result, False, f"refused: {described} was answered instead")
    client.close()
    called = demo.calls_since(before)
    demo.check(
        result,
        not called,
        f"no model was called for the refused requests (upstream calls: {called or 'none'})",
    )
