"""gatewayctl models check: can the account serve every route of the environment's catalog?

A route is one catalog model on one upstream: a Bedrock region of a residency's chain (the model has a
profile for that residency), or the residency's Vertex region (the model has a Vertex id). Retired models
have none. For each, what the provider's own listings say:

- Bedrock, per region (the `bedrock` control-plane client in that region): ListInferenceProfiles (both
  types: without `typeEquals` only SYSTEM_DEFINED ones are listed, https://github.com/aws/aws-cli/issues/9728)
  must list the catalog's profile id (an application profile by its ARN) with status ACTIVE;
  ListFoundationModels must list the base model where the route sends the base id (the Messages-API
  endpoint by default); a base model that Bedrock lists as LEGACY is a warning with its dates
  (`modelLifecycle` legacyTime/endOfLifeTime, botocore's bedrock 2023-04-20 model);
  GetFoundationModelAvailability's account-level answers (authorization, entitlement, agreement) that are
  not positive are warnings, since AWS does not document them further.
- Vertex: Model Garden's publisher model, `GET https://{region}-aiplatform.googleapis.com/v1/publishers/
  anthropic/models/{id}` (the v1 `publishers.models.get`, name `publishers/{publisher}/models/{model}`), with
  the id before its `@version` (the resource names the model, not a version), authenticated with the
  gateway's own Workload Identity Federation credentials (gateway.adapters.vertex). It says the model is
  offered at that regional endpoint, not that the project has enabled it (only a request shows that:
  `gatewayctl health`).

A route is `ok`, `warning` (works today, look at it) or `error` (cannot work, or could not be checked).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

COLUMNS = ("residency", "provider", "region", "model", "api", "upstream_id", "status", "detail")
OK, WARNING, ERROR = "ok", "warning", "error"
_RANK = {OK: 0, WARNING: 1, ERROR: 2}


@dataclass
class RouteCheck:
    residency: str
    provider: str
    region: str
    model: str
    api: str
    upstream_id: str
    status: str = OK
    notes: list[str] = field(default_factory=list)

    def flag(self, status: str, note: str) -> None:
        self.status = max(self.status, status, key=_RANK.__getitem__)
        self.notes.append(note)

    def row(self) -> dict[str, Any]:
        return {
            "residency": self.residency,
            "provider": self.provider,
            "region": self.region,
            "model": self.model,
            "api": self.api,
            "upstream_id": self.upstream_id,
            "status": self.status,
            "detail": "; ".join(self.notes) or None,
        }


def check(target: Any, *, timeout: float = 20.0) -> list[dict[str, Any]]:
    from gatewayctl import modelcatalog

    settings, catalog = modelcatalog.environment(target)
    endpoints = dict((target.local.get("bedrock") or {}).get("endpoints") or {}) if target.kind == "local" else {}
    account = BedrockAccount(lambda region: bedrock_client(region, endpoints.get(region), timeout))
    routes = [*bedrock_routes(settings, catalog, account), *asyncio.run(vertex_routes(settings, catalog, timeout))]
    return [r.row() for r in routes]


def bedrock_client(region: str, endpoint_url: str | None, timeout: float) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 3, "mode": "standard"})
    return boto3.client("bedrock", region_name=region, endpoint_url=endpoint_url, config=config)


# -- Bedrock ---------------------------------------------------------------------------------------


@dataclass
class RegionListing:
    profiles: dict[str, dict[str, Any]]  # profile id and ARN -> summary
    models: dict[str, dict[str, Any]]  # base model id -> summary
    error: str | None = None


class BedrockAccount:
    """What Bedrock offers this account, region by region, each listing asked for once."""

    def __init__(self, client_for: Callable[[str], Any]) -> None:
        self._client_for = client_for
        self._clients: dict[str, Any] = {}
        self._listings: dict[str, RegionListing] = {}
        self._availability: dict[tuple[str, str], list[str]] = {}

    def client(self, region: str) -> Any:
        if region not in self._clients:
            self._clients[region] = self._client_for(region)
        return self._clients[region]

    def listing(self, region: str) -> RegionListing:
        if region not in self._listings:
            self._listings[region] = self._list(region)
        return self._listings[region]

    def _list(self, region: str) -> RegionListing:
        client = self.client(region)
        try:
            profiles: dict[str, dict[str, Any]] = {}
            for kind in ("SYSTEM_DEFINED", "APPLICATION"):
                token = None
                while True:
                    page = client.list_inference_profiles(
                        typeEquals=kind, maxResults=1000, **({"nextToken": token} if token else {})
                    )
                    for summary in page.get("inferenceProfileSummaries", []):
                        profiles[summary["inferenceProfileId"]] = summary
                        profiles[summary["inferenceProfileArn"]] = summary
                    token = page.get("nextToken")
                    if not token:
                        break
            models = {m["modelId"]: m for m in client.list_foundation_models().get("modelSummaries", [])}
        except Exception as exc:  # botocore's ClientError, EndpointConnectionError, NoCredentialsError, ...
            return RegionListing({}, {}, error=f"cannot list Bedrock models in {region}: {exc}")
        return RegionListing(profiles, models)

    def availability_problems(self, region: str, model_id: str) -> list[str]:
        key = (region, model_id)
        if key not in self._availability:
            self._availability[key] = self._availability_problems(region, model_id)
        return self._availability[key]

    def _availability_problems(self, region: str, model_id: str) -> list[str]:
        try:
            answer = self.client(region).get_foundation_model_availability(modelId=model_id)
        except Exception as exc:
            return [f"GetFoundationModelAvailability failed: {exc}"]
        expected = {
            "authorizationStatus": (answer.get("authorizationStatus"), "AUTHORIZED"),
            "entitlementAvailability": (answer.get("entitlementAvailability"), "AVAILABLE"),
            "agreementAvailability": ((answer.get("agreementAvailability") or {}).get("status"), "AVAILABLE"),
        }
        return [f"{name} {got}" for name, (got, want) in expected.items() if got is not None and got != want]


def bedrock_routes(settings: Any, catalog: Any, account: BedrockAccount) -> list[RouteCheck]:
    routes = []
    for residency, regions in sorted(settings.bedrock_regions.items()):
        for entry in catalog.entries:
            profile = entry.bedrock_profiles.get(residency)
            if profile is None or entry.bedrock_model_id is None or entry.lifecycle.status == "retired":
                continue
            sends_base = entry.bedrock_api == "messages" and settings.bedrock_messages_model_id == "base"
            for region in regions:
                route = RouteCheck(
                    residency,
                    "bedrock",
                    region,
                    entry.alias,
                    entry.bedrock_api,
                    entry.bedrock_model_id if sends_base else profile,
                )
                check_bedrock_route(route, account, profile=profile, model_id=entry.bedrock_model_id, base=sends_base)
                routes.append(route)
    return routes


def check_bedrock_route(route: RouteCheck, account: BedrockAccount, *, profile: str, model_id: str, base: bool) -> None:
    listing = account.listing(route.region)
    if listing.error:
        route.flag(ERROR, listing.error)
        return
    summary = listing.profiles.get(profile)
    if summary is None:
        route.flag(ERROR, f"inference profile {profile} is not offered in {route.region} (ListInferenceProfiles)")
    elif summary.get("status") != "ACTIVE":
        route.flag(ERROR, f"inference profile {profile} is {summary.get('status')} in {route.region}")
    model = listing.models.get(model_id)
    if model is None:
        if base:
            route.flag(ERROR, f"{model_id} is not offered in {route.region} (ListFoundationModels)")
        return
    lifecycle = model.get("modelLifecycle") or {}
    if lifecycle.get("status") == "LEGACY":
        dates = ", ".join(
            f"{label} {_date(lifecycle[key])}"
            for key, label in (("legacyTime", "legacy since"), ("endOfLifeTime", "end of life"))
            if lifecycle.get(key)
        )
        route.flag(WARNING, f"Bedrock lists {model_id} as LEGACY in {route.region}" + (f" ({dates})" if dates else ""))
    for problem in account.availability_problems(route.region, model_id):
        route.flag(WARNING, problem)


def _date(value: Any) -> str:
    return value.date().isoformat() if hasattr(value, "date") else str(value)[:10]


# -- Vertex ----------------------------------------------------------------------------------------


async def vertex_routes(settings: Any, catalog: Any, timeout: float) -> list[RouteCheck]:
    if not settings.vertex_project or not settings.vertex_regions:
        return []
    import httpx
    from gateway.adapters.vertex import VertexUpstream, base_url

    routes = [
        RouteCheck(residency, "vertex", region, entry.alias, "vertex", entry.vertex_model_id)
        for residency, region in sorted(settings.vertex_regions.items())
        for entry in catalog.entries
        if entry.vertex_model_id and entry.lifecycle.status != "retired"
    ]
    if not routes:
        return []
    try:
        # The gateway's own credentials (Workload Identity Federation), obtained as the adapter obtains them.
        token = await VertexUpstream(settings, routes[0].region)._token()
    except Exception as exc:  # UpstreamFailure: VERTEX_WIF_CONFIG unset, or the token exchange refused
        for route in routes:
            route.flag(ERROR, f"no Vertex credentials: {getattr(exc, 'message', exc)}")
        return routes
    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=timeout, headers=headers) as http:
        answers: dict[tuple[str, str], Any] = {}

        async def get(region: str, model: str) -> None:
            url = f"{base_url(settings, region)}/v1/publishers/anthropic/models/{model}"
            try:
                answers[(region, model)] = await http.get(url)
            except httpx.HTTPError as exc:
                answers[(region, model)] = exc

        wanted = {(r.region, r.upstream_id.split("@", 1)[0]) for r in routes}
        await asyncio.gather(*(get(region, model) for region, model in sorted(wanted)))
    for route in routes:
        model = route.upstream_id.split("@", 1)[0]
        answer = answers[(route.region, model)]
        if isinstance(answer, Exception):
            route.flag(ERROR, f"cannot reach Vertex in {route.region}: {answer}")
        elif answer.status_code == 404:
            route.flag(ERROR, f"publisher model {model} is not offered in {route.region}")
        elif answer.status_code != 200:
            route.flag(ERROR, f"Vertex answered HTTP {answer.status_code} for {model}: {_google_message(answer)}")
    return routes


def _google_message(response: Any) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
