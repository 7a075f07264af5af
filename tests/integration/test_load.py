"""Load: the local stack serves 1,000 requests from 16 concurrent clients with zero 5xx.

Every request goes the whole way: the local Cognito authorizer (a real token), the access-log stage,
the principal lookup, the quota reservation (a DynamoDB transaction in moto), the audit request
record (Kinesis), the Bedrock emulator over SigV4, settlement and the outcome record. One client in
four streams. The tenant's limits are set, and high enough for the run, so every reservation is a
real conditional transaction rather than the unlimited shortcut.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import anthropic

REQUESTS = 1000
CLIENTS = 16
TIME_LIMIT_SECONDS = 300  # the whole run; on an idle 2-core machine it takes ~30 s


def test_a_thousand_requests_from_sixteen_clients_without_a_5xx(local_stack, make_tenant, make_user, faults):
    tenant = make_tenant(
        "us",
        limits={"requests_per_minute": 100_000, "tokens_per_minute": 100_000_000, "tokens_per_day": 10**9},
    )
    users = [make_user(tenant) for _ in range(4)]
    statuses: Counter[int | str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + TIME_LIMIT_SECONDS
    shares = [REQUESTS // CLIENTS + (1 if i < REQUESTS % CLIENTS else 0) for i in range(CLIENTS)]

    def client_run(index: int) -> None:
        client = anthropic.Anthropic(
            base_url=local_stack.endpoint,
            auth_token=users[index % len(users)].token,
            max_retries=0,
            timeout=60,
        )
        kwargs = {"model": "claude-haiku-4-5", "max_tokens": 32}
        with client:
            for n in range(shares[index]):
                if time.monotonic() > deadline:
                    outcome: int | str = "not sent (time limit)"
                else:
                    messages = [{"role": "user", "content": f"client {index} request {n}"}]
                    try:
                        if index % 4 == 0:
                            with client.messages.stream(messages=messages, **kwargs) as stream:
                                stream.get_final_message()
                        else:
                            client.messages.create(messages=messages, **kwargs)
                        outcome = 200
                    except anthropic.APIStatusError as exc:
                        outcome = exc.status_code
                    except anthropic.APIConnectionError as exc:
                        outcome = f"connection error: {type(exc).__name__}"
                with lock:
                    statuses[outcome] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client_run, range(CLIENTS)))
    elapsed = time.monotonic() - started

    two_xx = sum(n for s, n in statuses.items() if isinstance(s, int) and 200 <= s < 300)
    five_xx = sum(n for s, n in statuses.items() if isinstance(s, int) and s >= 500)
    rate = REQUESTS / elapsed
    print(f"{REQUESTS} requests, {CLIENTS} clients: {dict(statuses)} in {elapsed:.1f}s ({rate:.0f}/s)")
    assert sum(statuses.values()) == REQUESTS
    assert five_xx == 0, statuses
    assert two_xx == REQUESTS, statuses
    assert elapsed < TIME_LIMIT_SECONDS
    # Every one of them reached Bedrock, in the tenant's first region (nothing was injected).
    assert faults.request_counts()["us-east-1"]["total"] == REQUESTS
