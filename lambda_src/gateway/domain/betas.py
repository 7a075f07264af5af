"""`anthropic-beta` flags per upstream wire: what each accepts (betas.json), the rest dropped and reported.

A flag an upstream does not accept is dropped for that upstream, never turned into a 400 (Bedrock
answers unknown flags with `400 invalid beta flag`, which would otherwise reach the caller as its fault).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

_PATH = Path(__file__).resolve().parent.parent / "betas.json"
WIRES = ("anthropic", "bedrock-invoke", "bedrock-messages", "vertex")


@dataclass(frozen=True)
class BetaPolicy:
    accepted: frozenset[str] | None  # None: every flag
    renamed: dict[str, str]
    not_for_models: dict[str, frozenset[str]] = field(default_factory=dict)  # flag -> model aliases

    def split(self, flags: tuple[str, ...], model: str = "") -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(flags to send, in order, renamed for this wire, without duplicates; flags dropped)."""
        kept: dict[str, None] = {}
        dropped: list[str] = []
        for flag in flags:
            name = self.renamed.get(flag, flag)
            if (self.accepted is None or name in self.accepted) and model not in self.not_for_models.get(name, ()):
                kept[name] = None
            else:
                dropped.append(flag)
        return tuple(kept), tuple(dropped)


@cache
def policies(path: str | None = None) -> dict[str, BetaPolicy]:
    data = json.loads(Path(path or _PATH).read_text())["wires"]
    out = {}
    for wire in WIRES:
        raw = data.get(wire)
        if raw is None:
            raise ValueError(f"betas.json: no entry for wire {wire!r}")
        accepted = raw.get("accepted")
        out[wire] = BetaPolicy(
            accepted=None if accepted == "*" else frozenset(accepted or ()),
            renamed=dict(raw.get("renamed") or {}),
            not_for_models={f: frozenset(v["models"]) for f, v in (raw.get("not_for_models") or {}).items()},
        )
    return out


def split(wire: str, flags: tuple[str, ...], model: str = "") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`model`: the catalog alias, for flags a wire refuses for some models only."""
    return policies()[wire].split(flags, model)
