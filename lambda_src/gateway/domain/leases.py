"""Holds and leases: budget this container took from a tenant's windows, and what its requests drew from it.

Pure bookkeeping and sizing, no I/O: metering.py has the store write what these decide. The design, its
bounds and the alternatives measured are in docs/tenancy.md ("Hot tenants") and
docs/decisions/quota-hot-tenants.md.

- A hold is one request's reservation: exactly its amount on the request's window items, committed in
  full, given back (settled or released) in one write when the request ends. It is today's per-request
  reservation, and what a key gets while it is not contended, or while its budget is scarce.
- A lease is a slice of a key's windows over the next `seconds` (every bucket it overlaps, so a lease
  taken at 12:00:45 already holds some of 12:01): this container's requests draw from it in memory and
  settle into it in memory. Before a request draws beyond what the lease has committed, the lease commits
  further (one conditional write to its own state item): whatever it has not committed is provably unused,
  so another container may reap it (give it back to the windows) at any time, and the holder finds out at
  its next commit. The holder gives the lease back when it ends, when it renews it (in the same write as
  the new one), or when the container stops.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gateway.models.quota import (
    HOLD,
    LEASE,
    Amount,
    HoldCommit,
    HoldGrant,
    HoldReturn,
    UsageKey,
    WindowCharge,
)
from gateway.models.usage_items import COUNTERS

ZERO = Amount()


@dataclass(frozen=True)
class LeasePolicy:
    """When a key draws from leases rather than holds, and how leases are sized.

    `enabled` False: every request takes its own hold (the per-request design, the benchmark's baseline).
    """

    enabled: bool = True
    seconds: float = 30.0  # a lease serves new requests this long
    hot_seconds: float = 120.0  # after contention on a key's items, its requests lease this long
    scarce_seconds: float = 10.0  # after a lease could not be had, the key's requests take holds this long
    commit_share: float = 0.25  # a lease commits ahead in steps of this share of its grant
    max_share: float = 0.1  # one lease takes at most this share of a limit
    reap_every: float = 5.0  # a refused container looks for reapable leases at most this often per key
    max_reaps: int = 25  # leases reaped at most per look
    refused_seconds: float = 1.0  # after a refusal, the key's requests are refused locally this long
    hold_seconds: float = 900.0  # a hold's life: the longest request (upstream timeout, finish cap) and margin
    hold_retention: float = 3600.0  # a hold's state item outlives its end this long (TTL), then goes
    retention: float = 2 * 86400.0  # an abandoned lease's state item (given back ones are deleted at once)

    def lease_amounts(
        self,
        charges: Sequence[WindowCharge],
        amount: Amount,
        rate: tuple[float, float, float],
        concurrency: int,
        start: float,
        end: float,
    ) -> tuple[Amount, ...]:
        """Per window item: what this container is expected to use of it over [start, end) at `rate`, plus
        room for `concurrency` requests of `amount` in flight; within `max_share` of each limit, but never
        less than one `amount`."""
        out = []
        margin = amount.as_dict()
        for charge in charges:
            window = charge.window
            overlap = max(0.0, min(window.resets_at.timestamp(), end) - max(window.starts_at.timestamp(), start))
            want = {}
            for (counter, reserved), per_second in zip(margin.items(), rate, strict=True):
                value = math.ceil(per_second * overlap) + reserved * max(1, concurrency)
                limit = charge.limits.get(counter)
                if limit is not None:
                    value = min(value, max(reserved, int(self.max_share * limit)))
                want[counter] = value
            out.append(Amount.of(want))
        return tuple(out)

    def commit_target(self, granted: Amount, used: Amount) -> Amount:
        """What a lease commits to when its use passes its commitment: a step ahead of its use, within its
        grant (or exactly its use, when a settlement took it past the grant)."""
        step = Amount(*(math.ceil(self.commit_share * v) for v in granted.as_dict().values()))
        return (used + step).floor(granted).ceil(used)


class Lease:
    """A hold or a lease as this container holds it (the store has its state item)."""

    def __init__(self, grant: HoldGrant) -> None:
        self.grant = grant
        self.seq = 0
        self.granted: dict[UsageKey, Amount] = dict(zip(grant.keys, grant.amounts, strict=True))
        self.committed: dict[UsageKey, Amount] = dict(zip(grant.keys, grant.committed, strict=True))
        self.used: dict[UsageKey, Amount] = {k: ZERO for k in grant.keys}
        self.in_flight = 0
        self.closed = False  # takes no new requests
        self.gone = False  # reaped by another container: nothing of it left to give back
        self.returned = False

    @property
    def id(self) -> str:
        return self.grant.id

    @property
    def kind(self) -> str:
        return self.grant.kind

    @property
    def key(self) -> str:
        return self.grant.key

    @property
    def live(self) -> bool:
        return not (self.gone or self.returned)

    def serves(self, keys: Iterable[UsageKey], amount: Amount, now: float) -> bool:
        if self.kind != LEASE or self.closed or not self.live or now >= self.grant.ends_at:
            return False
        return all(k in self.granted and (self.used[k] + amount).within(self.granted[k]) for k in keys)

    def take(self, keys: Iterable[UsageKey], amount: Amount) -> None:
        for k in keys:
            self.used[k] = self.used[k] + amount
        self.in_flight += 1

    def settle(self, keys: Iterable[UsageKey], delta: Amount) -> None:
        """A request ended: its use goes from its reservation to what it is charged (`delta`: the change)."""
        for k in keys:
            self.used[k] = self.used[k] + delta
        self.in_flight -= 1

    def uncommitted(self, keys: Iterable[UsageKey]) -> bool:
        return any(not self.used[k].within(self.committed[k]) for k in keys)

    def next_commit(self, policy: LeasePolicy) -> HoldCommit:
        keys = tuple(self.granted)
        committed, granted, extra = [], [], []
        for k in keys:
            target = policy.commit_target(self.granted[k], self.used[k]).ceil(self.committed[k])
            more = (target - self.granted[k]).ceil(ZERO)
            committed.append(target)
            granted.append(self.granted[k] + more)
            extra.append(more)
        return HoldCommit(
            self.id,
            self.grant.home,
            self.seq + 1,
            keys,
            tuple(committed),
            tuple(granted),
            tuple(extra) if any(extra) else (),
        )

    def committed_to(self, commit: HoldCommit) -> None:
        self.seq = commit.seq
        for i, k in enumerate(commit.keys):
            self.committed[k] = commit.committed[i]
            if commit.extra:
                self.granted[k] = self.granted[k] + commit.extra[i]

    def give_back(self) -> HoldReturn:
        keys = tuple(self.granted)
        return HoldReturn(
            self.id, self.grant.home, self.seq, keys, tuple(self.used[k] - self.granted[k] for k in keys)
        )

    def slack(self, key: UsageKey) -> Amount:
        """Granted and not (yet) used: budget this container holds for its own next requests."""
        if not self.live or key not in self.granted:
            return ZERO
        return (self.granted[key] - self.used[key]).ceil(ZERO)


@dataclass
class KeyState:
    """What this container knows of one key (the scopes a request charges): its lease, how hot it is."""

    lease: Lease | None = None
    draining: list[Lease] = field(default_factory=list)  # closed leases with requests still in flight
    holds: set[Lease] = field(default_factory=set)  # this container's holds in flight
    samples: deque[tuple[float, Amount]] = field(default_factory=deque)  # (when, charged) of ended requests
    peak: deque[tuple[float, int]] = field(default_factory=deque)  # (when, requests in flight)
    hot_until: float = 0.0
    scarce_until: float = 0.0
    # window item -> (refused locally until, the amount it refused): a request that large or larger is
    # refused without a store call until then; a smaller one may still fit
    refused: dict[UsageKey, tuple[float, Amount]] = field(default_factory=dict)
    last_reap: float = -math.inf
    last_used: float = 0.0

    def leases(self) -> list[Lease]:
        return ([self.lease] if self.lease is not None else []) + self.draining + list(self.holds)

    def sample(self, now: float, charged: Amount, window: float) -> None:
        self.samples.append((now, charged))
        while self.samples and self.samples[0][0] < now - window:
            self.samples.popleft()

    def rate(self, now: float, window: float) -> tuple[float, float, float]:
        """Charged per second over the last `window` (at least one second of history assumed)."""
        if not self.samples:
            return (0.0, 0.0, 0.0)
        span = max(1.0, min(window, now - self.samples[0][0]))
        total = ZERO
        for _, charged in self.samples:
            total = total + charged
        return tuple(v / span for v in total.as_dict().values())  # type: ignore[return-value]

    def note_in_flight(self, now: float, window: float) -> None:
        self.peak.append((now, sum(lease.in_flight for lease in self.leases())))
        while self.peak and self.peak[0][0] < now - window:
            self.peak.popleft()

    def concurrency(self) -> int:
        return max((n for _, n in self.peak), default=1)

    def refused_at(self, keys: Iterable[UsageKey], amount: Amount, now: float) -> UsageKey | None:
        for k in keys:
            until, refused = self.refused.get(k, (0.0, ZERO))
            if until > now and refused.within(amount):
                return k
        return None


def counters_of(amount: Amount) -> dict[str, int]:
    return {c: getattr(amount, c) for c in COUNTERS}


__all__ = ["HOLD", "LEASE", "KeyState", "Lease", "LeasePolicy", "ZERO", "counters_of"]
