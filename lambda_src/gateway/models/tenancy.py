"""Tenants, principals and their limits, as the gateway holds them in memory (loaded from the tenants table)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ACTIVE = "active"
SUSPENDED = "suspended"
STATUSES = (ACTIVE, SUSPENDED)
CLIENT_DETAILS = ("pseudonymize", "drop")

LIMIT_NAMES = (
    "requests_per_minute",
    "tokens_per_minute",
    "tokens_per_day",
    "usd_per_month",
    "max_tokens_per_request",
)


@dataclass(frozen=True)
class Limits:
    """None means unlimited. USD is a float here and micro-dollars (integers) in the usage table."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    tokens_per_day: int | None = None
    usd_per_month: float | None = None
    max_tokens_per_request: int | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> Limits:
        """Parse and validate (operator input and stored items alike); raise ValueError on bad values."""
        raw = dict(raw or {})
        unknown = sorted(set(raw) - set(LIMIT_NAMES))
        if unknown:
            raise ValueError(f"unknown limits {unknown}; known: {list(LIMIT_NAMES)}")
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if value is None:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"limit {name} must be a number, not {value!r}") from None
            if number < 0 or number != number:  # NaN
                raise ValueError(f"limit {name} must not be negative, not {value!r}")
            if name != "usd_per_month":
                if number != int(number):
                    raise ValueError(f"limit {name} must be a whole number, not {value!r}")
                values[name] = int(number)
            else:
                values[name] = number
        return cls(**values)

    def to_mapping(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in LIMIT_NAMES if getattr(self, name) is not None}

    @property
    def empty(self) -> bool:
        return not self.to_mapping()


@dataclass(frozen=True)
class TenantConfig:
    tenant_id: str
    name: str
    status: str = ACTIVE
    residency: str = "us"
    # Catalog aliases the tenant may use; empty means every model in the catalog.
    allowed_models: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    # Limits applied to each principal of the tenant (a principal's own `limits` replaces them).
    principal_limits: Limits = field(default_factory=Limits)
    consent_required: bool = False
    # Appended to the system prompt of every request when set (e.g. a data-processing notice).
    notice: str | None = None
    # What the audit trail keeps of the caller's source IP and user agent: "pseudonymize" (keyed by the
    # principal's secret, unlinked by erasure) or "drop".
    client_details: str = "pseudonymize"
    # Role name -> permissions, from the tenant's ROLE# items; these replace built-ins of the same name.
    roles: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Until when the tenant's quota items are known to be contended (the runtime's QUOTA#HOT item): every
    # container draws from leases until then, from its first request (docs/tenancy.md, Hot tenants).
    quota_hot_until: float = 0.0


@dataclass(frozen=True)
class PrincipalRecord:
    id: str
    tenant_id: str
    roles: tuple[str, ...]
    kind: str = "user"
    status: str = ACTIVE
    pseudonym_secret: str | None = None
    # ISO-8601 time the person accepted the tenant's terms; required when the tenant asks for consent.
    consent_given_at: str | None = None
    limits: Limits | None = None
