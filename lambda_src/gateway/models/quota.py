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

    def __add__(self, other: Amount) -> Amount:
        return Amount(
            self.requests + other.requests, self.tokens + other.tokens, self.usd_micros + other.usd_micros
        )

    def __sub__(self, other: Amount) -> Amount:
        return Amount(
            self.requests - other.requests, self.tokens - other.tokens, self.usd_micros - other.usd_micros
        )

    def __neg__(self) -> Amount:
        return Amount(-self.requests, -self.tokens, -self.usd_micros)

    def __bool__(self) -> bool:
        return bool(self.requests or self.tokens or self.usd_micros)

    def within(self, other: Amount) -> bool:
        """Every counter at most `other`'s."""
        return self.requests <= other.requests and self.tokens <= other.tokens and self.usd_micros <= other.usd_micros

    def ceil(self, other: Amount) -> Amount:
        """Counter by counter, the larger of the two."""
        return Amount(
            max(self.requests, other.requests), max(self.tokens, other.tokens), max(self.usd_micros, other.usd_micros)
        )

    def floor(self, other: Amount) -> Amount:
        """Counter by counter, the smaller of the two."""
        return Amount(
            min(self.requests, other.requests), min(self.tokens, other.tokens), min(self.usd_micros, other.usd_micros)
        )

    @staticmethod
    def of(values: Mapping[str, Any]) -> Amount:
        return Amount(*(int(values.get(c, 0) or 0) for c in ("requests", "tokens", "usd_micros")))


@dataclass(frozen=True)
class WindowCharge:
    """One item of the reservation transaction: add `amount` to (pk, sk) if every bound still holds.

    A pool's item (`pool`, usage_items.pool_pk) holds budget its pool took from the window item, for
    containers to lease: taking from it is bound by what it holds (`counter >= amount`), not by a limit."""

    scope: str  # "tenant" or "principal"
    pk: str
    window: Window
    # counter -> limit, for the counters of this window that a limit bounds
    limits: Mapping[str, int] = field(default_factory=dict)
    pool: bool = False

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


# -- holds: budget taken from the window items in one conditional write --------------------------------
#
# A hold is either one request's reservation ("hold": given back when the request ends) or a container's
# lease ("lease": a slice of the windows that this container's requests draw from in memory). Either way
# the store writes it as one transaction: the amounts on each window item (within every bound) and the
# hold's own state item, which its return, commit or reaping later checks and flips.

HOLD = "hold"
LEASE = "lease"
ACTIVE = "active"


@dataclass(frozen=True)
class HoldGrant:
    id: str
    kind: str  # HOLD or LEASE
    home: UsageKey  # where its state item lives
    key: str  # which scopes it charges (the pks, joined): leases of one key are interchangeable
    charges: tuple[WindowCharge, ...]  # the window items it charges, with their limits
    amounts: tuple[Amount, ...]  # granted, per charge
    committed: tuple[Amount, ...]  # what its holder may have used, per charge (see HoldCommit)
    ends_at: float  # no new request draws from it after this
    expires_at: int  # its state item's TTL
    owner: str = ""  # the container that holds it (for the record)
    # added, unconditionally, to other items in the same write (a pool's items, when it takes budget)
    credits: tuple[tuple[WindowCharge, Amount], ...] = ()

    @property
    def keys(self) -> tuple[UsageKey, ...]:
        return tuple((c.pk, c.sk) for c in self.charges)


@dataclass(frozen=True)
class HoldReturn:
    """Give a hold back: its state item goes from active (at `seq`) to `outcome`, and each of its window
    items gets `deltas` (used - granted: negative gives budget back; positive charges more, unconditionally)."""

    id: str
    home: UsageKey
    seq: int
    keys: tuple[UsageKey, ...]
    deltas: tuple[Amount, ...]
    outcome: str = "returned"  # or "reaped"


@dataclass(frozen=True)
class HoldCommit:
    """A lease's holder promises to use at most `committed` per window item until its next commit; `extra`
    grows the grant (to `granted`, and the window items by as much), unconditionally, for usage beyond it."""

    id: str
    home: UsageKey
    seq: int  # the new sequence number; the stored one must be seq - 1
    keys: tuple[UsageKey, ...]
    committed: tuple[Amount, ...]
    granted: tuple[Amount, ...]
    extra: tuple[Amount, ...] = ()


@dataclass(frozen=True)
class Written:
    """What a store write reports: whether it took effect (False: the hold was no longer active, someone
    else gave it back or reaped it), and how many attempts met contention before it went through."""

    applied: bool = True
    contended: int = 0


@dataclass(frozen=True)
class HoldRecord:
    """A stored hold, as a reaper reads it."""

    id: str
    kind: str
    home: UsageKey
    key: str
    state: str
    seq: int
    keys: tuple[UsageKey, ...]
    granted: tuple[Amount, ...]
    committed: tuple[Amount, ...]
    ends_at: float
    owner: str = ""


@dataclass
class Reservation:
    """One granted reservation: the plan it charged, its headers, and the usage and cost it was priced
    at (one reservation's worth, what settlement charges for a try whose usage is unknown). `lease`: what it
    draws from (its own hold, or this container's lease); `keys`: the window items it counts against."""

    tenant_id: str
    principal_id: str
    plan: QuotaPlan
    headers: dict[str, str]
    ceiling: tuple[Any, float]  # (Usage, USD)
    done: bool = False  # settled or released: later calls do nothing
    lease: Any = None  # gateway.domain.leases.Lease

    @property
    def amount(self) -> Amount:
        return self.plan.amount
