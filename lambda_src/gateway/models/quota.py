"""Quota values: windows, amounts, the items a reservation charges, and the plan of one reservation."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gateway.models.usage_items import window_sk

# (pk, sk) of one usage item, and its counters (requests, tokens, usd_micros).
UsageKey = tuple[str, str]
Counters = dict[str, int]

# How long a window item outlives its window (TTL), so `usage show` can look back a little.
_RETENTION = {"minute": timedelta(hours=1), "day": timedelta(days=35), "month": timedelta(days=400)}

@dataclass(frozen=True)
class Window:
    name: str
    bucket: str
    starts_at: datetime
    resets_at: datetime

    @property
    def sk(self) -> str:
        return window_sk(self.name, self.bucket)

    @property
    def expires_at(self) -> int:
        return int((self.resets_at + _RETENTION[self.name]).timestamp())

    def seconds_to_reset(self, now: float) -> int:
        return max(1, math.ceil(self.resets_at.timestamp() - now))


@dataclass(frozen=True)
class Amount:
    requests: int = 0
    tokens: int = 0
    usd_micros: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "tokens": self.tokens, "usd_micros": self.usd_micros}

    def __sub__(self, other: Amount) -> Amount:
        return Amount(
            self.requests - other.requests, self.tokens - other.tokens, self.usd_micros - other.usd_micros
        )

    def __neg__(self) -> Amount:
        return Amount(-self.requests, -self.tokens, -self.usd_micros)


@dataclass(frozen=True)
class WindowCharge:
    """One item of the reservation transaction: add `amount` to (pk, sk) if every bound still holds."""

    scope: str  # "tenant" or "principal"
    pk: str
    window: Window
    # counter -> limit, for the counters of this window that a limit bounds
    limits: Mapping[str, int] = field(default_factory=dict)

    @property
    def sk(self) -> str:
        return self.window.sk

    def headroom(self, amount: Amount) -> dict[str, int]:
        """counter -> the highest value it may hold before the update (limit - amount)."""
        return {c: limit - getattr(amount, c) for c, limit in self.limits.items()}


@dataclass(frozen=True)
class QuotaPlan:
    amount: Amount
    charges: tuple[WindowCharge, ...]
    now: float




@dataclass
class Reservation:
    """One granted reservation: the plan it charged, its headers, and the usage and cost it was priced
    at (one reservation's worth, what settlement charges for a try whose usage is unknown)."""

    tenant_id: str
    principal_id: str
    plan: QuotaPlan
    headers: dict[str, str]
    ceiling: tuple[Any, float]  # (Usage, USD)
    done: bool = False  # settled or released: later calls do nothing

    @property
    def amount(self) -> Amount:
        return self.plan.amount
