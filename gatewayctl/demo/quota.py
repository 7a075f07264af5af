"""Step 3: a quota 429: dave's own limit of requests a minute is used up, the next one is refused."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gatewayctl.demo.cast import QUOTA_REQUESTS_PER_MINUTE
from gatewayctl.demo.model import HAIKU, Call, StepResult

if TYPE_CHECKING:
    from gatewayctl.demo.runner import Demo


def show(demo: Demo, result: StepResult) -> None:
    import anthropic

    dave = demo.people["dave"]
    client = demo.client(dave)
    limit = QUOTA_REQUESTS_PER_MINUTE
    demo.out.line(f"{dave.username} (tenant globex) has his own limit: {limit} requests a minute.")
    refused: anthropic.RateLimitError | None = None
    for attempt in range(1, limit + 2):
        try:
            raw = client.messages.with_raw_response.create(
                model=HAIKU, max_tokens=32, messages=[{"role": "user", "content": f"request {attempt}"}]
            )
        except anthropic.RateLimitError as exc:
            refused = exc
            break
        headers = raw.headers
        raw.parse()
        request_id = headers.get("request-id", "")
        demo.calls.append(Call(request_id, f"3 quota #{attempt}", "globex", "response", 200))
        demo.out.line(
            f"request {attempt}: 200 (anthropic-ratelimit-requests-limit: "
            f"{headers.get('anthropic-ratelimit-requests-limit', '-')}; request id {request_id})"
        )
    client.close()
    if refused is None:
        demo.check(result, False, f"request {limit + 1} within a minute is refused with 429")
        return
    body = refused.body.get("error", {}) if isinstance(refused.body, dict) else {}
    headers = refused.response.headers
    request_id = headers.get("request-id", "")
    retry_after = headers.get("retry-after")
    demo.calls.append(Call(request_id, "3 quota 429", "globex", "denied", 429))
    demo.out.line(
        f"request {attempt}: {refused.status_code} {body.get('type')}: {body.get('message')} "
        f"(retry-after {retry_after}s, request id {request_id})"
    )
    # A re-run within the same minute finds part of the quota used already: fewer 200s, same 429.
    demo.check(
        result,
        refused.status_code == 429 and body.get("type") == "rate_limit_error",
        f"refused with 429 rate_limit_error once {limit} requests were used this minute",
    )
    demo.check(
        result,
        bool(retry_after) and int(retry_after) >= 1,
        f"the 429 says when to retry (retry-after: {retry_after})",
    )
