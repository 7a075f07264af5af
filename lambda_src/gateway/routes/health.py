"""GET /healthz: the Lambda Web Adapter's readiness check. Cheap and dependency-free on purpose."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})
