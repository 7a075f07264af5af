"""GET /v1/models: the models the caller may use, in the Anthropic list shape."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.domain.catalog import CatalogEntry
from gateway.domain.errors import GatewayError
from gateway.domain.policy import require
from gateway.routes import caller_identity, new_exchange

_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})$")


def model_info(entry: CatalogEntry) -> dict[str, str]:
    match = _DATE.search(entry.anthropic_id)
    created = f"{match[1]}-{match[2]}-{match[3]}T00:00:00Z" if match else "1970-01-01T00:00:00Z"
    words = entry.alias.removeprefix("claude-").split("-")
    name = "Claude " + " ".join(w.capitalize() if not w.isdigit() else w for w in words)
    name = re.sub(r"(\d) (\d)", r"\1.\2", name)
    return {"type": "model", "id": entry.anthropic_id, "display_name": name, "created_at": created}


async def list_models(request: Request) -> JSONResponse:
    pipeline = request.app.state.pipeline
    exchange = new_exchange(request)
    exchange.identity = caller_identity(request.scope)
    tenancy = request.app.state.tenancy
    try:
        exchange.principal = await tenancy.resolve(exchange.identity)
        permissions = getattr(tenancy, "permissions", None)
        if permissions is not None:  # GET endpoints need `read`, like /v1/usage
            require(await permissions(exchange.principal), "read", "listing models")
        entries = await tenancy.allowed_models(exchange.principal)
    except Exception as exc:  # a refusal gets its `denied` audit record
        raise await pipeline.refuse(exchange, exc) from (None if isinstance(exc, GatewayError) else exc)
    data = [model_info(entry) for entry in entries]
    return JSONResponse(
        {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        },
        headers=pipeline.principal_headers(exchange.principal),
    )
