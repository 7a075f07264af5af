"""The usage table's items: one per (tenant or principal, window), for the runtime and gatewayctl alike.

pk `USAGE#<tenant_id>` (or `USAGE#<tenant_id>#P#<principal_id>` for per-principal limits), sk
`<window>#<bucket>` (`minute#2026-11-23T03:40`, `day#2026-11-23`, `month#2026-11`), counters
`requests`, `tokens`, `usd_micros` (integers), and `expires_at` (epoch seconds, the table's TTL).
"""

from __future__ import annotations

from collections.abc import Mapping
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
