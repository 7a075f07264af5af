"""GET /v1/usage: the caller's tenant (only ever the caller's): used and remaining per window."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.domain.policy import require
from gateway.domain.quota import report_headers
from gateway.routes import caller_identity


async def usage(request: Request) -> JSONResponse:
    # The tenant comes from the authenticated principal alone: no header, query or body can name another.
    identity = caller_identity(request.scope)
    tenancy = request.app.state.tenancy
    principal = await tenancy.resolve(identity)
    permissions = getattr(tenancy, "permissions", None)
    if permissions is not None:
        require(await permissions(principal), "read", "reading usage")
    report = await request.app.state.quota.usage_report(principal)
    return JSONResponse(report, headers=report_headers(report))
