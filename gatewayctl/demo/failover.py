"""Step 4: a throttled region (a fault set through the emulator's control API), served by failover."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gatewayctl.demo.model import HAIKU, Call, StepResult
from gatewayctl.local import control

if TYPE_CHECKING:
    from gatewayctl.demo.runner import Demo


def show(demo: Demo, result: StepResult) -> None:
    bob = demo.people["bob"]
    first, second = demo.state["bedrock"]["regions"]["us"][:2]
    demo.out.line(f"Tenant acme (residency us) is served from Bedrock {first}, then {second}.")
    demo.out.line(f'POST {demo.control_url}/_emulator/faults/{first}  {{"kind": "throttle", "count": 1}}')
    control.set_fault(demo.control_url, first, "throttle", count=1)
    try:
        before = demo.upstream_counts()
        raw = demo.client(bob).messages.with_raw_response.create(
            model=HAIKU, max_tokens=64, messages=[{"role": "user", "content": "Are you there?"}]
        )
        message = raw.parse()
        request_id = raw.headers.get("request-id", "")
        called = demo.calls_since(before)
    finally:
        control.clear_faults(demo.control_url, first)
    demo.calls.append(Call(request_id, "4 failover", "acme", "response", 200))
    demo.failover = {"request_id": request_id, "first": first, "second": second}
    demo.out.line(f'{bob.username} asks {HAIKU}: 200 "{message.content[0].text}" (request id {request_id})')
    demo.out.line(f"upstream calls for it, per region (emulator counts): {called}")
    demo.check(result, raw.http_response.status_code == 200, "the caller got a normal reply, not an error")
    demo.check(
        result,
        called.get(first) == 1 and called.get(second) == 1 and sum(called.values()) == 2,
        f"{first} was tried once (throttled), {second} served the reply",
    )
    demo.out.line("the recorded attempts are in the audit trail: step 5 shows them")
