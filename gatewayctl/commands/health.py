"""gatewayctl health: probe every upstream and report health, latency and breaker state (gatewayctl/health.py)."""

from __future__ import annotations

from typing import Any

from gatewayctl.options import positive_seconds
from gatewayctl.output import emit


def register(sub: Any) -> None:
    parser = sub.add_parser("health", help="probe every upstream (Bedrock regions, Vertex) and report health")
    parser.add_argument("--timeout", type=positive_seconds, default=20.0, help="seconds per probe (default 20)")
    parser.add_argument("--model", default=None, help="catalog model to probe with (default: the cheapest)")
    parser.set_defaults(func=_health)


def _health(args: Any) -> int:
    from gatewayctl import health
    from gatewayctl import target as targets

    rows = health.check(targets.resolve(args), timeout=args.timeout, model=args.model)
    emit(args, rows, columns=health.COLUMNS)
    return 0 if all(row["healthy"] for row in rows) else 1
