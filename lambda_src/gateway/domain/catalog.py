"""The model catalog: data (catalog.json), not code, with per-environment overrides.

An alias (`claude-sonnet-4-6`), the Claude API ids (dated where they exist), the Bedrock model id, any
of its inference profile ids, and the Vertex id all resolve to the same entry. docs/models.md says how
to add, override or disable a model for one environment.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from gateway.models.catalog import (
    BEDROCK_APIS,
    RESIDENCIES,
    STATUSES,
    TIERS,
    CatalogEntry,
    Lifecycle,
    Prices,
    Rates,
)

__all__ = ["RESIDENCIES", "TIERS", "Catalog", "CatalogEntry", "Prices", "load_catalog", "merged"]

_CATALOG_PATH = Path(__file__).resolve().parent.parent / "catalog.json"
_RATE_NAMES = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")
_MODEL_KEYS = {
    "alias", "anthropic_ids", "tier", "prices", "bedrock", "vertex", "max_output_tokens", "context_window",
    "lifecycle", "regional_uplift", "source", "sources", "unverified", "line", "note", "max_image_tokens",
}  # fmt: skip
_BEDROCK_KEYS = frozenset({"api", "model_id", "profiles"})
_VERTEX_KEYS = frozenset({"model_id", "regions"})
_LIFECYCLE_KEYS = frozenset({"status", "end_of_life", "replacement", "platform", "source", "note"})


class Catalog:
    def __init__(self, entries: list[CatalogEntry], *, geo_uplift: float) -> None:
        self.entries = entries
        self.geo_uplift = geo_uplift
        self._by_id: dict[str, CatalogEntry] = {}
        for entry in entries:
            for model_id in entry.ids:
                other = self._by_id.get(model_id)
                if other is not None and other is not entry:
                    raise ValueError(
                        f"catalog: model id {model_id!r} names two entries: {other.alias} "
                        f"({_field_of(other, model_id)}) and {entry.alias} ({_field_of(entry, model_id)})"
                    )
                self._by_id[model_id] = entry
        by_alias = {e.alias for e in entries}
        for entry in entries:
            replacement = entry.lifecycle.replacement
            if replacement is not None and replacement not in by_alias:
                raise ValueError(
                    f"catalog: {entry.alias}: lifecycle.replacement {replacement!r} is not in the catalog "
                    "(or is disabled)"
                )

    def lookup(self, model: str) -> CatalogEntry | None:
        return self._by_id.get(model)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Catalog:
        entries = [_entry(raw) for raw in data["models"] if not raw.get("disabled")]
        return cls(entries, geo_uplift=float(data["regional_uplift"]))


def _field_of(entry: CatalogEntry, model_id: str) -> str:
    """Which field of an entry holds one of its ids (for messages)."""
    fields = {
        "alias": (entry.alias,),
        "anthropic_ids": entry.anthropic_ids,
        **{f"bedrock.profiles.{r}": (p,) for r, p in entry.bedrock_profiles.items()},
        "bedrock.model_id": (entry.bedrock_model_id,),
        "vertex.model_id": (entry.vertex_model_id,),
    }
    return next((name for name, values in fields.items() if model_id in values), "id")


def merged(base: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The catalog data with one environment's overrides: `{"models": {alias: {...} | null}}`.

    A mapping for an alias in the catalog is merged into its entry (nested objects merged key by key);
    one for a new alias adds a model (then it needs every required field); null disables the model.
    """
    data = copy.deepcopy(dict(base))
    if not overrides:
        return data
    unknown = set(overrides) - {"models"}
    if unknown:
        raise ValueError(f"catalog overrides: unknown keys {sorted(unknown)}; expected 'models'")
    changes = overrides.get("models") or {}
    if not isinstance(changes, Mapping):
        raise ValueError("catalog overrides: 'models' must map aliases to objects or null")
    by_alias = {m["alias"]: m for m in data["models"]}
    for alias, change in changes.items():
        if change is None:
            if alias not in by_alias:
                raise ValueError(f"catalog overrides: cannot disable {alias!r}: not in the catalog")
            by_alias[alias]["disabled"] = True
        elif not isinstance(change, Mapping):
            raise ValueError(f"catalog overrides: {alias}: must be an object or null")
        elif alias in by_alias:
            _deep_merge(by_alias[alias], change)
        else:
            data["models"].append({"alias": alias, **copy.deepcopy(dict(change))})
    return data


def _deep_merge(target: dict[str, Any], change: Mapping[str, Any]) -> None:
    for key, value in change.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _entry(raw: Mapping[str, Any]) -> CatalogEntry:
    alias = raw.get("alias")
    if not isinstance(alias, str) or not alias:
        raise ValueError("catalog: every model needs an alias")
    where = f"catalog: {alias}"
    unknown = set(raw) - _MODEL_KEYS - {"disabled"}
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
    if raw.get("tier") not in TIERS:
        raise ValueError(f"{where}: unknown tier {raw.get('tier')!r}; known: {list(TIERS)}")
    bedrock = _object(raw, "bedrock", where, _BEDROCK_KEYS)
    vertex = _object(raw, "vertex", where, _VERTEX_KEYS)
    if not isinstance(bedrock.get("profiles") or {}, Mapping):
        raise ValueError(f"{where}: bedrock.profiles must map residencies to profile ids")
    profiles = dict(bedrock.get("profiles") or {})
    for name, value in (
        *((f"bedrock.profiles.{r}", p) for r, p in profiles.items()),
        ("bedrock.model_id", bedrock.get("model_id")),
        ("vertex.model_id", vertex.get("model_id")),
    ):
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"{where}: {name} must be a model id, not {value!r}")
    _strings(vertex, "regions", f"{where}: vertex.regions")
    _strings(raw, "anthropic_ids", f"{where}: anthropic_ids")
    unknown_res = set(profiles) - set(RESIDENCIES)
    if unknown_res:
        raise ValueError(f"{where}: unknown residencies {sorted(unknown_res)}; known: {list(RESIDENCIES)}")
    api = bedrock.get("api", "invoke")
    if api not in BEDROCK_APIS:
        raise ValueError(f"{where}: bedrock.api must be one of {list(BEDROCK_APIS)}, not {api!r}")
    if not isinstance(raw.get("source"), str) or not raw["source"].startswith(("http", "anthropic ", "npm ")):
        raise ValueError(f"{where}: source must say where the entry's facts come from (a URL)")
    return CatalogEntry(
        alias=alias,
        tier=raw["tier"],
        prices=_prices(raw.get("prices"), where),
        anthropic_ids=tuple(raw.get("anthropic_ids") or (alias,)),
        bedrock_model_id=bedrock.get("model_id") or None,
        bedrock_api=api,
        bedrock_profiles={k: str(v) for k, v in profiles.items()},
        vertex_model_id=vertex.get("model_id") or None,
        vertex_regions=tuple(vertex.get("regions") or ()),
        max_output_tokens=_positive_int(raw, "max_output_tokens", where),
        context_window=_positive_int(raw, "context_window", where),
        max_image_tokens=_positive_int(raw, "max_image_tokens", where) or 4784,
        lifecycle=_lifecycle(raw.get("lifecycle"), where),
        regional_uplift=bool(raw.get("regional_uplift", True)),
        source=raw["source"],
    )


def _object(raw: Mapping[str, Any], key: str, where: str, known: frozenset[str]) -> dict[str, Any]:
    """An optional nested object: absent or null is empty; a non-object or an unknown field (an override's
    typo would otherwise change nothing) is refused by name."""
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: {key} must be an object, not {value!r}")
    unknown = set(value) - known
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(f'{key}.{u}' for u in unknown)}")
    return dict(value)


def _strings(raw: Mapping[str, Any], key: str, where: str) -> None:
    value = raw.get(key)
    if value is not None and not (isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value)):
        raise ValueError(f"{where} must be a list of strings, not {value!r}")


def _rates(raw: Any, where: str) -> Rates:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: prices must be an object")
    values = {}
    for name in _RATE_NAMES:
        value = raw.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{where}: prices.{name} must be a non-negative number, not {value!r}")
        values[name] = float(value)
    return Rates(**values)


def _prices(raw: Any, where: str) -> Prices:
    rates = _rates(raw, where)
    long = raw.get("long_prompt")
    if long is None:
        return Prices(**vars(rates))
    above = long.get("above_prompt_tokens") if isinstance(long, Mapping) else None
    if isinstance(above, bool) or not isinstance(above, int) or above < 1:
        raise ValueError(f"{where}: prices.long_prompt.above_prompt_tokens must be a positive integer")
    return Prices(**vars(rates), long_prompt=_rates(long, f"{where} long_prompt"), long_prompt_above=above)


def _lifecycle(raw: Any, where: str) -> Lifecycle:
    raw = _object({"lifecycle": raw}, "lifecycle", where, _LIFECYCLE_KEYS)
    status = raw.get("status", "active")
    if status not in STATUSES:
        raise ValueError(f"{where}: lifecycle.status must be one of {list(STATUSES)}, not {status!r}")
    end = raw.get("end_of_life")
    if end is not None:
        try:
            date.fromisoformat(end)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: lifecycle.end_of_life must be YYYY-MM-DD, not {end!r}") from None
    if status == "deprecated" and end is None:
        raise ValueError(f"{where}: a deprecated model needs lifecycle.end_of_life")
    replacement = raw.get("replacement")
    if status == "retired" and not replacement:
        raise ValueError(f"{where}: a retired model needs lifecycle.replacement")
    return Lifecycle(status=status, end_of_life=end, replacement=replacement)


def _positive_int(raw: Mapping[str, Any], key: str, where: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: {key} must be a positive integer, not {value!r}")
    return value


def base_data() -> dict[str, Any]:
    return json.loads(_CATALOG_PATH.read_text())


@cache
def load_catalog(path: str | None = None, overrides: str | None = None) -> Catalog:
    """The catalog; `overrides` is the JSON the stack sets as CATALOG_OVERRIDES for its environment."""
    data = json.loads(Path(path).read_text()) if path else base_data()
    return Catalog.from_dict(merged(data, json.loads(overrides) if overrides else None))
