"""GET /v1/usage: the caller's tenant (only ever the caller's): used and remaining per window."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.domain.gateway import Gateway
from gateway.domain.quota import report_headers
from gateway.domain.request_end import RequestEnd
from gateway.routes import serve


async def usage(request: Request) -> Response:
    async def work(gateway: Gateway, end: RequestEnd) -> Response:
        report, headers = await gateway.usage(end)
        # The report's exact numbers win; the container's view fills in what it lacks (reset times).
        return JSONResponse(report, headers={**headers, **report_headers(report)})

    return await serve(request, work, calls_model=False)
