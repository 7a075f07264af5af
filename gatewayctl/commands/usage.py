"""gatewayctl usage show: a tenant's (or principal's) use and headroom in the current windows."""

from __future__ import annotations

from typing import Any

from gatewayctl.output import emit, number


def register(sub: Any) -> None:
    group = sub.add_parser("usage", help="quota usage per window").add_subparsers(
        dest="usage_command", metavar="ACTION", required=True
    )
    show = group.add_parser("show", help="used and remaining per window (minute, day, month)")
    show.add_argument("tenant_id")
    show.add_argument("--principal", dest="principal_id", help="one principal's own windows")
    show.set_defaults(func=_show)


def _show(args: Any) -> int:
    from gatewayctl import admin, target

    report = admin.usage(target.resolve(args), args.tenant_id, principal_id=args.principal_id)
    if args.json:
        emit(args, report)
        return 0
    rows = []
    for w in report["windows"]:
        row: dict[str, Any] = {"window": w["window"], "bucket": w["bucket"], "resets_at": w["resets_at"]}
        for counter in ("requests", "tokens", "usd"):
            c = w[counter]
            row[counter] = number(c["used"]) + (
                "" if c["limit"] is None else f" / {number(c['limit'])} ({number(c['remaining'])} left)"
            )
        rows.append(row)
    emit(args, rows)
    return 0
