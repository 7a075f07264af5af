"""Google Vertex AI as an upstream: rawPredict and streamRawPredict for Anthropic models.

Credentials come from Workload Identity Federation with AWS as the identity provider:
google.auth.aws.Credentials.from_info(settings.vertex_wif_config) signs a GetCallerIdentity request with
the Lambda's own AWS credentials and exchanges it at Google STS for an access token. No service-account
key exists, and the project comes from settings (no project-lookup call). google.auth and httpx are
imported only when a Vertex upstream is built, so the Bedrock-only path never pays for them.
Bodies carry anthropic_version vertex-2023-10-16 and no `model` (it is in the URL).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from gateway.adapters.messages_api import relay_sse, transport_failure
from gateway.domain.catalog import CatalogEntry
from gateway.domain.errors import ERROR_TYPE_BY_STATUS
from gateway.domain.failover import CLIENT, MISCONFIG, NEXT, RETRY, UpstreamFailure
from gateway.settings import Settings

VERTEX_VERSION = "vertex-2023-10-16"
SERVICE = "Vertex AI"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


def vertex_body(body: dict[str, Any], beta: tuple[str, ...], *, stream: bool) -> bytes:
    out = {k: v for k, v in body.items() if k not in ("model", "stream")}
    out["anthropic_version"] = VERTEX_VERSION
    if stream:
        out["stream"] = True
    if beta:
        existing = out.get("anthropic_beta") if isinstance(out.get("anthropic_beta"), list) else []
        out["anthropic_beta"] = [*existing, *(b for b in beta if b not in existing)]
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()


def classify_http(status: int, body: bytes) -> UpstreamFailure:
    """Vertex answers Anthropic-shaped errors from the model and Google-shaped ones from the platform."""
    message, code = f"Vertex AI answered HTTP {status}", f"HTTP{status}"
    try:
        parsed = json.loads(body)
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(error, dict):
            message = str(error.get("message") or message)
            code = str(error.get("type") or error.get("status") or code)
    except ValueError:
        pass
    if status in (401, 403, 404):
        kind = MISCONFIG
    elif status == 424:
        kind = RETRY
    elif status in (408, 429) or status >= 500:
        kind = NEXT
    else:
        kind = CLIENT
    error_type = "overloaded_error" if status == 529 else ERROR_TYPE_BY_STATUS.get(status, "api_error")
    return UpstreamFailure(kind, status, error_type, message, code=code)


def base_url(settings: Settings, region: str) -> str:
    if settings.vertex_endpoint:
        return settings.vertex_endpoint.rstrip("/")
    host = "aiplatform.googleapis.com" if region == "global" else f"{region}-aiplatform.googleapis.com"
    return f"https://{host}"


class VertexUpstream:
    provider = "vertex"
    wire = "vertex"

    def __init__(self, settings: Settings, region: str, *, credentials: Any = None) -> None:
        if not settings.vertex_project:
            raise ValueError("Vertex needs settings.vertex_project")
        self.region = region
        self.project = settings.vertex_project
        self.base_url = base_url(settings, region)
        self._wif_config = settings.vertex_wif_config
        self._credentials = credentials
        self._http: Any = None
        self._refresh_lock: asyncio.Lock | None = None

    def model_id(self, entry: CatalogEntry, residency: str) -> str | None:
        return entry.vertex_model_id or None

    def url(self, model_id: str, operation: str) -> str:
        return (
            f"{self.base_url}/v1/projects/{self.project}/locations/{self.region}"
            f"/publishers/anthropic/models/{model_id}:{operation}"
        )

    # -- credentials ------------------------------------------------------------------------------

    def _make_credentials(self) -> Any:
        if not self._wif_config:
            raise UpstreamFailure(
                MISCONFIG, 500, "api_error", "VERTEX_WIF_CONFIG is not set", code="NoCredentials"
            )
        from google.auth import aws

        return aws.Credentials.from_info(json.loads(self._wif_config), scopes=list(SCOPES))

    async def _token(self) -> str:
        if self._credentials is None:
            self._credentials = self._make_credentials()
        if self._credentials.valid:
            return self._credentials.token
        if self._refresh_lock is None:
            self._refresh_lock = asyncio.Lock()
        async with self._refresh_lock:
            if not self._credentials.valid:
                try:
                    await asyncio.to_thread(self._refresh)
                except Exception as exc:
                    raise UpstreamFailure(
                        MISCONFIG, 500, "api_error", f"Vertex credentials: {exc}", code="CredentialsError"
                    ) from None
        return self._credentials.token

    def _refresh(self) -> None:
        import google.auth.transport.urllib3
        import urllib3

        self._credentials.refresh(google.auth.transport.urllib3.Request(urllib3.PoolManager()))

    # -- calls ------------------------------------------------------------------------------------

    def _client(self) -> Any:
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32)
            )
        return self._http

    async def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {await self._token()}", "content-type": "application/json"}

    async def invoke(
        self, model_id: str, body: dict[str, Any], *, beta: tuple[str, ...], timeout: float
    ) -> bytes:
        import httpx

        headers = await self._headers()
        try:
            response = await self._client().post(
                self.url(model_id, "rawPredict"),
                content=vertex_body(body, beta, stream=False),
                headers=headers,
                timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
            )
        except httpx.HTTPError as exc:
            raise transport_failure(exc, NEXT, SERVICE) from None
        if response.status_code != 200:
            raise classify_http(response.status_code, response.content)
        return response.content

    def stream(
        self, model_id: str, body: dict[str, Any], *, beta: tuple[str, ...], timeout: float
    ) -> AsyncIterator[tuple[str, bytes]]:
        async def request() -> Any:
            import httpx

            headers = await self._headers()
            return self._client().build_request(
                "POST",
                self.url(model_id, "streamRawPredict"),
                content=vertex_body(body, beta, stream=True),
                headers=headers,
                timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
            )

        return relay_sse(self._client(), request, SERVICE, lambda status, content, _: classify_http(status, content))

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
