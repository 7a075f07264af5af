"""The local stack's API Gateway access log: an independent witness of every request id.

In the cloud, API Gateway writes one JSON line per request (the stack's format holds every field of
stacks.audit_queries.ACCESS_LOG_FORMAT) and Firehose delivers it under access-logs/dt=<date>/.
Locally, the authorizer in front of the app calls `write_access_log` once per request, after the
response, with the same fields, so `gatewayctl audit verify` has the same witness to join against.

One object per request: nothing is buffered, so nothing is lost when the local stack stops.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import uuid
from typing import Any

from gatewayctl.local.pump import put_locked_object
from stacks.audit_queries import ACCESS_LOG_FORMAT
from stacks.definitions import ACCESS_LOGS_PREFIX


def access_log_entry(
    *,
    request_id: str,
    ip: str,
    method: str,
    path: str,
    status: int,
    user_agent: str = "",
    response_length: int = 0,
    error_type: str = "",
    integration_status: str = "",
    request_time: float | None = None,
) -> dict[str, str]:
    """One access-log line as API Gateway renders ACCESS_LOG_FORMAT (every value a string, '-' when empty)."""
    values = {
        "request_id": request_id,
        "request_time": str(int((request_time if request_time is not None else time.time()) * 1000)),
        "http_method": method,
        "resource_path": path,
        "status": str(status),
        "response_length": str(response_length),
        "integration_status": integration_status,
        "source_ip": ip,
        "user_agent": user_agent,
        "error_type": error_type,
    }
    assert values.keys() == ACCESS_LOG_FORMAT.keys(), "keep in step with ACCESS_LOG_FORMAT"
    return {k: (v if v != "" else "-") for k, v in values.items()}


def write_access_log(s3: Any, bucket: str, **fields: Any) -> str:
    """Write one access-log line for a request (fields: those of `access_log_entry`); returns the key.

    The key follows the stack's Firehose layout: access-logs/dt=<yyyy-mm-dd>/<name>.gz (UTC).
    """
    entry = access_log_entry(**fields)
    when = time.gmtime(int(entry["request_time"]) / 1000)
    key = f"{ACCESS_LOGS_PREFIX}dt={time.strftime('%Y-%m-%d', when)}/access-{uuid.uuid4().hex}.gz"
    body = gzip.compress((json.dumps(entry, separators=(",", ":")) + "\n").encode(), mtime=0)
    put_locked_object(s3, bucket, key, body, ContentEncoding="gzip")
    return key


class AccessLogMiddleware:
    """Wraps the local authorizer as the API Gateway stage wraps everything: one access-log line per
    request, whether the authorizer refused it or the app answered it.

    Hook (gatewayctl/local/stack.py): serve `AccessLogMiddleware(authorizer, s3, bucket)` instead of
    the authorizer itself. The request id is the one the authorizer put on the response (`request-id`),
    the same id the app audits, as $context.requestId is in the cloud.
    """

    def __init__(self, app: Any, s3: Any, bucket: str) -> None:
        self.app = app
        self.s3 = s3
        self.bucket = bucket

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.time()
        seen: dict[str, Any] = {"status": 500, "request_id": "", "length": 0}

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() in (b"request-id", b"x-amzn-requestid") and not seen["request_id"]:
                        seen["request_id"] = value.decode()
            elif message["type"] == "http.response.body":
                seen["length"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            headers = dict(scope.get("headers", []))
            await asyncio.to_thread(
                write_access_log,
                self.s3,
                self.bucket,
                request_id=seen["request_id"] or f"unanswered-{uuid.uuid4()}",
                ip=(scope.get("client") or ("-", 0))[0],
                method=scope["method"],
                path=scope["path"],
                status=seen["status"],
                user_agent=headers.get(b"user-agent", b"").decode(errors="replace"),
                response_length=seen["length"],
                # The local authorizer answers 401 itself, as API Gateway's Cognito authorizer does.
                error_type="UNAUTHORIZED" if seen["status"] == 401 else "",
                request_time=started,
            )
