"""Holds and leases: budget this container took from a tenant's windows, and what its requests drew from it.

Pure bookkeeping and sizing, no I/O: metering.py (a request's own hold), hot_leases.py (this container's
leases) and tenant_pools.py (a hot tenant's pools) have the store write what these decide. The design, its
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
    seconds: float = 120.0  # a lease serves new requests this long (and covers the minutes it spans)
    first_requests: float = 32.0  # a container's first lease of a key is sized for this many requests
    max_requests: float = 4096.0
    pools: bool = True  # leases of a tenant's windows come from its pools (usage_items.POOLS), not the items
    refill_leases: float = 8.0  # a pool takes this many leases' worth from the window items at a time
    refill_share: float = 0.02  # and at most this share of a limit (or one lease's worth, if more)
    # Leases only while a limit has room for this many reservations (as this container sees it): near a
    # limit, budget spread over pools and leases would be refused while it sits elsewhere.
    plenty: float = 100.0
    hot_seconds: float = 120.0  # after contention on a key's items, its requests lease this long
    scarce_seconds: float = 10.0  # after a lease could not be had, the key's requests take holds this long
    max_share: float = 0.02  # one lease takes at most this share of a limit
    reap_every: float = 1.0  # a refused container looks for reapable leases at most this often per key
    max_reaps: int = 25  # leases reaped at most per look
    refused_seconds: float = 1.0  # after a refusal, the key's requests are refused locally this long
    hold_seconds: float = 900.0  # a hold's life: the longest request (upstream timeout, finish cap) and margin
    hold_retention: float = 3600.0  # a hold's state item outlives its end this long (TTL), then goes
    retention: float = 2 * 86400.0  # an abandoned lease's state item (given back ones are deleted at once)

    def lease_amounts(
        self,
        charges: Sequence[WindowCharge],
        amount: Amount,
        per_request: Amount,
        requests: float,
        concurrency: int,
        start: float,
        end: float,
    ) -> tuple[Amount, ...]:
        """Per window item: `requests` requests charged `per_request` each over [start, end), each item its
        share by how much of that time it covers, plus room for `concurrency` requests of `amount` in flight;
        within `max_share` of each limit, and never less than one `amount`."""
        out = []
        reserved = amount.as_dict()
        expected = per_request.as_dict()
        for charge in charges:
            window = charge.window
            overlap = max(0.0, min(window.resets_at.timestamp(), end) - max(window.starts_at.timestamp(), start))
            share = requests * overlap / max(1e-9, end - start)
            want = {}
            for counter in reserved:
                value = math.ceil(share * expected[counter]) + reserved[counter] * max(1, concurrency)
                limit = charge.limits.get(counter)
                if limit is not None:
                    value = min(value, max(reserved[counter], int(self.max_share * limit)))
                want[counter] = value
            out.append(Amount.of(want))
        return tuple(out)

    def refill_amount(self, charge: WindowCharge, lease: Amount) -> Amount:
        """What a pool takes from a window item at a time: `refill_leases` leases, within `refill_share` of
        each limit, but at least the lease that asked for it."""
        want = {}
        for counter, value in lease.as_dict().items():
            chunk = math.ceil(value * self.refill_leases)
            limit = charge.limits.get(counter)
            if limit is not None:
                chunk = min(chunk, max(value, int(self.refill_share * limit)))
            want[counter] = chunk
        return Amount.of(want)

    def next_requests(self, previous: float, exhausted: bool, rate: float) -> float:
        """How many requests the next lease is sized for: what this container's recent rate would take
        over a lease's life, with half again as margin; at least twice the last when that one ran out
        early (slow start, as TCP grows its window)."""
        want = max(self.first_requests, 1.5 * rate * self.seconds)
        if exhausted:
            want = max(want, 2 * previous)
        return min(self.max_requests, want)

    def commit_target(self, granted: Amount, used: Amount) -> Amount:
        """What a lease commits to when its use passes its commitment: exactly its use (its requests in
        flight at their reservations, the ended ones at what they were charged), so that a reaper can give
        back all the rest; a container frozen after a request strands at most that request's
        reservation less its charge."""
        return used


class Lease:
    """A hold or a lease as this container holds it (the store has its state item)."""

    def __init__(self, grant: HoldGrant, route: dict[UsageKey, UsageKey] | None = None) -> None:
        self.grant = grant
        # a request's window item -> the item this draws it from (a pool's, for a lease from a pool)
        self.route = route or {}
        self.seq = 0
        self.granted: dict[UsageKey, Amount] = dict(zip(grant.keys, grant.amounts, strict=True))
        self.committed: dict[UsageKey, Amount] = dict(zip(grant.keys, grant.committed, strict=True))
        self.used: dict[UsageKey, Amount] = {k: ZERO for k in grant.keys}
        self.in_flight = 0
        self.taken = 0  # requests served from it
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

    def routed(self, keys: Iterable[UsageKey]) -> list[UsageKey]:
        return [self.route.get(k, k) for k in keys]

    def serves(self, keys: Iterable[UsageKey], amount: Amount, now: float) -> bool:
        if self.kind != LEASE or self.closed or not self.live or now >= self.grant.ends_at:
            return False
        return all(
            k in self.granted and (self.used[k] + amount).within(self.granted[k]) for k in self.routed(keys)
        )

    def take(self, keys: Iterable[UsageKey], amount: Amount) -> None:
        for k in self.routed(keys):
            self.used[k] = self.used[k] + amount
        self.in_flight += 1
        self.taken += 1

    def settle(self, keys: Iterable[UsageKey], delta: Amount) -> None:
        """A request ended: its use goes from its reservation to what it is charged (`delta`: the change)."""
        for k in self.routed(keys):
            self.used[k] = self.used[k] + delta
        self.in_flight -= 1

    def uncommitted(self, keys: Iterable[UsageKey]) -> bool:
        return any(not self.used[k].within(self.committed[k]) for k in self.routed(keys))

    def charges_for(self, keys: Iterable[UsageKey]) -> list[WindowCharge]:
        by_key = {(c.pk, c.sk): c for c in self.grant.charges}
        return [by_key[k] for k in self.routed(keys)]

    def next_commit(self, policy: LeasePolicy) -> HoldCommit:
        keys = tuple(self.granted)
        committed, granted, extra = [], [], []
        for k in keys:
            target = policy.commit_target(self.granted[k], self.used[k])
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
        return HoldReturn(self.id, self.grant.home, self.seq, keys, tuple(self.used[k] - self.granted[k] for k in keys))

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
    peak: deque[tuple[float, int]] = field(default_factory=deque)  # (when, requests in flight)
    starts: deque[float] = field(default_factory=deque)  # when its recent requests started
    hot_until: float = 0.0  # this container met contention on the key's items
    tenant_hot_until: float = 0.0  # the tenant's QUOTA#HOT mark, as this container last loaded it
    mark_due: bool = False  # this container met contention and the mark it knows is getting old
    tenant_id: str = ""
    scarce_until: float = 0.0  # a lease could not be had: no renewals until then
    probe_until: float = 0.0  # refused lately: a read comes before a hold's write until then
    # window item -> (refused locally until, the amount it refused): a request that large or larger is
    # refused without a store call until then; a smaller one may still fit
    refused: dict[UsageKey, tuple[float, Amount]] = field(default_factory=dict)
    last_reap: float = -math.inf
    last_used: float = 0.0
    lease_requests: float = 0.0  # what the next lease is sized for (0: the policy's first size)
    per_request: Amount | None = None  # what an ended request was charged, on average (recent ones weigh more)

    def leases(self) -> list[Lease]:
        return ([self.lease] if self.lease is not None else []) + self.draining + list(self.holds)

    def loaded_tenant_mark(self, until: float) -> None:
        """The tenant's hot mark as its cached record has it: a mark this container wrote since the record
        was loaded is later, and stands (else each contention would write the mark again until a reload)."""
        self.tenant_hot_until = max(self.tenant_hot_until, until)

    def sample(self, charged: Amount) -> None:
        if self.per_request is None:
            self.per_request = charged
            return
        self.per_request = Amount(
            *(
                math.ceil(0.8 * old + 0.2 * new)
                for old, new in zip(self.per_request.as_dict().values(), charged.as_dict().values(), strict=True)
            )
        )

    def note_start(self, now: float, window: float) -> None:
        self.starts.append(now)
        while self.starts and self.starts[0] < now - window:
            self.starts.popleft()

    def request_rate(self, now: float) -> float:
        """This container's requests of the key per second, over what it remembers (at least 5 s)."""
        if not self.starts:
            return 0.0
        return len(self.starts) / max(5.0, now - self.starts[0])

    def note_in_flight(self, now: float, window: float) -> None:
        self.peak.append((now, sum(lease.in_flight for lease in self.leases())))
        while self.peak and self.peak[0][0] < now - window:
            self.peak.popleft()

    def concurrency(self) -> int:
        return max((n for _, n in self.peak), default=1)

    def forget_refusals(self, keys: Iterable[UsageKey]) -> None:
        """A settlement returned budget: a local refusal on these items no longer stands."""
        for k in keys:
            self.refused.pop(k, None)

    def refused_at(self, keys: Iterable[UsageKey], amount: Amount, now: float) -> UsageKey | None:
        for k in keys:
            until, refused = self.refused.get(k, (0.0, ZERO))
            if until > now and refused.within(amount):
                return k
        return None


def counters_of(amount: Amount) -> dict[str, int]:
    return {c: getattr(amount, c) for c in COUNTERS}


__all__ = ["HOLD", "LEASE", "KeyState", "Lease", "LeasePolicy", "ZERO", "counters_of"]
