"""The model catalog: data (catalog.json), not code.

An alias (`claude-sonnet-4-5`), the Anthropic id (`claude-sonnet-4-5-20250929`), the Bedrock model id,
any of its inference profile ids, and the Vertex id all resolve to the same entry.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from gateway.models.catalog import RESIDENCIES, TIERS, CatalogEntry, Prices

__all__ = ["RESIDENCIES", "TIERS", "Catalog", "CatalogEntry", "Prices", "load_catalog"]

_CATALOG_PATH = Path(__file__).resolve().parent.parent / "catalog.json"


class Catalog:
    def __init__(self, entries: list[CatalogEntry], *, geo_uplift: float) -> None:
        self.entries = entries
        self.geo_uplift = geo_uplift
        self._by_id: dict[str, CatalogEntry] = {}
        for entry in entries:
            for model_id in entry.ids:
                if model_id in self._by_id and self._by_id[model_id] is not entry:
                    raise ValueError(f"catalog: model id {model_id!r} names two entries")
                self._by_id[model_id] = entry

    def resolve(self, model: str) -> CatalogEntry | None:
        return self._by_id.get(model)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Catalog:
        entries = []
        for raw in data["models"]:
            if raw["tier"] not in TIERS:
                raise ValueError(f"catalog: {raw['alias']}: unknown tier {raw['tier']!r}")
            unknown = set(raw["bedrock_profiles"]) - set(RESIDENCIES)
            if unknown:
                raise ValueError(f"catalog: {raw['alias']}: unknown residencies {sorted(unknown)}")
            entries.append(
                CatalogEntry(
                    alias=raw["alias"],
                    anthropic_id=raw["anthropic_id"],
                    tier=raw["tier"],
                    bedrock_model_id=raw["bedrock_model_id"],
                    bedrock_profiles=dict(raw["bedrock_profiles"]),
                    vertex_model_id=raw["vertex_model_id"],
                    prices=Prices(**raw["prices"]),
                    max_output_tokens=_positive_int(raw, "max_output_tokens"),
                )
            )
        return cls(entries, geo_uplift=float(data["geo_uplift"]))


def _positive_int(raw: dict[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"catalog: {raw['alias']}: {key} must be a positive integer, not {value!r}")
    return value


@cache
def load_catalog(path: str | None = None) -> Catalog:
    return Catalog.from_dict(json.loads(Path(path or _CATALOG_PATH).read_text()))
