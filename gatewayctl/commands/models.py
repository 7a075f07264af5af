"""gatewayctl models: what a caller may use, and `models check`: what the account can serve
(gatewayctl/modelcatalog/, docs/models.md)."""

from __future__ import annotations

import sys
from typing import Any

from gatewayctl.options import positive_seconds
from gatewayctl.output import CommandError, emit


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "models",
        help="the models a caller may use: the signed-in caller, or --tenant T --role R; `models check` compares "
        "the catalog with what the account's Bedrock and Vertex serve",
    )
    parser.add_argument("--tenant", help="list for a principal of this tenant (with --role), not for yourself")
    parser.add_argument(
        "--role",
        action="append",
        dest="roles",
        metavar="ROLE",
        help="with --tenant: a role the principal holds (repeatable)",
    )
    parser.set_defaults(func=_list)
    actions = parser.add_subparsers(dest="models_command", metavar="ACTION")
    check = actions.add_parser(
        "check", help="check every route of the environment's catalog against Bedrock's and Vertex's listings"
    )
    check.add_argument("--problems", action="store_true", help="show only the routes with a warning or an error")
    check.add_argument("--timeout", type=positive_seconds, default=20.0, help="seconds per call (default 20)")
    check.set_defaults(func=_check)


def _list(args: Any) -> int:
    from gatewayctl import target
    from gatewayctl.modelcatalog import listing

    if bool(args.tenant) != bool(args.roles):
        raise CommandError("--tenant and --role go together (or neither, for the signed-in caller)", exit_code=2)
    rows = listing.for_role(target.resolve(args), args.tenant, args.roles) if args.tenant else listing.for_caller(args)
    emit(args, rows, columns=listing.COLUMNS)
    return 0


def _check(args: Any) -> int:
    from gatewayctl import target
    from gatewayctl.modelcatalog import check

    rows = check.check(target.resolve(args), timeout=args.timeout)
    emit(args, [r for r in rows if r["status"] != check.OK] if args.problems else rows, columns=check.COLUMNS)
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in (check.OK, check.WARNING, check.ERROR)}
    print(
        f"{len(rows)} routes: {counts[check.OK]} ok, {counts[check.WARNING]} with warnings, "
        f"{counts[check.ERROR]} that cannot work",
        file=sys.stderr,
    )
    return 1 if counts[check.ERROR] else 0
