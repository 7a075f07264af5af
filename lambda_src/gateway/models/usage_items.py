"""The usage table's items: one per (tenant or principal, window), for the runtime and gatewayctl alike.

pk `USAGE#<tenant_id>` (or `USAGE#<tenant_id>#P#<principal_id>` for per-principal limits), sk
`<window>#<bucket>` (`minute#2026-11-23T03:40`, `day#2026-11-23`, `month#2026-11`), counters
`requests`, `tokens`, `usd_micros` (integers), and `expires_at` (epoch seconds, the table's TTL).

A hot tenant's pools (pool_pk) have items with the same sks and counters, negative: the budget each took
from the window item and has not leased out. The window item plus its pools' items is what is charged.

Holds (one request's reservation, or a container's lease) each have a state item: in the principal's
partition when they charge a principal's windows (so erasing a principal's usage erases them too), else in
one of the tenant's HOLD_PARTITIONS partitions `USAGE#<tenant_id>#H<n>` (spread, so their writes never
meet on one partition); sk `<kind>#<ends_at, 10 digits>#<id>`, so a range read finds the unexpired ones.
Attributes: `kind`, `state` (active, returned, reaped), `seq`, `key`, `charges` (list of "pk|sk"),
`granted` and `committed` (lists of [requests, tokens, usd_micros], one per charge), `ends_at`, `owner`,
`expires_at` (TTL).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

COUNTERS = ("requests", "tokens", "usd_micros")
TTL_ATTRIBUTE = "expires_at"


def tenant_pk(tenant_id: str) -> str:
    return f"USAGE#{tenant_id}"


def principal_pk(tenant_id: str, principal_id: str) -> str:
    return f"USAGE#{tenant_id}#P#{principal_id}"


def window_sk(window: str, bucket: str) -> str:
    return f"{window}#{bucket}"


def counters(item: Mapping[str, Any]) -> dict[str, int]:
    """The counters of a stored item (absent: zero)."""
    return {c: int(item.get(c, 0) or 0) for c in COUNTERS}


HOLD_PARTITIONS = 8
# A hot tenant's pools: items `USAGE#<tenant_id>#S<n>` with the window sks, holding budget taken from the
# tenant's window items for its containers to lease (docs/tenancy.md, Hot tenants).
POOLS = 16


def pool_pk(tenant_pk_: str, n: int) -> str:
    return f"{tenant_pk_}#S{n}"


def hold_home(scope_pks: Sequence[str], kind: str, hold_id: str, ends_at: float) -> tuple[str, str]:
    """The (pk, sk) of a hold's state item; `scope_pks`: the tenant's pk first, then the principal's if any."""
    sk = f"{kind}#{int(ends_at):010d}#{hold_id}"
    if len(scope_pks) > 1:
        return scope_pks[-1], sk
    return hold_partition(scope_pks[0], hold_id), sk


def hold_partition(tenant_pk_: str, hold_id: str) -> str:
    n = int.from_bytes(hashlib.sha256(hold_id.encode()).digest()[:4], "big") % HOLD_PARTITIONS
    return f"{tenant_pk_}#H{n}"


def hold_partitions(scope_pks: Sequence[str]) -> list[str]:
    """Every partition where holds of these scopes may live."""
    if len(scope_pks) > 1:
        return [scope_pks[-1]]
    return [f"{scope_pks[0]}#H{n}" for n in range(HOLD_PARTITIONS)]
