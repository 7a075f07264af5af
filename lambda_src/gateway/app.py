"""create_app: wiring of the ASGI app (routes -> domain -> ports and adapters).

`None` for a port means the real one over its adapter, imported here lazily so that tests and the
local stack can pass fakes or their own without paying for (or needing) boto at import time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import observability
from gateway.domain.background import Background
from gateway.domain.breaker import Breakers
from gateway.domain.catalog import Catalog, load_catalog
from gateway.domain.errors import ERROR_TYPE_BY_STATUS, ApiError, GatewayError
from gateway.domain.failover import FailoverChain
from gateway.domain.gateway import Gateway
from gateway.domain.metering import QuotaService
from gateway.domain.ports import AuditSink, Quota, Tenancy, Upstream
from gateway.domain.tenancy import TenancyService
from gateway.routes import request_id
from gateway.routes.health import healthz
from gateway.routes.messages import count_tokens, create_message
from gateway.routes.models import list_models
from gateway.routes.responses import FinishingResponse
from gateway.routes.usage import usage
from gateway.settings import Settings


def create_app(
    settings: Settings,
    *,
    tenancy: Tenancy | None = None,
    quota: Quota | None = None,
    audit: AuditSink | None = None,
    upstreams: Mapping[str, Sequence[Upstream]] | None = None,
    catalog: Catalog | None = None,
    breakers: Breakers | None = None,
    metrics: Any = None,
) -> Starlette:
    """`upstreams`: residency -> upstreams in failover order; None builds Bedrock (+ Vertex) from settings."""
    observability.configure_logging()
    catalog = catalog or load_catalog(None, settings.catalog_overrides)
    background = Background()
    metrics = metrics or observability.Metrics(settings.env)
    if tenancy is None or quota is None:
        tenancy_service, quota_service = dynamo_services(settings, catalog)
        tenancy = tenancy or tenancy_service
        quota = quota or quota_service
    if audit is None:
        from gateway.adapters.kinesis_audit import KinesisAuditSink

        audit = KinesisAuditSink(settings)
    if breakers is None:
        store = None
        if upstreams is None:
            from gateway.adapters.breaker_store import DynamoBreakerStore

            store = DynamoBreakerStore(settings)
        breakers = Breakers(
            failure_threshold=settings.breaker_failure_threshold,
            open_seconds=settings.breaker_open_seconds,
            store=store,
            spawn=background.spawn,
        )
    if upstreams is None:
        upstreams = build_upstreams(settings)
    chain = FailoverChain(upstreams, breakers, metrics, timeout_seconds=settings.upstream_timeout_seconds)
    gateway = Gateway(
        catalog=catalog,
        tenancy=tenancy,
        quota=quota,
        audit=audit,
        chain=chain,
        background=background,
        max_body_bytes=settings.max_body_bytes,
        metrics=metrics,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette):
        # Build the botocore clients off the request path: readiness does not wait for them, and the
        # first request rarely does (it waits on the same lock rather than building a second one).
        from gateway.adapters import aws_loop

        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, aws_loop.warm)
        for upstream in chain.all_upstreams():
            warm = getattr(upstream, "warm", None)
            if warm is not None:
                loop.run_in_executor(None, warm)
        yield
        await background.drain()
        try:
            await quota.close()  # give back the leases this container holds (Lambda: SIGTERM at shutdown)
        except Exception:
            observability.log.exception("giving back quota leases failed")
        for upstream in chain.all_upstreams():
            close = getattr(upstream, "aclose", None)
            if close is not None:
                await close()
        await aws_loop.aclose()  # the AWS connections this loop kept

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/messages", create_message, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/usage", usage, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_exception})
    app.state.settings = settings
    app.state.catalog = catalog
    app.state.tenancy = tenancy
    app.state.quota = quota
    app.state.audit = audit
    app.state.gateway = gateway
    app.state.chain = chain
    app.state.breakers = breakers
    app.state.background = background
    app.add_middleware(GatewayMiddleware)
    return app


def build_upstreams(settings: Settings) -> dict[str, list[Upstream]]:
    """Residency -> its upstreams in failover order: each Bedrock region (InvokeModel for the models that
    have an ARN-versioned id, the Messages-API endpoint for the rest: the catalog's `bedrock_api` picks
    one), then Vertex when the residency has a Vertex region, then the Claude API when configured."""
    from gateway.adapters import messages_api
    from gateway.adapters.bedrock import BedrockUpstream

    bedrock_model_id = messages_api.bedrock_messages_model_id(settings.bedrock_messages_model_id)
    bedrock: dict[str, list[Upstream]] = {}
    vertex: dict[str, Upstream] = {}
    chains: dict[str, list[Upstream]] = {}
    for residency, regions in settings.bedrock_regions.items():
        chain: list[Upstream] = []
        for region in regions:
            if region not in bedrock:
                bedrock[region] = [
                    BedrockUpstream(settings, region),
                    messages_api.MessagesApiUpstream(
                        provider="bedrock",
                        region=region,
                        wire="bedrock-messages",
                        base_url=settings.bedrock_messages_base_url(region),
                        auth=messages_api.SigV4(region, "bedrock"),
                        model_ids=bedrock_model_id,
                        service="Bedrock Messages API",
                    ),
                ]
            chain.extend(bedrock[region])
        chains[residency] = chain
    for residency, region in settings.vertex_regions.items():
        from gateway.adapters.vertex import VertexUpstream  # google.auth only when Vertex is configured

        if region not in vertex:
            vertex[region] = VertexUpstream(settings, region)
        chains.setdefault(residency, []).append(vertex[region])
    if settings.anthropic_api_secret_arn:
        claude_api = messages_api.MessagesApiUpstream(
            provider="anthropic",
            region=messages_api.claude_api_region(settings.anthropic_api_base_url),
            wire="anthropic",
            base_url=settings.anthropic_api_base_url,
            auth=messages_api.SecretApiKey(
                settings.anthropic_api_secret_arn, workspace_id=settings.anthropic_api_workspace_id
            ),
            model_ids=messages_api.claude_api_model_id,
            service="Claude API",
        )
        for residency in settings.anthropic_api_residencies:
            chains.setdefault(residency, []).append(claude_api)
    return chains


def dynamo_services(
    settings: Settings, catalog: Catalog, *, client: Any = None, clock: Callable[[], float] = time.time
) -> tuple[TenancyService, QuotaService]:
    """Tenancy and quota over the DynamoDB tables; `client` a botocore DynamoDB client (None: the container's)."""
    from gateway.adapters.dynamo_quota import DynamoQuotaStore
    from gateway.adapters.dynamo_tenancy import DynamoTenantStore

    tenancy = TenancyService(
        DynamoTenantStore(settings, client=client),
        catalog,
        ttl_seconds=settings.principal_cache_ttl_seconds,
        bedrock_residencies=settings.bedrock_regions.keys(),
        vertex_residencies=settings.vertex_regions.keys(),
    )
    return tenancy, QuotaService(DynamoQuotaStore(settings, client=client), tenancy, catalog, clock=clock)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error_type = ERROR_TYPE_BY_STATUS.get(exc.status_code, "invalid_request_error")
    body = {"type": "error", "error": {"type": error_type, "message": str(exc.detail)}}
    return Response(
        json.dumps(body),
        status_code=exc.status_code,
        media_type="application/json",
        headers=dict(exc.headers or {}),
    )


class GatewayMiddleware:
    """A request id on every response and in every log line; GatewayError -> the Anthropic error shape.

    Pure ASGI (not BaseHTTPMiddleware) so streamed responses pass through unbuffered.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        token = observability.request_id_var.set(rid)
        rid_header = (b"request-id", rid.encode())
        started = False

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # The routes answer their own errors (routes.serve); this is what escaped them.
            error = exc if isinstance(exc, GatewayError) else ApiError("internal error")
            if not isinstance(exc, GatewayError):
                observability.log.error("unhandled error", exc_info=exc)
            if started:  # too late to answer
                raise
            response = FinishingResponse(
                error.body_bytes(),
                status_code=error.status,
                headers={k.lower(): str(v) for k, v in error.headers.items()},
                media_type="application/json",
                on_done=None,
            )
            await response(scope, receive, send_with_id)
        finally:
            observability.request_id_var.reset(token)
