"""A client that leaves mid-stream, on the real server (uvicorn, ASGI 2.3: its send returns quietly and
Starlette cancels the response task): exactly one outcome record, the reservation settled to a bound
at or above the true usage (exact input from message_start plus max_tokens), the upstream stream closed."""

from __future__ import annotations

import sys
import time

import httpx
import pytest

pytestmark = pytest.mark.integration
MODEL = "claude-haiku-4-5"
MAX_TOKENS = 200


def pumps_running() -> int:
    """Threads of this process (the stack's app runs in it) inside the Bedrock adapter's stream pump."""
    count = 0
    for frame in sys._current_frames().values():
        while frame is not None:
            code = frame.f_code
            if code.co_name == "pump" and code.co_filename.endswith("adapters/bedrock.py"):
                count += 1
                break
            frame = frame.f_back
    return count


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_client_gone_after_the_first_event_is_recorded_once_settled_and_the_upstream_closed(
    caller, audit_stream
) -> None:
    # The upstream sends two events, then nothing for a long while: the gateway waits on it when the client leaves.
    caller.stack.set_fault("us-east-1", "stall", after_events=2, hang_seconds=20, count=1)
    headers = {"authorization": f"Bearer {caller.user.token}"}
    body = {
        "model": MODEL,
        "max_tokens": MAX_TOKENS,
        "stream": True,
        "messages": [{"role": "user", "content": "Tell me a long story"}],
    }
    url = f"{caller.stack.endpoint}/v1/messages"
    with httpx.Client(timeout=30) as client, client.stream("POST", url, json=body, headers=headers) as response:
        assert response.status_code == 200
        got = b""
        for chunk in response.iter_raw():
            got += chunk
            if b"event: message_start" in got:
                break
    # leaving the block closed the connection mid-stream
    assert wait_until(lambda: pumps_running() == 0), "the upstream stream was not closed"

    outcomes = audit_stream.outcomes(caller.tenant_id)
    time.sleep(0.5)  # a second record (the relay's and the route's clean-up both) would be there by now
    outcomes = audit_stream.outcomes(caller.tenant_id)
    assert len(outcomes) == 1, outcomes
    [outcome] = outcomes
    assert (outcome["event_type"], outcome["error_type"]) == ("error", "client_disconnected")
    assert outcome["input_tokens"] and outcome["input_tokens"] > 0

    usage = httpx.get(f"{caller.stack.endpoint}/v1/usage", headers=headers, timeout=10).json()
    minute = next(w for w in usage["windows"] if w["window"] == "minute")
    assert minute["requests"]["used"] == 1
    # settled to the exact input message_start reported plus max_tokens of output
    assert minute["tokens"]["used"] == outcome["input_tokens"] + MAX_TOKENS


def test_a_client_gone_while_sending_the_body_is_audited_as_a_disconnection_under_its_tenant(
    caller, audit_stream
) -> None:
    """Half a body and then the connection closes: one `error` record, `client_disconnected` (not a 500,
    not tenant `_unknown`), no reservation and no upstream call."""
    import socket
    from urllib.parse import urlsplit

    endpoint = urlsplit(caller.stack.endpoint)
    caller.stack.reset_counts()
    head = (
        f"POST /v1/messages HTTP/1.1\r\nHost: {endpoint.netloc}\r\n"
        f"authorization: Bearer {caller.user.token}\r\ncontent-type: application/json\r\n"
        "content-length: 100000\r\n\r\n"
    )
    with socket.create_connection((endpoint.hostname, endpoint.port), timeout=10) as sock:
        sock.sendall(head.encode() + b'{"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [')
        time.sleep(0.3)  # the server is reading the body when the client leaves

    [outcome] = audit_stream.outcomes(caller.tenant_id)  # filed under the caller's tenant
    assert (outcome["event_type"], outcome["error_type"], outcome["status"]) == ("error", "client_disconnected", 499)
    assert outcome["principal"]  # the caller's pseudonym
    assert caller.stack.recent_requests() == []
