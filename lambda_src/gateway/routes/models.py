"""GET /v1/models: the models the caller may use, in the Anthropic list shape."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.domain.gateway import Gateway
from gateway.domain.request_end import RequestEnd
from gateway.models.catalog import CatalogEntry
from gateway.routes import serve

_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})$")


def model_info(entry: CatalogEntry) -> dict[str, str]:
    match = _DATE.search(entry.anthropic_id)
    created = f"{match[1]}-{match[2]}-{match[3]}T00:00:00Z" if match else "1970-01-01T00:00:00Z"
    words = entry.alias.removeprefix("claude-").split("-")
    name = "Claude " + " ".join(w.capitalize() if not w.isdigit() else w for w in words)
    name = re.sub(r"(\d) (\d)", r"\1.\2", name)
    return {"type": "model", "id": entry.anthropic_id, "display_name": name, "created_at": created}


async def list_models(request: Request) -> Response:
    async def work(gateway: Gateway, end: RequestEnd) -> Response:
        entries, headers = await gateway.models(end)
        data = [model_info(entry) for entry in entries]
        body = {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
        return JSONResponse(body, headers=headers)

    return await serve(request, work, calls_model=False)
