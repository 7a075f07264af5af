"""What a finished request is charged: settle to a usage, release the reservation, or keep it whole.

Pure arithmetic over the Exchange; request_end.py carries it out. Fails closed: a reservation is
released only when no upstream served anything and no try may have been billed.

- Served with final, readable usage: settle to it.
- Served and cut short with the input known (`bound`: exact input from message_start, output at
  max_tokens; none when the request has server tools): settle to that bound, at or above the truth.
- Served otherwise (no or zero usage, accounting failed): keep the whole reservation.
- Tries that timed out or failed after the upstream accepted them may still be billed: each adds one
  reservation's worth (with the input at least what the served try read, caches being per region).
- Cancelled in the failover chain: an upstream may be running the current try, so the reservation is
  kept whole, or (with possibly-billed tries) settled to (their count + 1) reservations' worth.
- Nothing served and nothing possibly billed: release.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from gateway.models.exchange import Exchange, Usage

# (usage, USD): a charge
Charge = tuple[Usage, float]


@dataclass(frozen=True)
class Settlement:
    action: Literal["settle", "release", "keep"]
    charge: Charge | None = None


KEEP = Settlement("keep")
RELEASE = Settlement("release")


def settlement(exchange: Exchange, bound: Charge | None, ceiling: Callable[[int], Charge]) -> Settlement:
    """`ceiling(input_floor)`: one reservation's worth, its input at least `input_floor`."""
    served = exchange.served_by is not None
    usage = exchange.usage
    charge: Charge | None = None
    if served and exchange.outcome == "response" and usage is not None and (usage.input_tokens or usage.output_tokens):
        charge = usage, exchange.cost_usd or 0.0
    elif served:
        charge = bound
    billed = sum(1 for attempt in exchange.attempts if attempt.possibly_billed)
    cancelled = exchange.error_type == "cancelled"
    if billed:
        floor = 0
        if charge is not None:
            counted = charge[0]
            floor = counted.input_tokens + counted.cache_read_input_tokens + counted.cache_creation_input_tokens
        # One more for a try whose usage is unknown: served without it, or cancelled in flight.
        unknown = int(charge is None and (served or cancelled))
        one = ceiling(floor)
        extra = _times(one, billed + unknown)
        charge = extra if charge is None else _plus(charge, extra)
    if charge is not None:
        return Settlement("settle", charge)
    if served or cancelled:
        return KEEP
    return RELEASE


def _times(charge: Charge, n: int) -> Charge:
    usage, cost = charge
    return Usage(usage.input_tokens * n, usage.output_tokens * n, 0, 0), cost * n


def _plus(a: Charge, b: Charge) -> Charge:
    return (
        Usage(
            a[0].input_tokens + b[0].input_tokens,
            a[0].output_tokens + b[0].output_tokens,
            a[0].cache_read_input_tokens + b[0].cache_read_input_tokens,
            a[0].cache_creation_input_tokens + b[0].cache_creation_input_tokens,
        ),
        a[1] + b[1],
    )
