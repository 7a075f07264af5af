"""Step 1: a streamed reply through the anthropic SDK, text deltas printed as they arrive."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gatewayctl.demo.model import HAIKU, Call, StepResult

if TYPE_CHECKING:
    from gatewayctl.demo.runner import Demo


def show(demo: Demo, result: StepResult) -> None:
    alice = demo.people["alice"]
    prompt = "Tell me what a gateway for Claude does"
    demo.out.line(f"{alice.username} (basic_user, tenant acme) streams a reply from {HAIKU}:")
    demo.out.line(f"client.messages.stream(model={HAIKU!r}, max_tokens=256, messages=[{prompt!r}])")
    chunks: list[str] = []
    demo.out.write("    reply: ")
    with demo.client(alice).messages.stream(
        model=HAIKU, max_tokens=256, messages=[{"role": "user", "content": prompt}]
    ) as stream:
        for text in stream.text_stream:
            chunks.append(text)
            demo.out.write(text)
        message = stream.get_final_message()
        request_id = stream.response.headers.get("request-id", "")
    demo.out.write("\n")
    demo.calls.append(Call(request_id, "1 streamed", "acme", "response", 200))
    demo.out.line(
        f"request id {request_id}; {len(chunks)} text deltas; stop_reason {message.stop_reason}; "
        f"usage in/out {message.usage.input_tokens}/{message.usage.output_tokens} tokens"
    )
    demo.check(result, len(chunks) > 1, f"the reply arrived as a stream ({len(chunks)} text deltas)")
    demo.check(
        result,
        "".join(chunks) == f"Emulated reply to: {prompt}" and message.stop_reason == "end_turn",
        "the streamed text is the whole reply from the (emulated) Bedrock model",
    )
    demo.check(result, bool(request_id), "the gateway gave the reply a request id")
