"""The Bedrock control plane's model listings, as botocore's `bedrock` client calls them (moto has none):

- GET /foundation-models (ListFoundationModels): `modelSummaries`, each with `modelLifecycle` (`status`
  ACTIVE or LEGACY, and `legacyTime`/`endOfLifeTime` in ISO 8601 when set).
- GET /inference-profiles (ListInferenceProfiles): `inferenceProfileSummaries` of the `type` asked for
  (SYSTEM_DEFINED when none is, as the API does), each `status` ACTIVE, paginated by maxResults/nextToken.
- GET /foundation-model-availability/{modelId} (GetFoundationModelAvailability): everything available.

What a region offers is the base catalog (the account's Bedrock, not the gateway's configuration): every
Bedrock model in every region, and each system profile in the regions of its prefix (us.* in us-*, eu.* in
eu-*, global.* everywhere, ...). Two switches change that at run time, on the emulator's control API:

  POST   /_emulator/catalog   {"hide_profile": "<profile id>", "region": "<region>" | null}
                              {"legacy": "<base model id>", "legacy_time": "...", "end_of_life": "..."}
  GET    /_emulator/catalog   the switches set
  DELETE /_emulator/catalog   clear them
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from gateway.domain.catalog import load_catalog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ACCOUNT = "123456789012"
# Which profile prefixes a source region serves (a geographic profile is callable from its own geography).
_PREFIXES_BY_REGION_START = {"us-": ("us",), "eu-": ("eu",), "ap-": ("apac",)}
_EXTRA_PREFIXES = {
    "ap-northeast-1": ("jp",),
    "ap-northeast-3": ("jp",),
    "ap-southeast-2": ("au",),
    "ap-southeast-4": ("au",),
}


def profile_prefixes(region: str) -> tuple[str, ...]:
    geo = next((p for start, p in _PREFIXES_BY_REGION_START.items() if region.startswith(start)), ())
    return ("global", *geo, *_EXTRA_PREFIXES.get(region, ()))


@dataclass
class CatalogSwitches:
    hidden: set[tuple[str, str | None]] = field(default_factory=set)  # (profile id, region or None: all)
    legacy: dict[str, dict[str, str]] = field(default_factory=dict)  # base model id -> lifecycle times
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def apply(self, change: dict[str, Any]) -> None:
        with self._lock:
            if isinstance(change.get("hide_profile"), str):
                self.hidden.add((change["hide_profile"], change.get("region")))
            elif isinstance(change.get("legacy"), str):
                times = {"legacyTime": change.get("legacy_time"), "endOfLifeTime": change.get("end_of_life")}
                self.legacy[change["legacy"]] = {k: v for k, v in times.items() if v}
            else:
                raise ValueError('expected {"hide_profile": id, "region": r} or {"legacy": model id, ...}')

    def clear(self) -> None:
        with self._lock:
            self.hidden.clear()
            self.legacy.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "hidden_profiles": [{"profile": p, "region": r} for p, r in sorted(self.hidden, key=str)],
                "legacy_models": dict(self.legacy),
            }

    def is_hidden(self, profile: str, region: str) -> bool:
        with self._lock:
            return (profile, None) in self.hidden or (profile, region) in self.hidden

    def lifecycle(self, model_id: str) -> dict[str, str]:
        with self._lock:
            times = self.legacy.get(model_id)
        return {"status": "LEGACY", **times} if times is not None else {"status": "ACTIVE"}


def foundation_models(region: str, switches: CatalogSwitches) -> list[dict[str, Any]]:
    models: dict[str, dict[str, Any]] = {}
    for entry in load_catalog().entries:
        model_id = entry.bedrock_model_id
        if not model_id or model_id in models:
            continue
        models[model_id] = {
            "modelArn": f"arn:aws:bedrock:{region}::foundation-model/{model_id}",
            "modelId": model_id,
            "modelName": entry.alias,
            "providerName": "Anthropic",
            "inputModalities": ["TEXT", "IMAGE"],
            "outputModalities": ["TEXT"],
            "responseStreamingSupported": True,
            "customizationsSupported": [],
            "inferenceTypesSupported": ["ON_DEMAND", "INFERENCE_PROFILE"],
            "modelLifecycle": switches.lifecycle(model_id),
        }
    return list(models.values())


def system_profiles(region: str, switches: CatalogSwitches) -> list[dict[str, Any]]:
    prefixes = profile_prefixes(region)
    profiles: dict[str, dict[str, Any]] = {}
    for entry in load_catalog().entries:
        for profile in entry.bedrock_profiles.values():
            prefix = profile.split(".", 1)[0]
            if prefix not in prefixes or profile in profiles or switches.is_hidden(profile, region):
                continue
            profiles[profile] = {
                "inferenceProfileName": f"{prefix.upper()} {entry.alias}",
                "inferenceProfileArn": f"arn:aws:bedrock:{region}:{ACCOUNT}:inference-profile/{profile}",
                "inferenceProfileId": profile,
                "models": [{"modelArn": f"arn:aws:bedrock:{region}::foundation-model/{entry.bedrock_model_id}"}],
                "status": "ACTIVE",
                "type": "SYSTEM_DEFINED",
            }
    return list(profiles.values())


class ControlPlane:
    """The listing routes (on every region port: the region is the port) and the switches' control routes."""

    def __init__(self, region_of: Any, check_auth: Any, errors: type[Exception]) -> None:
        self.switches = CatalogSwitches()
        self._region_of = region_of
        self._check_auth = check_auth
        self._errors = errors

    def routes(self) -> list[Route]:
        return [
            Route("/foundation-models", self.list_foundation_models, methods=["GET"]),
            Route("/inference-profiles", self.list_inference_profiles, methods=["GET"]),
            Route("/foundation-model-availability/{model_id:path}", self.availability, methods=["GET"]),
            Route("/_emulator/catalog", self.control, methods=["GET", "POST", "DELETE"]),
        ]

    async def list_foundation_models(self, request: Request) -> Response:
        region = await self._guarded(request)
        if isinstance(region, Response):
            return region
        provider = request.query_params.get("byProvider")
        models = foundation_models(region, self.switches)
        if provider and provider.lower() != "anthropic":
            models = []
        return JSONResponse({"modelSummaries": models})

    async def list_inference_profiles(self, request: Request) -> Response:
        region = await self._guarded(request)
        if isinstance(region, Response):
            return region
        # Only SYSTEM_DEFINED when no type is asked for (https://github.com/aws/aws-cli/issues/9728);
        # the emulated account has no application profiles.
        kind = request.query_params.get("type", "SYSTEM_DEFINED")
        profiles = system_profiles(region, self.switches) if kind == "SYSTEM_DEFINED" else []
        size = int(request.query_params.get("maxResults") or 1000)
        start = int(request.query_params.get("nextToken") or 0)
        page = {"inferenceProfileSummaries": profiles[start : start + size]}
        if start + size < len(profiles):
            page["nextToken"] = str(start + size)
        return JSONResponse(page)

    async def availability(self, request: Request) -> Response:
        region = await self._guarded(request)
        if isinstance(region, Response):
            return region
        model_id = request.path_params["model_id"]
        known = any(e.bedrock_model_id == model_id for e in load_catalog().entries)
        if not known:
            return JSONResponse(
                {"message": f"Model {model_id} not found"},
                status_code=404,
                headers={"x-amzn-ErrorType": "ResourceNotFoundException"},
            )
        return JSONResponse(
            {
                "modelId": model_id,
                "agreementAvailability": {"status": "AVAILABLE"},
                "authorizationStatus": "AUTHORIZED",
                "entitlementAvailability": "AVAILABLE",
                "regionAvailability": "AVAILABLE",
            }
        )

    async def control(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.switches.apply(await request.json())
            except (ValueError, TypeError, AttributeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        elif request.method == "DELETE":
            self.switches.clear()
        return JSONResponse(self.switches.snapshot())

    async def _guarded(self, request: Request) -> str | Response:
        """The request's region, or the emulator's answer when the port or the signature is wrong."""
        try:
            region = self._region_of(request)
            self._check_auth(request, region)
        except self._errors as exc:
            return exc.response()
        return region
