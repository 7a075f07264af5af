"""One typed, validated configuration per environment (dev, staging, prod).

The repository fixes each environment's shape (residencies, retention, WAF, MFA, sizes); a site supplies
what only the deploying organisation knows (account, region, sign-in domain, SSO, Vertex project, alarm
address): `load(name, site)`. `app.py` reads the site from `sites/<env>.json` and `-c NAME=VALUE` and is
the only reader of context. Staging and prod name the site settings they require; a missing one stops
synthesis with every missing name listed at once, and a bad value with `<env>: <field>` named.
docs/environments.md lists what each environment needs and shows how to add one.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from gateway.domain.catalog import Catalog, load_catalog
from gateway.models.catalog import RESIDENCIES

from stacks.definitions import CLI_CALLBACK_URL, CLI_LOGOUT_URL

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
_WIF_ID = re.compile(r"^[a-z0-9-]{4,32}$")


class ConfigError(ValueError):
    """An unknown environment, missing site settings or invalid values; the message names every one."""


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
    kms_key_arn: str | None = None  # the customer managed key encrypting the secret (None: AWS managed)


_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]{36}$")
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
    # Mirror the audit records of Vertex-served requests to Cloud Logging in the Vertex project.
    audit_mirror_cloud_logging: bool = False
    audit_retention_days: int = 30
    object_lock_mode: str = "GOVERNANCE"
    audit_stream_retention_hours: int = (
        168  # replay window if delivery fails (docs/decisions/audit-delivery.md)
    )
    # None: `claude-gateway-<env>-<account id>`, unique per account (prefixes are global per region).
    cognito_domain_prefix: str | None = None
    # Sign-in redirects besides the CLI's loopback (definitions.CLI_CALLBACK_URL), which is always registered.
    callback_urls: tuple[str, ...] = ()
    logout_urls: tuple[str, ...] = ()
    mfa: str = "OPTIONAL"
    feature_plan: str = "ESSENTIALS"  # threat protection needs PLUS
    identity_provider: IdentityProvider | None = None
    waf_enabled: bool = False
    waf_rate_limit_per_5min: int = 2000  # per source IP
    # Largest request body the WAF lets through to the model routes (API Gateway's own cap is 10 MB).
    waf_max_body_bytes: int = 10 * 1024 * 1024
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
    # This environment's changes to the model catalog, `{"models": {alias: {...} | None}}` (docs/models.md):
    # loaded at synthesis with the runtime's loader, and given to the function as CATALOG_OVERRIDES.
    catalog_overrides: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        problems: list[str] = []
        self._validate(problems.append)
        if problems:
            raise ConfigError("\n".join(f"environment {self.name!r}: {p}" for p in problems))

    # -- derived ---

    @property
    def threat_protection(self) -> bool:
        return self.feature_plan == "PLUS"

    @property
    def people_callback_urls(self) -> tuple[str, ...]:
        """What the people's app client registers: the CLI's loopback first, then the site's own."""
        return (CLI_CALLBACK_URL, *(u for u in self.callback_urls if u != CLI_CALLBACK_URL))

    @property
    def people_logout_urls(self) -> tuple[str, ...]:
        return (CLI_LOGOUT_URL, *(u for u in self.logout_urls if u != CLI_LOGOUT_URL))

    @property
    def catalog_overrides_json(self) -> str | None:
        """CATALOG_OVERRIDES: compact, with sorted keys so that the same overrides always synthesize alike."""
        if not self.catalog_overrides:
            return None
        return json.dumps(self.catalog_overrides, separators=(",", ":"), sort_keys=True)

    def catalog(self) -> Catalog:
        """The model catalog this environment serves: the base catalog with its overrides."""
        return load_catalog(None, self.catalog_overrides_json)

    def bedrock_regions(self) -> dict[str, list[str]]:
        return {r: list(u.bedrock_regions) for r, u in self.upstreams.items()}

    def vertex_regions(self) -> dict[str, str]:
        return {r: u.vertex_region for r, u in self.upstreams.items() if u.vertex_region}

    # -- validation: every problem is reported, not only the first ---

    def _validate(self, fail: Callable[[str], None]) -> None:
        def bad(name: str, message: str) -> None:
            fail(f"{name}: {message}")

        if not re.fullmatch(r"[a-z][a-z0-9-]{1,15}", self.name or ""):
            bad("name", "lower-case letters, digits and '-', 2 to 16 characters")
        if self.account is not None and not _ACCOUNT.match(self.account):
            bad("account", f"must be a 12-digit AWS account id, not {self.account!r}")
        if self.region is not None and not _REGION.match(self.region):
            bad("region", f"{self.region!r} is not an AWS region name")
        if not self.upstreams:
            bad("upstreams", "at least one residency must be served")
        for residency, up in self.upstreams.items():
            where = f"upstreams[{residency!r}]"
            if residency not in RESIDENCIES:
                bad(where, f"unknown residency; known: {', '.join(RESIDENCIES)}")
            if not isinstance(up, Upstreams) or not up.bedrock_regions:
                bad(f"{where}.bedrock_regions", "at least one Bedrock region")
                continue
            for region in up.bedrock_regions:
                if not _REGION.match(region):
                    bad(f"{where}.bedrock_regions", f"{region!r} is not an AWS region name")
            if len(set(up.bedrock_regions)) != len(up.bedrock_regions):
                bad(f"{where}.bedrock_regions", "a region is listed twice")
            if up.vertex_region is not None:
                if not re.fullmatch(r"[a-z]+(-[a-z0-9]+)*", up.vertex_region):
                    bad(f"{where}.vertex_region", f"{up.vertex_region!r} is not a Google Cloud region")
                if not self.vertex_project:
                    bad("vertex_project", f"required because {where} has a Vertex region")
        if self.vertex_wif_config is not None:
            try:
                wif = json.loads(self.vertex_wif_config)
            except ValueError:
                wif = None
            if not isinstance(wif, dict) or wif.get("type") != "external_account":
                bad("vertex_wif_config", "an external_account credential configuration (JSON)")
        if self.vertex_project is not None and not _GCP_PROJECT.match(self.vertex_project):
            bad("vertex_project", f"{self.vertex_project!r} is not a Google Cloud project id")
        if self.audit_mirror_cloud_logging and not (
            self.vertex_project and self.vertex_wif_config and self.vertex_regions()
        ):
            bad(
                "audit_mirror_cloud_logging",
                "needs Vertex: a vertex_project, its vertex_wif_config and a residency with a Vertex region",
            )
        if self.object_lock_mode not in OBJECT_LOCK_MODES:
            bad("object_lock_mode", f"one of {', '.join(OBJECT_LOCK_MODES)}, not {self.object_lock_mode!r}")
        if not 1 <= self.audit_retention_days <= 36500:
            bad("audit_retention_days", f"between 1 and 36500, not {self.audit_retention_days}")
        if not 24 <= self.audit_stream_retention_hours <= 8760:
            bad("audit_stream_retention_hours", "between 24 and 8760")
        prefix = self.cognito_domain_prefix
        if prefix is not None and (not _DOMAIN_PREFIX.match(prefix) or "cognito" in prefix):
            bad("cognito_domain_prefix", "lower-case letters, digits and '-', without the word 'cognito'")
        for name in ("callback_urls", "logout_urls"):
            for url in getattr(self, name):
                local = url.startswith("http://localhost") or url.startswith("http://127.0.0.1")
                if not (url.startswith("https://") or local):
                    bad(name, f"{url!r} must be https (http only for localhost)")
        if self.mfa not in MFA_MODES:
            bad("mfa", f"one of {', '.join(MFA_MODES)}, not {self.mfa!r}")
        if self.feature_plan not in FEATURE_PLANS:
            bad("feature_plan", f"one of {', '.join(FEATURE_PLANS)}, not {self.feature_plan!r}")
        if self.identity_provider is not None:
            self._validate_idp(self.identity_provider, bad)
        if self.waf_rate_limit_per_5min < 10:
            bad("waf_rate_limit_per_5min", "at least 10 (the WAF minimum)")
        if not 1024 <= self.waf_max_body_bytes <= 10 * 1024 * 1024:
            bad("waf_max_body_bytes", "between 1 KiB and 10 MiB (API Gateway's payload limit)")
        if self.throttle_rate_limit <= 0:
            bad("throttle_rate_limit", "must be positive")
        if self.throttle_burst_limit < 1:
            bad("throttle_burst_limit", "must be at least 1")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            bad("log_retention_days", f"one of the CloudWatch values {LOG_RETENTION_DAYS}")
        if self.alarm_email is not None and not _EMAIL.match(self.alarm_email):
            bad("alarm_email", f"{self.alarm_email!r} is not an e-mail address")
        if self.athena_bytes_scanned_cutoff < 10 * 1024**2:
            bad("athena_bytes_scanned_cutoff", "at least 10 MB (the Athena minimum)")
        if not 128 <= self.lambda_memory_mb <= 10240:
            bad("lambda_memory_mb", "between 128 and 10240")
        if self.reserved_concurrency is not None and self.reserved_concurrency < 1:
            bad("reserved_concurrency", "at least 1, or None")
        if self.anthropic_api is not None:
            self._validate_anthropic_api(self.anthropic_api, bad)
        if self.catalog_overrides is not None:
            self._validate_catalog_overrides(bad)

    def _validate_catalog_overrides(self, bad: Callable[[str, str], None]) -> None:
        # The runtime's own loader: what fails here would fail the function's first request.
        try:
            self.catalog()
        except TypeError as exc:  # from json.dumps: only a site's JSON or plain Python data will do
            bad("catalog_overrides", f"must be JSON data ({exc})")
        except ValueError as exc:
            bad("catalog_overrides", str(exc))

    @staticmethod
    def _validate_anthropic_api(api: AnthropicApi, bad: Callable[[str, str], None]) -> None:
        if not _SECRET_ARN.match(api.secret_arn or ""):
            bad("anthropic_api.secret_arn", "the full ARN of a Secrets Manager secret (with its suffix)")
        if not api.residencies or set(api.residencies) - set(RESIDENCIES):
            bad("anthropic_api.residencies", f"one or more of {', '.join(RESIDENCIES)}")
        if api.base_url is not None and not api.base_url.startswith("https://"):
            bad("anthropic_api.base_url", "an https URL")
        if api.kms_key_arn is not None and not _KMS_KEY_ARN.match(api.kms_key_arn):
            bad("anthropic_api.kms_key_arn", "the full ARN of a KMS key (arn:aws:kms:REGION:ACCOUNT:key/ID)")

    @staticmethod
    def _validate_idp(idp: IdentityProvider, bad: Callable[[str, str], None]) -> None:
        if idp.kind not in ("saml", "oidc"):
            bad("identity_provider.kind", f"'saml' or 'oidc', not {idp.kind!r}")
        if not re.fullmatch(r"[\w\-. ]{1,32}", idp.name or ""):
            bad("identity_provider.name", "1 to 32 letters, digits, '-', '_', '.', or spaces")
        if idp.kind == "saml" and not (idp.metadata_url or "").startswith("https://"):
            bad("identity_provider.metadata_url", "an https URL is required for SAML")
        if idp.kind == "oidc":
            if not (idp.issuer_url or "").startswith("https://"):
                bad("identity_provider.issuer_url", "an https URL is required for OIDC")
            if not idp.client_id:
                bad("identity_provider.client_id", "required for OIDC")
            if not idp.client_secret_name:
                bad("identity_provider.client_secret_name", "a Secrets Manager secret name is required for OIDC")


def _frozen(mapping: dict[str, Upstreams]) -> Mapping[str, Upstreams]:
    return MappingProxyType(mapping)


# Bedrock regions per residency, in failover order; the catalog's profile for that residency is invoked there.
# The Vertex region is used only when the site turns Vertex on (site setting `vertex`).
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


# -- site settings: what only the deploying organisation knows ---

# name -> what to give. `null` (None) turns off the features that can be off (NULLABLE).
SITE_SETTINGS: Mapping[str, str] = MappingProxyType(
    {
        "account": "the 12-digit AWS account id to deploy into",
        "region": "the AWS region to deploy into",
        "cognito_domain_prefix": (
            "the sign-in domain prefix, unique in the region (https://<prefix>.auth.<region>.amazoncognito.com)"
        ),
        "alarm_email": "the address alarms are e-mailed to, or null for none",
        "identity_provider": (
            'company SSO: {"kind": "saml", "name", "metadata_url"} or {"kind": "oidc", "name", "issuer_url", '
            '"client_id", "client_secret_name"} (an existing Secrets Manager secret), or null for none'
        ),
        "vertex": (
            'the Vertex AI fallback: {"project", "project_number", "pool", "provider"} (Workload Identity '
            "Federation with AWS), or null for Bedrock only"
        ),
        "audit_mirror_cloud_logging": "true to mirror Vertex-served audit records to Cloud Logging (needs vertex)",
        "callback_urls": "sign-in redirect URLs besides the CLI's loopback (a list of https URLs)",
        "logout_urls": "sign-out redirect URLs besides the CLI's loopback (a list of https URLs)",
        "tags": "extra tags for every resource (an object)",
        "anthropic_api": (
            'the Claude API as a third provider after Vertex: {"secret_arn", "residencies", "base_url", '
            '"workspace_id", "kms_key_arn"} (an existing Secrets Manager secret, full ARN; the key ARN when a '
            "customer managed key encrypts it), or null (the default: off)"
        ),
        "catalog_overrides": (
            'changes to the model catalog: {"models": {alias: {fields to change} | null}} (docs/models.md); '
            "per alias, they replace the repository's overrides for this environment"
        ),
    }
)
NULLABLE = frozenset({"alarm_email", "identity_provider", "vertex", "anthropic_api"})
_VERTEX_KEYS = ("project", "project_number", "pool", "provider")
# What every environment with real users must decide before its first deploy.
_PRODUCTION_SITE = ("account", "region", "cognito_domain_prefix", "alarm_email", "identity_provider", "vertex")


@dataclass(frozen=True)
class EnvironmentDefinition:
    """What the repository fixes for one environment; `required_site` names what a site must add."""

    settings: Mapping[str, Any]  # EnvironmentConfig keyword arguments, site settings excluded
    required_site: tuple[str, ...] = ()


ENVIRONMENTS: Mapping[str, EnvironmentDefinition] = MappingProxyType(
    {
        "dev": EnvironmentDefinition(
            settings=MappingProxyType(
                dict(
                    name="dev",
                    upstreams=_frozen(
                        {
                            "us": Upstreams(("us-east-1", "us-west-2"), vertex_region="us-east5"),
                            "global": Upstreams(("us-east-1",), vertex_region="global"),
                        }
                    ),
                    audit_retention_days=1,
                    object_lock_mode="GOVERNANCE",
                    mfa="OPTIONAL",
                    feature_plan="ESSENTIALS",
                    waf_enabled=False,
                    throttle_rate_limit=20,
                    throttle_burst_limit=40,
                    log_retention_days=14,
                )
            ),
        ),
        "staging": EnvironmentDefinition(
            settings=MappingProxyType(
                dict(
                    name="staging",
                    upstreams=_frozen({"us": _US, "eu": _EU, "global": _GLOBAL}),
                    audit_retention_days=30,
                    object_lock_mode="GOVERNANCE",
                    mfa="REQUIRED",
                    feature_plan="PLUS",
                    waf_enabled=True,
                    log_retention_days=90,
                )
            ),
            required_site=_PRODUCTION_SITE,
        ),
        "prod": EnvironmentDefinition(
            settings=MappingProxyType(
                dict(
                    name="prod",
                    upstreams=_frozen({"us": _US, "eu": _EU, "jp": _JP, "global": _GLOBAL}),
                    audit_retention_days=2557,  # 7 years
                    object_lock_mode="COMPLIANCE",
                    mfa="REQUIRED",
                    feature_plan="PLUS",
                    waf_enabled=True,
                    waf_rate_limit_per_5min=5000,
                    throttle_rate_limit=500,
                    throttle_burst_limit=1000,
                    log_retention_days=365,
                    termination_protection=True,
                    athena_bytes_scanned_cutoff=100 * 1024**3,
                    lambda_memory_mb=2048,
                    reserved_concurrency=200,
                )
            ),
            required_site=_PRODUCTION_SITE,
        ),
    }
)


def load(name: str | None, site: Mapping[str, Any] | None = None) -> EnvironmentConfig:
    """The environment `name` (default dev) completed with `site`; ConfigError names every problem."""
    name = name or "dev"
    try:
        definition = ENVIRONMENTS[name]
    except KeyError:
        raise ConfigError(f"unknown environment {name!r}; known: {', '.join(sorted(ENVIRONMENTS))}") from None
    site = dict(site or {})
    problems = [f"unknown site setting {key!r}" for key in sorted(set(site) - set(SITE_SETTINGS))]
    missing = [key for key in definition.required_site if key not in site]
    if missing:
        problems.append(
            f"missing site settings; give each in sites/{name}.json or as -c NAME=VALUE (docs/environments.md):"
            + "".join(f"\n  {key}: {SITE_SETTINGS[key]}" for key in missing)
        )
    problems += [
        f"{key}: null is not allowed (only {', '.join(sorted(NULLABLE))} can be turned off)"
        for key in sorted(site)
        if site[key] is None and key in SITE_SETTINGS and key not in NULLABLE
    ]
    kwargs = dict(definition.settings)
    kwargs.update(_from_site(site, kwargs["upstreams"], problems.append))
    if "catalog_overrides" in site and site["catalog_overrides"] is not None:
        combined = _combined_overrides(definition.settings.get("catalog_overrides"), site["catalog_overrides"])
        if combined is None:
            problems.append('catalog_overrides: an object {"models": {alias: object or null}}')
        else:
            kwargs["catalog_overrides"] = combined
    try:
        config = EnvironmentConfig(**kwargs)
    except ConfigError as exc:  # the values given: reported together with what is missing
        if not problems:
            raise
        problems += [line.split(": ", 1)[1] for line in str(exc).splitlines()]
    if problems:
        raise ConfigError("\n".join(f"environment {name!r}: {p}" for p in problems))
    return config


def _combined_overrides(base: Mapping[str, Any] | None, site: Any) -> dict[str, Any] | None:
    """The repository's overrides with a site's on top, alias by alias (a site's entry replaces the
    repository's for that alias whole); None when the site's value is not an object of that shape.
    Everything else is checked by the catalog loader, in EnvironmentConfig."""
    if not isinstance(site, Mapping) or not isinstance(site.get("models", {}), Mapping):
        return None
    base = dict(base or {})
    return {**base, **site, "models": {**(base.get("models") or {}), **site.get("models", {})}}


def _from_site(site: Mapping[str, Any], upstreams: Mapping[str, Upstreams], fail: Callable[[str], None]) -> dict:
    """EnvironmentConfig keyword arguments from site settings (values are checked by EnvironmentConfig)."""
    out: dict[str, Any] = {}
    for key in ("account", "region", "cognito_domain_prefix", "alarm_email"):
        if site.get(key) is not None:
            out[key] = str(site[key])
    for key in ("callback_urls", "logout_urls"):
        if key in site:
            if isinstance(site[key], list | tuple) and all(isinstance(u, str) for u in site[key]):
                out[key] = tuple(site[key])
            else:
                fail(f"{key}: a list of URLs")
    if "audit_mirror_cloud_logging" in site:
        if isinstance(site["audit_mirror_cloud_logging"], bool):
            out["audit_mirror_cloud_logging"] = site["audit_mirror_cloud_logging"]
        else:
            fail("audit_mirror_cloud_logging: true or false")
    if "tags" in site:
        if isinstance(site["tags"], Mapping) and all(isinstance(v, str) for v in site["tags"].values()):
            out["tags"] = MappingProxyType(dict(site["tags"]))
        else:
            fail("tags: an object of strings")
    idp = site.get("identity_provider")
    if idp is not None:
        fields = {f.name for f in dataclasses.fields(IdentityProvider)}
        if isinstance(idp, Mapping) and not set(idp) - fields and {"kind", "name"} <= set(idp):
            out["identity_provider"] = IdentityProvider(**idp)
        else:
            fail(f"identity_provider: an object with kind, name and some of {', '.join(sorted(fields))}")
    api = site.get("anthropic_api")
    if api is not None:
        fields = {f.name for f in dataclasses.fields(AnthropicApi)}
        if isinstance(api, Mapping) and "secret_arn" in api and not set(api) - fields:
            out["anthropic_api"] = AnthropicApi(**{**api, "residencies": tuple(api.get("residencies", ("global",)))})
        else:
            fail(f"anthropic_api: an object with secret_arn and some of {', '.join(sorted(fields))}")
    vertex = site.get("vertex")
    vertex_ok = vertex is not None
    if vertex is not None:
        if not isinstance(vertex, Mapping) or set(vertex) != set(_VERTEX_KEYS):
            fail(f"vertex: an object with exactly {', '.join(_VERTEX_KEYS)}")
            vertex_ok = False
        else:
            if not re.fullmatch(r"\d{6,20}", str(vertex["project_number"])):
                fail("vertex.project_number: the Google Cloud project number (digits)")
                vertex_ok = False
            for key in ("pool", "provider"):
                if not _WIF_ID.match(str(vertex[key])):
                    fail(f"vertex.{key}: a Workload Identity {key} id (4-32 of a-z, 0-9, '-')")
                    vertex_ok = False
    if vertex_ok:
        out["vertex_project"] = str(vertex["project"])
        out["vertex_wif_config"] = wif_config(str(vertex["project_number"]), vertex["pool"], vertex["provider"])
    else:
        # Bedrock only: the Vertex regions the repository names are not used.
        out["upstreams"] = _frozen({r: dataclasses.replace(u, vertex_region=None) for r, u in upstreams.items()})
    return out
