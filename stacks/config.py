"""One typed, validated configuration per environment (dev, staging, prod).

`app.py` picks one with `-c env=NAME` (default dev) and passes it down as keyword-only properties;
nothing else reads context. Every check raises ConfigError naming `<env>.<field>`, so a bad value
stops synthesis with a message that says where to look. docs/environments.md shows how to add one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from gateway.models.catalog import RESIDENCIES

OBJECT_LOCK_MODES = ("COMPLIANCE", "GOVERNANCE")
MFA_MODES = ("OFF", "OPTIONAL", "REQUIRED")
FEATURE_PLANS = ("LITE", "ESSENTIALS", "PLUS")
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
# Lambda Web Adapter layer (AWS-maintained, public; awslabs/aws-lambda-web-adapter): arm64 build, pinned.
# Bump it with LWA releases; the layer ARN is the same in every commercial region.
LWA_LAYER_ACCOUNT = "753240598075"
LWA_LAYER_VERSION = 28

_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_ACCOUNT = re.compile(r"^\d{12}$")
_DOMAIN_PREFIX = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_GCP_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")


class ConfigError(ValueError):
    """An unknown environment or an invalid value; the message names the field."""


@dataclass(frozen=True)
class Upstreams:
    """Where one data residency is served: Bedrock regions in failover order, then Vertex (optional)."""

    bedrock_regions: tuple[str, ...]
    vertex_region: str | None = None


@dataclass(frozen=True)
class IdentityProvider:
    """Company SSO federated into the user pool: SAML (metadata URL) or OIDC (issuer + client)."""

    kind: Literal["saml", "oidc"]
    name: str
    metadata_url: str | None = None  # saml
    issuer_url: str | None = None  # oidc
    client_id: str | None = None  # oidc
    # oidc: a Secrets Manager secret name; resolved by CloudFormation at deploy time, never in the template
    client_secret_name: str | None = None
    attribute_mapping_email: str = "email"


@dataclass(frozen=True)
class AnthropicApi:
    """The Claude API (or Claude Platform on AWS) as a third provider after Vertex; off unless configured.
    The key lives in a Secrets Manager secret the operator creates; the function may read only that one."""

    secret_arn: str  # the full ARN, with the random suffix Secrets Manager appends
    residencies: tuple[str, ...] = ("global",)  # where it may serve: it runs outside the Bedrock regions
    base_url: str | None = None  # None: https://api.anthropic.com
    workspace_id: str | None = None  # Claude Platform on AWS


_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+-[A-Za-z0-9]{6}$")


@dataclass(frozen=True)
class EnvironmentConfig:
    name: str
    upstreams: Mapping[str, Upstreams]
    account: str | None = None  # None: env-agnostic stacks (region/account resolved at deploy time)
    region: str | None = None
    vertex_project: str | None = None
    # Workload Identity Federation external-account JSON (audience, token URL; no secret in it)
    vertex_wif_config: str | None = None
    audit_retention_days: int = 30
    object_lock_mode: str = "GOVERNANCE"
    audit_stream_retention_hours: int = (
        168  # replay window if delivery fails (docs/decisions/audit-delivery.md)
    )
    cognito_domain_prefix: str = ""
    callback_urls: tuple[str, ...] = ("http://localhost:8765/callback",)
    logout_urls: tuple[str, ...] = ("http://localhost:8765/",)
    mfa: str = "OPTIONAL"
    feature_plan: str = "ESSENTIALS"  # threat protection needs PLUS
    identity_provider: IdentityProvider | None = None
    waf_enabled: bool = False
    waf_rate_limit_per_5min: int = 2000  # per source IP
    throttle_rate_limit: float = 50.0  # requests per second, stage-wide
    throttle_burst_limit: int = 100
    log_retention_days: int = 30
    alarm_email: str | None = None
    termination_protection: bool = False
    athena_bytes_scanned_cutoff: int = 10 * 1024**3
    lambda_memory_mb: int = 1024
    reserved_concurrency: int | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    anthropic_api: AnthropicApi | None = None

    def __post_init__(self) -> None:
        self._validate()

    # -- derived ---

    @property
    def threat_protection(self) -> bool:
        return self.feature_plan == "PLUS"

    def bedrock_regions(self) -> dict[str, list[str]]:
        return {r: list(u.bedrock_regions) for r, u in self.upstreams.items()}

    def vertex_regions(self) -> dict[str, str]:
        return {r: u.vertex_region for r, u in self.upstreams.items() if u.vertex_region}

    # -- validation ---

    def _fail(self, name: str, message: str) -> None:
        raise ConfigError(f"environment {self.name!r}: {name}: {message}")

    def _validate(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9-]{1,15}", self.name or ""):
            self._fail("name", "lower-case letters, digits and '-', 2 to 16 characters")
        if self.account is not None and not _ACCOUNT.match(self.account):
            self._fail("account", f"must be a 12-digit AWS account id, not {self.account!r}")
        if self.region is not None and not _REGION.match(self.region):
            self._fail("region", f"{self.region!r} is not an AWS region name")
        if not self.upstreams:
            self._fail("upstreams", "at least one residency must be served")
        for residency, up in self.upstreams.items():
            where = f"upstreams[{residency!r}]"
            if residency not in RESIDENCIES:
                self._fail(where, f"unknown residency; known: {', '.join(RESIDENCIES)}")
            if not isinstance(up, Upstreams) or not up.bedrock_regions:
                self._fail(f"{where}.bedrock_regions", "at least one Bedrock region")
            for region in up.bedrock_regions:
                if not _REGION.match(region):
                    self._fail(f"{where}.bedrock_regions", f"{region!r} is not an AWS region name")
            if len(set(up.bedrock_regions)) != len(up.bedrock_regions):
                self._fail(f"{where}.bedrock_regions", "a region is listed twice")
            if up.vertex_region is not None:
                if not re.fullmatch(r"[a-z]+(-[a-z0-9]+)*", up.vertex_region):
                    self._fail(f"{where}.vertex_region", f"{up.vertex_region!r} is not a Google Cloud region")
                if not self.vertex_project:
                    self._fail("vertex_project", f"required because {where} has a Vertex region")
        if self.vertex_wif_config is not None:
            try:
                wif = json.loads(self.vertex_wif_config)
            except ValueError:
                wif = None
            if not isinstance(wif, dict) or wif.get("type") != "external_account":
                self._fail("vertex_wif_config", "an external_account credential configuration (JSON)")
        if self.vertex_project is not None and not _GCP_PROJECT.match(self.vertex_project):
            self._fail("vertex_project", f"{self.vertex_project!r} is not a Google Cloud project id")
        if self.object_lock_mode not in OBJECT_LOCK_MODES:
            self._fail(
                "object_lock_mode", f"one of {', '.join(OBJECT_LOCK_MODES)}, not {self.object_lock_mode!r}"
            )
        if not 1 <= self.audit_retention_days <= 36500:
            self._fail("audit_retention_days", f"between 1 and 36500, not {self.audit_retention_days}")
        if not 24 <= self.audit_stream_retention_hours <= 8760:
            self._fail("audit_stream_retention_hours", "between 24 and 8760")
        if not _DOMAIN_PREFIX.match(self.cognito_domain_prefix) or "cognito" in self.cognito_domain_prefix:
            self._fail(
                "cognito_domain_prefix", "lower-case letters, digits and '-', without the word 'cognito'"
            )
        for name in ("callback_urls", "logout_urls"):
            urls = getattr(self, name)
            if not urls:
                self._fail(name, "at least one URL")
            for url in urls:
                local = url.startswith("http://localhost") or url.startswith("http://127.0.0.1")
                if not (url.startswith("https://") or local):
                    self._fail(name, f"{url!r} must be https (http only for localhost)")
        if self.mfa not in MFA_MODES:
            self._fail("mfa", f"one of {', '.join(MFA_MODES)}, not {self.mfa!r}")
        if self.feature_plan not in FEATURE_PLANS:
            self._fail("feature_plan", f"one of {', '.join(FEATURE_PLANS)}, not {self.feature_plan!r}")
        if self.identity_provider is not None:
            self._validate_idp(self.identity_provider)
        if self.waf_rate_limit_per_5min < 10:
            self._fail("waf_rate_limit_per_5min", "at least 10 (the WAF minimum)")
        if self.throttle_rate_limit <= 0:
            self._fail("throttle_rate_limit", "must be positive")
        if self.throttle_burst_limit < 1:
            self._fail("throttle_burst_limit", "must be at least 1")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            self._fail("log_retention_days", f"one of the CloudWatch values {LOG_RETENTION_DAYS}")
        if self.alarm_email is not None and not _EMAIL.match(self.alarm_email):
            self._fail("alarm_email", f"{self.alarm_email!r} is not an e-mail address")
        if self.athena_bytes_scanned_cutoff < 10 * 1024**2:
            self._fail("athena_bytes_scanned_cutoff", "at least 10 MB (the Athena minimum)")
        if not 128 <= self.lambda_memory_mb <= 10240:
            self._fail("lambda_memory_mb", "between 128 and 10240")
        if self.reserved_concurrency is not None and self.reserved_concurrency < 1:
            self._fail("reserved_concurrency", "at least 1, or None")
        if self.anthropic_api is not None:
            self._validate_anthropic_api(self.anthropic_api)

    def _validate_anthropic_api(self, api: AnthropicApi) -> None:
        if not _SECRET_ARN.match(api.secret_arn or ""):
            self._fail("anthropic_api.secret_arn", "the full ARN of a Secrets Manager secret (with its suffix)")
        if not api.residencies or set(api.residencies) - set(RESIDENCIES):
            self._fail("anthropic_api.residencies", f"one or more of {', '.join(RESIDENCIES)}")
        if api.base_url is not None and not api.base_url.startswith("https://"):
            self._fail("anthropic_api.base_url", "an https URL")

    def _validate_idp(self, idp: IdentityProvider) -> None:
        if idp.kind not in ("saml", "oidc"):
            self._fail("identity_provider.kind", f"'saml' or 'oidc', not {idp.kind!r}")
        if not re.fullmatch(r"[\w\-. ]{1,32}", idp.name or ""):
            self._fail("identity_provider.name", "1 to 32 letters, digits, '-', '_', '.', or spaces")
        if idp.kind == "saml" and not (idp.metadata_url or "").startswith("https://"):
            self._fail("identity_provider.metadata_url", "an https URL is required for SAML")
        if idp.kind == "oidc":
            if not (idp.issuer_url or "").startswith("https://"):
                self._fail("identity_provider.issuer_url", "an https URL is required for OIDC")
            if not idp.client_id:
                self._fail("identity_provider.client_id", "required for OIDC")
            if not idp.client_secret_name:
                self._fail(
                    "identity_provider.client_secret_name",
                    "a Secrets Manager secret name is required for OIDC",
                )


def _frozen(mapping: dict[str, Upstreams]) -> Mapping[str, Upstreams]:
    return MappingProxyType(mapping)


# Bedrock regions per residency, in failover order; the catalog's profile for that residency is invoked there.
_US = Upstreams(bedrock_regions=("us-east-1", "us-west-2", "us-east-2"), vertex_region="us-east5")
_EU = Upstreams(bedrock_regions=("eu-central-1", "eu-west-1", "eu-west-3"), vertex_region="europe-west1")
_JP = Upstreams(bedrock_regions=("ap-northeast-1", "ap-northeast-3"), vertex_region="asia-northeast1")
_GLOBAL = Upstreams(bedrock_regions=("us-east-1", "eu-central-1"), vertex_region="global")


def wif_config(project_number: str, pool: str, provider: str) -> str:
    """A Workload Identity Federation credential configuration with AWS as the identity provider.

    In Lambda, google.auth.aws signs GetCallerIdentity with the function's own credentials (environment
    variables), so no Google key exists anywhere.
    """
    return json.dumps(
        {
            "type": "external_account",
            "audience": f"//iam.googleapis.com/projects/{project_number}/locations/global/"
            f"workloadIdentityPools/{pool}/providers/{provider}",
            "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
            "token_url": "https://sts.googleapis.com/v1/token",
            "credential_source": {
                "environment_id": "aws1",
                "regional_cred_verification_url": "https://sts.{region}.amazonaws.com"
                "?Action=GetCallerIdentity&Version=2011-06-15",
            },
        },
        sort_keys=True,
    )


ENVIRONMENTS: Mapping[str, EnvironmentConfig] = MappingProxyType(
    {
        "dev": EnvironmentConfig(
            name="dev",
            upstreams=_frozen(
                {"us": Upstreams(("us-east-1", "us-west-2")), "global": Upstreams(("us-east-1",))}
            ),
            audit_retention_days=1,
            object_lock_mode="GOVERNANCE",
            cognito_domain_prefix="claude-gateway-dev",
            mfa="OPTIONAL",
            feature_plan="ESSENTIALS",
            waf_enabled=False,
            throttle_rate_limit=20,
            throttle_burst_limit=40,
            log_retention_days=14,
        ),
        "staging": EnvironmentConfig(
            name="staging",
            upstreams=_frozen({"us": _US, "eu": _EU, "global": _GLOBAL}),
            vertex_project="acme-claude-staging",
            vertex_wif_config=wif_config("210987654321", "claude-gateway-staging", "aws"),
            audit_retention_days=30,
            object_lock_mode="GOVERNANCE",
            cognito_domain_prefix="acme-claude-gateway-staging",
            callback_urls=("https://portal.staging.example.com/callback",),
            logout_urls=("https://portal.staging.example.com/",),
            mfa="REQUIRED",
            feature_plan="PLUS",
            identity_provider=IdentityProvider(
                kind="oidc",
                name="CorpSSO",
                issuer_url="https://login.example.com",
                client_id="claude-gateway-staging",
                client_secret_name="claude-gateway/staging/oidc-client-secret",
            ),
            waf_enabled=True,
            log_retention_days=90,
            alarm_email="platform-alerts@example.com",
        ),
        "prod": EnvironmentConfig(
            name="prod",
            upstreams=_frozen({"us": _US, "eu": _EU, "jp": _JP, "global": _GLOBAL}),
            vertex_project="acme-claude-prod",
            vertex_wif_config=wif_config("123456789012", "claude-gateway-prod", "aws"),
            audit_retention_days=2557,  # 7 years
            object_lock_mode="COMPLIANCE",
            cognito_domain_prefix="acme-claude-gateway",
            callback_urls=("https://portal.example.com/callback",),
            logout_urls=("https://portal.example.com/",),
            mfa="REQUIRED",
            feature_plan="PLUS",
            identity_provider=IdentityProvider(
                kind="saml", name="CorpSAML", metadata_url="https://login.example.com/saml/metadata.xml"
            ),
            waf_enabled=True,
            waf_rate_limit_per_5min=5000,
            throttle_rate_limit=500,
            throttle_burst_limit=1000,
            log_retention_days=365,
            alarm_email="platform-oncall@example.com",
            termination_protection=True,
            athena_bytes_scanned_cutoff=100 * 1024**3,
            lambda_memory_mb=2048,
            reserved_concurrency=200,
        ),
    }
)


def load(name: str | None) -> EnvironmentConfig:
    """The environment `name` (default dev); ConfigError when it is unknown."""
    name = name or "dev"
    try:
        return ENVIRONMENTS[name]
    except KeyError:
        raise ConfigError(f"unknown environment {name!r}; known: {', '.join(sorted(ENVIRONMENTS))}") from None
