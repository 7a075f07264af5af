"""The gateway's settings: its environment, parsed once into a typed object that fails fast.

This is the contract between the places that start the gateway: the CDK stateless stack sets these
variables on the Lambda function, `gatewayctl local up` and the tests set them for uvicorn. Nothing
else in the runtime reads `os.environ`.

A plain frozen dataclass rather than pydantic-settings: the Lambda's cold start pays for every
import, and these few fields need no more than a JSON parse and a range check.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.domain.catalog import RESIDENCIES

_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+$")


class SettingsError(ValueError):
    """A missing or invalid variable, named in the message."""


@dataclass(frozen=True)
class Settings:
    env: str
    region: str  # the gateway's own AWS region (DynamoDB, Kinesis, SQS)
    tenants_table: str
    usage_table: str
    audit_stream: str
    audit_dlq_url: str
    # residency -> Bedrock regions, in failover order
    bedrock_regions: Mapping[str, tuple[str, ...]]
    # region -> endpoint URL; set only by the local stack and tests (the Bedrock emulator)
    bedrock_endpoints: Mapping[str, str] = field(default_factory=dict)
    # region -> base URL of Bedrock's Messages-API endpoint (POST {base}/v1/messages); unset regions use
    # their BEDROCK_ENDPOINTS entry + /anthropic, else https://bedrock-runtime.{region}.amazonaws.com/anthropic
    bedrock_messages_endpoints: Mapping[str, str] = field(default_factory=dict)
    # the model id sent to the Messages-API endpoint: the base model id, or the residency's profile id
    bedrock_messages_model_id: str = "base"
    vertex_project: str | None = None
    # residency -> Vertex region; a residency without one has no Vertex fallback
    vertex_regions: Mapping[str, str] = field(default_factory=dict)
    # base URL override for the Vertex API (the local emulator); None = https://{region}-aiplatform.googleapis.com
    vertex_endpoint: str | None = None
    # Workload Identity Federation external-account config (JSON text, no secret in it)
    vertex_wif_config: str | None = None
    audit_mirror_cloud_logging: bool = False
    cloud_logging_endpoint: str | None = None
    principal_cache_ttl_seconds: float = 30.0
    max_body_bytes: int = 10 * 1024 * 1024  # API Gateway's own payload limit
    upstream_timeout_seconds: float = 600.0
    breaker_failure_threshold: int = 3
    breaker_open_seconds: float = 30.0
    # This environment's changes to the model catalog (JSON; docs/models.md), validated at synthesis.
    catalog_overrides: str | None = None
    # The Claude API (or Claude Platform on AWS) after Vertex: off unless the key's secret is named.
    anthropic_api_secret_arn: str | None = None
    anthropic_api_base_url: str = "https://api.anthropic.com"
    anthropic_api_workspace_id: str | None = None  # Claude Platform on AWS only
    anthropic_api_residencies: tuple[str, ...] = ("global",)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        bedrock_regions = {
            residency: tuple(_str_list(regions, f"BEDROCK_REGIONS[{residency}]"))
            for residency, regions in _json_object(env, "BEDROCK_REGIONS", required=True).items()
        }
        _known_residencies(bedrock_regions, "BEDROCK_REGIONS")
        vertex_regions = {k: str(v) for k, v in _json_object(env, "VERTEX_REGIONS").items()}
        _known_residencies(vertex_regions, "VERTEX_REGIONS")
        if vertex_regions and not env.get("VERTEX_PROJECT"):
            raise SettingsError("VERTEX_REGIONS is set but VERTEX_PROJECT is not")
        messages_id = env.get("BEDROCK_MESSAGES_MODEL_ID", "").strip() or "base"
        if messages_id not in ("base", "profile"):
            raise SettingsError(f"BEDROCK_MESSAGES_MODEL_ID must be base or profile, not {messages_id!r}")
        secret_arn = env.get("ANTHROPIC_API_SECRET_ARN", "").strip() or None
        if secret_arn is not None and not _SECRET_ARN.match(secret_arn):
            raise SettingsError("ANTHROPIC_API_SECRET_ARN must be a Secrets Manager secret ARN")
        anthropic_residencies = ("global",)
        if env.get("ANTHROPIC_API_RESIDENCIES", "").strip():
            try:
                raw_residencies = json.loads(env["ANTHROPIC_API_RESIDENCIES"])
            except json.JSONDecodeError as exc:
                raise SettingsError(f"ANTHROPIC_API_RESIDENCIES is not valid JSON: {exc}") from None
            anthropic_residencies = tuple(_str_list(raw_residencies, "ANTHROPIC_API_RESIDENCIES"))
            _known_residencies(dict.fromkeys(anthropic_residencies), "ANTHROPIC_API_RESIDENCIES")
        anthropic_url = env.get("ANTHROPIC_API_BASE_URL", "").strip() or "https://api.anthropic.com"
        if not anthropic_url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise SettingsError("ANTHROPIC_API_BASE_URL must be https (http only for loopback)")
        return cls(
            env=env.get("GATEWAY_ENV", "dev"),
            region=_required(env, "AWS_REGION"),
            tenants_table=_required(env, "TENANTS_TABLE"),
            usage_table=_required(env, "USAGE_TABLE"),
            audit_stream=_required(env, "AUDIT_STREAM"),
            audit_dlq_url=_required(env, "AUDIT_DLQ_URL"),
            bedrock_regions=bedrock_regions,
            bedrock_endpoints={k: str(v) for k, v in _json_object(env, "BEDROCK_ENDPOINTS").items()},
            vertex_project=env.get("VERTEX_PROJECT") or None,
            vertex_regions=vertex_regions,
            vertex_endpoint=env.get("VERTEX_ENDPOINT") or None,
            vertex_wif_config=env.get("VERTEX_WIF_CONFIG") or None,
            audit_mirror_cloud_logging=_bool(env, "AUDIT_MIRROR_CLOUD_LOGGING"),
            cloud_logging_endpoint=env.get("CLOUD_LOGGING_ENDPOINT") or None,
            principal_cache_ttl_seconds=_number(env, "PRINCIPAL_CACHE_TTL_SECONDS", 30.0, minimum=0),
            max_body_bytes=int(_number(env, "MAX_BODY_BYTES", 10 * 1024 * 1024, minimum=1024)),
            upstream_timeout_seconds=_number(env, "UPSTREAM_TIMEOUT_SECONDS", 600.0, minimum=1),
            breaker_failure_threshold=int(_number(env, "BREAKER_FAILURE_THRESHOLD", 3, minimum=1)),
            breaker_open_seconds=_number(env, "BREAKER_OPEN_SECONDS", 30.0, minimum=1),
            catalog_overrides=env.get("CATALOG_OVERRIDES") or None,
            bedrock_messages_endpoints={
                k: str(v) for k, v in _json_object(env, "BEDROCK_MESSAGES_ENDPOINTS").items()
            },
            bedrock_messages_model_id=messages_id,
            anthropic_api_secret_arn=secret_arn,
            anthropic_api_base_url=anthropic_url,
            anthropic_api_workspace_id=env.get("ANTHROPIC_API_WORKSPACE_ID", "").strip() or None,
            anthropic_api_residencies=anthropic_residencies,
        )

    def bedrock_messages_base_url(self, region: str) -> str:
        """Where Bedrock's Messages-API endpoint is for a region (bedrock-runtime: docs/models.md)."""
        if region in self.bedrock_messages_endpoints:
            return self.bedrock_messages_endpoints[region].rstrip("/")
        if region in self.bedrock_endpoints:
            return self.bedrock_endpoints[region].rstrip("/") + "/anthropic"
        return f"https://bedrock-runtime.{region}.amazonaws.com/anthropic"

    def to_env(self) -> dict[str, str]:
        """The variables that reproduce these settings (used by the local stack and the tests)."""
        out = {
            "GATEWAY_ENV": self.env,
            "AWS_REGION": self.region,
            "TENANTS_TABLE": self.tenants_table,
            "USAGE_TABLE": self.usage_table,
            "AUDIT_STREAM": self.audit_stream,
            "AUDIT_DLQ_URL": self.audit_dlq_url,
            "BEDROCK_REGIONS": json.dumps({k: list(v) for k, v in self.bedrock_regions.items()}),
            "BEDROCK_ENDPOINTS": json.dumps(dict(self.bedrock_endpoints)),
            "VERTEX_REGIONS": json.dumps(dict(self.vertex_regions)),
            "AUDIT_MIRROR_CLOUD_LOGGING": "true" if self.audit_mirror_cloud_logging else "false",
            "PRINCIPAL_CACHE_TTL_SECONDS": str(self.principal_cache_ttl_seconds),
            "MAX_BODY_BYTES": str(self.max_body_bytes),
            "UPSTREAM_TIMEOUT_SECONDS": str(self.upstream_timeout_seconds),
            "BREAKER_FAILURE_THRESHOLD": str(self.breaker_failure_threshold),
            "BREAKER_OPEN_SECONDS": str(self.breaker_open_seconds),
            "BEDROCK_MESSAGES_ENDPOINTS": json.dumps(dict(self.bedrock_messages_endpoints)),
            "BEDROCK_MESSAGES_MODEL_ID": self.bedrock_messages_model_id,
            "ANTHROPIC_API_BASE_URL": self.anthropic_api_base_url,
            "ANTHROPIC_API_RESIDENCIES": json.dumps(list(self.anthropic_api_residencies)),
        }
        optional = {
            "VERTEX_PROJECT": self.vertex_project,
            "VERTEX_ENDPOINT": self.vertex_endpoint,
            "VERTEX_WIF_CONFIG": self.vertex_wif_config,
            "CLOUD_LOGGING_ENDPOINT": self.cloud_logging_endpoint,
            "CATALOG_OVERRIDES": self.catalog_overrides,
            "ANTHROPIC_API_SECRET_ARN": self.anthropic_api_secret_arn,
            "ANTHROPIC_API_WORKSPACE_ID": self.anthropic_api_workspace_id,
        }
        out.update({k: v for k, v in optional.items() if v})
        return out


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"{name} is not set")
    return value


def _json_object(env: Mapping[str, str], name: str, *, required: bool = False) -> dict:
    raw = env.get(name, "").strip()
    if not raw:
        if required:
            raise SettingsError(f"{name} is not set")
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SettingsError(f"{name} must be a JSON object")
    return value


def _str_list(value: object, name: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise SettingsError(f"{name} must be a non-empty list of region names")
    return value


def _known_residencies(mapping: Mapping[str, object], name: str) -> None:
    unknown = sorted(set(mapping) - set(RESIDENCIES))
    if unknown:
        raise SettingsError(f"{name} names unknown residencies {unknown}; known: {list(RESIDENCIES)}")


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "false").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, not {value}")
    return value
