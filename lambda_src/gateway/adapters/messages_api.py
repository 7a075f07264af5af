"""Upstreams that speak the Messages API natively: POST {base}/v1/messages, SSE in and SSE out.

One adapter, two kinds of upstream (docs/ARCHITECTURE.md, Upstreams):
- Bedrock's Messages-API endpoint on bedrock-runtime, `https://bedrock-runtime.{region}.amazonaws.com/anthropic`
  (AWS recommends bedrock-runtime for new applications, with IAM authentication and invocation logging:
  https://docs.aws.amazon.com/bedrock/latest/userguide/inference-messages-api.html), signed with
  botocore's own SigV4 for service `bedrock` (bedrock-runtime's signing name) and the container's credentials;
- optionally the Claude API (or Claude Platform on AWS), with an API key read once from Secrets Manager.

Raw passthrough: the caller's body goes out with `model` set to this upstream's id (and `stream` only
when streaming); the response body and every SSE event come back unchanged. `anthropic-version` is a
header set here, never the SDK's default; `anthropic-beta` is a header, already filtered by the chain for
this upstream's wire. No SDK on the hot path (its import costs a second), no retries (httpx makes none):
the failover chain owns retries and the time budget. httpx and botocore.auth are imported on first use.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any, Protocol

import anyio

from gateway.adapters import aws
from gateway.domain.errors import ERROR_TYPE_BY_STATUS
from gateway.domain.failover import (
    CLIENT,
    MISCONFIG,
    NEXT,
    RETRY,
    UpstreamFailure,
    possibly_billed,
    timed_out,
)
from gateway.domain.sse import SSEParser
from gateway.models.catalog import CatalogEntry

# The version AWS documents for the Messages API (the inference-messages-api page above) and for Claude
# Platform on AWS (https://docs.aws.amazon.com/claude-platform/latest/userguide/making-requests.md).
# SDK 2.x would send 2026-10-21, which ARN-versioned Bedrock models refuse.
ANTHROPIC_VERSION = "2023-06-01"
CLAUDE_API_URL = "https://api.anthropic.com"
_ANTHROPIC_ERROR_TYPES = {
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "overloaded_error",
    "timeout_error",
}
# A mid-stream `error` event carries a type and no status: the status it stands for.
_STREAM_ERROR_STATUS = {"overloaded_error": 529, "rate_limit_error": 429, "invalid_request_error": 400}


def bedrock_messages_url(region: str) -> str:
    return f"https://bedrock-runtime.{region}.amazonaws.com/anthropic"


def messages_body(body: Mapping[str, Any], model_id: str, *, stream: bool) -> bytes:
    """The caller's body with this upstream's model id; `stream` only on a stream (it chooses SSE)."""
    out = {k: v for k, v in body.items() if k != "stream"}
    out["model"] = model_id
    if stream:
        out["stream"] = True
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()


def classify(status: int, body: bytes, headers: Mapping[str, str], service: str) -> UpstreamFailure:
    """An HTTP answer that is not 200, in the failover loop's terms (same policy as Bedrock's and Vertex's).

    The Messages API answers `{"type":"error","error":{"type":...,"message":...}}`; an AWS front door
    (signature, throttling before the model) may answer rest-json `{"message":...}` with x-amzn-ErrorType.
    """
    message, code, error_type = f"{service} answered HTTP {status}", f"HTTP{status}", ""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict):
            message = str(error.get("message") or message)
            error_type = str(error.get("type") or "")
            code = error_type or code
        elif parsed.get("message") or parsed.get("Message"):
            message = str(parsed.get("message") or parsed.get("Message"))
    aws_type = _header(headers, "x-amzn-errortype").split(":", 1)[0]
    if aws_type:
        code = aws_type
    if status in (401, 403, 404):
        kind = MISCONFIG
    elif status == 424:
        kind = RETRY
    elif status in (408, 429) or status >= 500:
        kind = NEXT
    else:
        kind = CLIENT
    if error_type not in _ANTHROPIC_ERROR_TYPES:
        error_type = "overloaded_error" if status == 529 else ERROR_TYPE_BY_STATUS.get(status, "api_error")
    return UpstreamFailure(kind, status, error_type, message, code=code)


def stream_error(data: bytes) -> UpstreamFailure:
    """An `event: error` in an SSE stream: overloaded/rate limited -> next, invalid -> the caller's, else retry."""
    try:
        error = json.loads(data).get("error", {})
    except (ValueError, AttributeError):
        error = {}
    if not isinstance(error, dict):
        error = {}
    error_type = str(error.get("type") or "api_error")
    status = _STREAM_ERROR_STATUS.get(error_type, 500)
    kind = CLIENT if status == 400 else RETRY if status == 500 else NEXT
    return UpstreamFailure(
        kind, status, error_type, str(error.get("message") or "stream error"), code=error_type
    )


def transport_failure(exc: Exception, kind: str, service: str) -> UpstreamFailure:
    """httpx's timeouts and connection errors; `kind` for a connection lost mid-stream (before any event)."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        # A connect or pool timeout never sent the request; a read or write timeout may have.
        sent = not isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))
        return timed_out(f"{service} did not answer in time ({type(exc).__name__})", possibly_billed=sent)
    return UpstreamFailure(kind, 502, "api_error", str(exc) or type(exc).__name__, code=type(exc).__name__)


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), "")
    return str(value)


# -- authentication -------------------------------------------------------------------------------


class Auth(Protocol):
    async def sign(self, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        """The headers to send: `headers` plus this upstream's credentials."""

    def reset(self) -> None:
        """Forget cached credentials (after a 401/403: they may have been rotated)."""


class SigV4(Auth):
    """AWS SigV4 with botocore's signer and the container's credentials (the Lambda role's in the cloud)."""

    def __init__(self, region: str, service: str = "bedrock", *, credentials: Any = None) -> None:
        self.region = region
        self.service = service
        self._credentials = credentials

    async def sign(self, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        credentials = self._credentials or aws.credentials()
        if credentials is None:
            raise UpstreamFailure(MISCONFIG, 500, "api_error", "no AWS credentials", code="NoCredentials")
        refresh_needed = getattr(credentials, "refresh_needed", None)
        if refresh_needed is not None and refresh_needed():
            # A refresh is a blocking call (container credentials endpoint); keep it off the event loop.
            frozen = await asyncio.to_thread(credentials.get_frozen_credentials)
        else:
            frozen = getattr(credentials, "get_frozen_credentials", lambda: credentials)()
        request = AWSRequest(method="POST", url=url, data=body, headers=headers)
        SigV4Auth(frozen, self.service, self.region).add_auth(request)
        return dict(request.headers.items())

    def reset(self) -> None:
        """botocore refreshes the role's credentials itself."""


class SecretApiKey(Auth):
    """An API key in a Secrets Manager secret (the string, or JSON with `api_key`), fetched once per
    container and kept in memory; never logged. Claude API: `x-api-key`. Claude Platform on AWS: the key
    as a bearer token and the `anthropic-workspace-id` header
    (https://docs.aws.amazon.com/claude-platform/latest/userguide/authentication.html)."""

    def __init__(
        self,
        secret_arn: str,
        *,
        workspace_id: str | None = None,
        fetch: Callable[[str], str] | None = None,
    ) -> None:
        self.secret_arn = secret_arn
        self.workspace_id = workspace_id
        self._fetch = fetch or _fetch_secret
        self._key: str | None = None
        self._lock: asyncio.Lock | None = None

    async def sign(self, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        key = await self.key()
        out = dict(headers)
        if self.workspace_id:
            out["authorization"] = f"Bearer {key}"
            out["anthropic-workspace-id"] = self.workspace_id
        else:
            out["x-api-key"] = key
        return out

    async def key(self) -> str:
        if self._key is not None:
            return self._key
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._key is None:
                try:
                    self._key = _api_key(await asyncio.to_thread(self._fetch, self.secret_arn))
                except Exception as exc:
                    # The exception names the secret and the error, never its value.
                    raise UpstreamFailure(
                        MISCONFIG,
                        500,
                        "api_error",
                        f"the Claude API key secret could not be read ({type(exc).__name__})",
                        code="ApiKeyUnavailable",
                    ) from None
        return self._key

    def reset(self) -> None:
        self._key = None

    def __repr__(self) -> str:  # no key in any log line or traceback
        return f"SecretApiKey({self.secret_arn!r})"


def _fetch_secret(secret_arn: str) -> str:
    # arn:aws:secretsmanager:<region>:<account>:secret:<name>
    region = secret_arn.split(":")[3]
    client = aws.client("secretsmanager", region, connect_timeout=3, read_timeout=5)
    return client.get_secret_value(SecretId=secret_arn)["SecretString"]


def _api_key(secret: str) -> str:
    text = secret.strip()
    if text.startswith("{"):
        value = json.loads(text).get("api_key")
        if not isinstance(value, str) or not value:
            raise ValueError("the secret's JSON has no api_key")
        return value
    if not text:
        raise ValueError("the secret is empty")
    return text


# -- the upstream ---------------------------------------------------------------------------------


class MessagesApiUpstream:
    """One Messages-API host: `model_ids(entry, residency)` says which catalog entries it serves, as what id."""

    def __init__(
        self,
        *,
        provider: str,
        region: str,
        wire: str,
        base_url: str,
        auth: Auth,
        model_ids: Callable[[CatalogEntry, str], str | None],
        service: str,
        http: Any = None,
    ) -> None:
        self.provider = provider
        self.region = region
        self.wire = wire
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self._model_ids = model_ids
        self.service = service  # for messages: "Bedrock Messages API", "Claude API"
        self._http = http

    def model_id(self, entry: CatalogEntry, residency: str) -> str | None:
        return self._model_ids(entry, residency)

    @property
    def url(self) -> str:
        return f"{self.base_url}/v1/messages"

    def warm(self) -> None:
        """Pay the imports at startup (in a thread), not on the first request."""
        import botocore.auth  # noqa: F401
        import httpx  # noqa: F401

    def _client(self) -> Any:
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32)
            )
        return self._http

    async def _headers(self, payload: bytes, beta: tuple[str, ...], *, stream: bool) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
        }
        if beta:
            headers["anthropic-beta"] = ",".join(beta)
        return await self.auth.sign(self.url, payload, headers)

    def _failure(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamFailure:
        if status in (401, 403):
            self.auth.reset()
        return classify(status, body, headers, self.service)

    async def invoke(
        self, model_id: str, body: dict[str, Any], *, beta: tuple[str, ...], timeout: float
    ) -> bytes:
        import httpx

        payload = messages_body(body, model_id, stream=False)
        headers = await self._headers(payload, beta, stream=False)
        try:
            response = await asyncio.wait_for(
                self._client().post(
                    self.url,
                    content=payload,
                    headers=headers,
                    timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
                ),
                timeout,
            )
        except TimeoutError:
            raise timed_out(f"{self.service} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise transport_failure(exc, NEXT, self.service) from None
        if response.status_code != 200:
            raise self._failure(response.status_code, response.content, response.headers)
        return response.content

    def stream(
        self, model_id: str, body: dict[str, Any], *, beta: tuple[str, ...], timeout: float
    ) -> AsyncIterator[tuple[str, bytes]]:
        async def request() -> Any:
            import httpx

            payload = messages_body(body, model_id, stream=True)
            headers = await self._headers(payload, beta, stream=True)
            return self._client().build_request(
                "POST",
                self.url,
                content=payload,
                headers=headers,
                timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
            )

        return relay_sse(self._client(), request, self.service, self._failure)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


async def relay_sse(
    client: Any,
    request: Callable[[], Awaitable[Any]],
    service: str,
    failure: Callable[[int, bytes, Mapping[str, str]], Exception],
) -> AsyncIterator[tuple[str, bytes]]:
    """Send a streaming Messages request (httpx) and relay its SSE events, for every upstream that speaks
    the Messages API: a connection that fails before an answer is the next region's, an answer other than
    200 is `failure`'s to classify, and a stream that fails once accepted may have run (possibly billed)."""
    import httpx

    try:
        response = await client.send(await request(), stream=True)
    except httpx.HTTPError as exc:
        raise transport_failure(exc, NEXT, service) from None
    try:
        if response.status_code != 200:
            raise failure(response.status_code, await response.aread(), response.headers)
        parser = SSEParser()
        try:
            async for chunk in response.aiter_raw():
                for event, data in parser.feed(chunk):
                    if event == "error":  # accepted, then failed: it may have run
                        raise possibly_billed(stream_error(data))
                    yield event, data
        except httpx.HTTPError as exc:
            raise possibly_billed(transport_failure(exc, RETRY, service)) from None
    finally:
        # Shielded: when the client leaves, Starlette cancels the relay, and an unshielded close
        # would be cancelled before the connection is released.
        with anyio.CancelScope(shield=True):
            await response.aclose()


# -- which catalog entries each upstream serves ---------------------------------------------------


def bedrock_messages_model_id(id_form: str) -> Callable[[CatalogEntry, str], str | None]:
    """Bedrock's Messages-API endpoint serves the entries whose `bedrock_api` is "messages", in the
    residencies the catalog gives them a profile for. `id_form` "base" sends the base model id
    (`anthropic.claude-opus-4-7`, the Bedrock id Anthropic's model overview lists and the form the SDK's
    Messages-API client and Claude Code's catalog send); "profile" sends the residency's inference profile
    id. Which forms the endpoint accepts is not documented: docs/models.md says what is unverified."""

    def model_id(entry: CatalogEntry, residency: str) -> str | None:
        if entry.bedrock_api != "messages" or residency not in entry.bedrock_profiles:
            return None
        if id_form == "profile":
            return entry.bedrock_profiles[residency]
        return entry.bedrock_model_id

    return model_id


def claude_api_model_id(entry: CatalogEntry, residency: str, *, today: date | None = None) -> str | None:
    """The Claude API serves an entry under its Claude API id, unless it retired there: the catalog's
    lifecycle is the Claude API's schedule (docs/models.md), so a deprecated model is not sent there after
    its end-of-life date, even before the catalog marks it retired (Bedrock and Vertex keep their own)."""
    lifecycle = entry.lifecycle
    if lifecycle.status == "retired":
        return None
    today = today or datetime.now(UTC).date()
    if lifecycle.end_of_life is not None and today > date.fromisoformat(lifecycle.end_of_life):
        return None
    return entry.anthropic_id


def claude_api_region(base_url: str) -> str:
    """The region an attempt is recorded under: Claude Platform on AWS's host names it
    (aws-external-anthropic.<region>.api.aws); the Claude API is one global endpoint."""
    host = base_url.split("://", 1)[-1].split("/", 1)[0]
    if host.startswith("aws-external-anthropic.") and host.endswith(".api.aws"):
        return host.split(".")[1]
    return "global"
