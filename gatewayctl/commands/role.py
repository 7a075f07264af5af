"""gatewayctl role define: a tenant's own role, or its override of a built-in one."""

from __future__ import annotations

from typing import Any

from gatewayctl.output import emit


def register(sub: Any) -> None:
    group = sub.add_parser("role", help="roles: named sets of permissions, per tenant").add_subparsers(
        dest="role_command", metavar="ACTION", required=True
    )
    define = group.add_parser(
        "define",
        help="define or redefine a role for a tenant; permissions: read, write, haiku, sonnet, opus, "
        "tools, vision, high_tokens",
    )
    define.add_argument("tenant_id")
    define.add_argument("name")
    define.add_argument("--permission", action="append", dest="permissions", required=True, help="repeatable")
    define.set_defaults(func=_define)


def _define(args: Any) -> int:
    from gatewayctl import admin, target

    emit(args, admin.define_role(target.resolve(args), args.tenant_id, args.name, args.permissions))
    return 0
