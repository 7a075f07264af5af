"""gatewayctl client create: a machine caller (Cognito app client with client credentials + principal)."""

from __future__ import annotations

import sys
from typing import Any

from gatewayctl.options import limit
from gatewayctl.output import emit


def register(sub: Any) -> None:
    group = sub.add_parser("client", help="machine callers (OAuth client credentials)").add_subparsers(
        dest="client_command", metavar="ACTION", required=True
    )
    create = group.add_parser("create", help="create an app client with the invoke scope, and its principal")
    create.add_argument("tenant_id")
    create.add_argument("name")
    create.add_argument("--role", action="append", dest="roles", required=True, help="repeatable")
    create.add_argument("--limit", action="append", dest="limits", type=limit, metavar="NAME=VALUE")
    create.set_defaults(func=_create)


def _create(args: Any) -> int:
    from gatewayctl import admin, target

    made = admin.create_client(
        target.resolve(args), args.tenant_id, args.name, args.roles, limits=admin.parse_limits(args.limits)
    )
    emit(args, made, columns=("client_id", "client_secret", "tenant_id", "roles", "scope"))
    if not args.json:
        print("the client secret is shown once: store it now", file=sys.stderr)
    return 0
