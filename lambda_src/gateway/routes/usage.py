"""GET /v1/usage: the caller's tenant (only ever the caller's): used and remaining per window."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.domain.errors import GatewayError
from gateway.domain.policy import require
from gateway.domain.quota import report_headers
from gateway.routes import caller_identity, new_exchange


async def usage(request: Request) -> JSONResponse:
    # The tenant comes from the authenticated principal alone: no header, query or body can name another.
    pipeline = request.app.state.pipeline
    exchange = new_exchange(request)
    exchange.identity = caller_identity(request.scope)
    tenancy = request.app.state.tenancy
    try:
        principal = exchange.principal = await tenancy.resolve(exchange.identity)
        permissions = getattr(tenancy, "permissions", None)
        if permissions is not None:
            require(await permissions(principal), "read", "reading usage")
        report = await request.app.state.quota.usage_report(principal)
    except Exception as exc:  # a refusal gets its `denied` audit record
        raise await pipeline.refuse(exchange, exc) from (None if isinstance(exc, GatewayError) else exc)
    # The report's exact numbers win; the container's view fills in what it lacks (reset times).
    headers = {**pipeline.principal_headers(principal), **report_headers(report)}
    return JSONResponse(report, headers=headers)
