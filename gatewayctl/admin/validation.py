"""Operator input, checked before anything is written: ids, limits, residencies, models, roles."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.domain import policy
from gateway.domain.catalog import load_catalog
from gateway.models import tenancy as tenancy_model

from gatewayctl.output import CommandError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_PRINCIPAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,255}$")


def check_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not _ID.match(value):
        raise CommandError(f"invalid {what} {value!r}: use letters, digits, '.', '_' or '-' (up to 128)")


def check_principal_id(value: str) -> None:
    # Principal ids also go into Cognito ListUsers filter strings: no quote may pass.
    if not isinstance(value, str) or not _PRINCIPAL_ID.match(value):
        raise CommandError(f"invalid principal id {value!r}")


def limits(raw: Mapping[str, Any] | None) -> tenancy_model.Limits:
    try:
        return tenancy_model.Limits.from_mapping(raw)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def residency(value: str) -> str:
    try:
        return policy.validate_residency(value)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def permissions(values: Iterable[str]) -> list[str]:
    try:
        return sorted(policy.validate_permissions(values))
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def models(values: Iterable[str]) -> list[str]:
    """Normalise any model id to its catalog alias; refuse ids the catalog does not know."""
    if isinstance(values, str):
        values = [values]
    catalog = load_catalog()
    aliases = []
    for model in values:
        entry = catalog.lookup(model)
        if entry is None:
            raise CommandError(f"unknown model {model!r}; known: {[e.alias for e in catalog.entries]}")
        aliases.append(entry.alias)
    return sorted(set(aliases))


def parse_limits(pairs: Iterable[str] | None) -> dict[str, Any] | None:
    """`name=value` pairs from the command line; `name=none` removes a limit (update)."""
    if not pairs:
        return None
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or not value:
            raise CommandError(f"limit {pair!r}: expected NAME=VALUE, e.g. requests_per_minute=60")
        out[name.strip()] = None if value.strip().lower() == "none" else value.strip()
    return out


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
