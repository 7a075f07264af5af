"""gatewayctl principal add|roles|consent|remove|show|list."""

from __future__ import annotations

from typing import Any

from gatewayctl.output import emit

_COLUMNS = ("principal_id", "tenant_id", "kind", "roles", "status", "consent_given_at", "limits")


def register(sub: Any) -> None:
    group = sub.add_parser(
        "principal", help="principals: who belongs to which tenant, with which roles"
    ).add_subparsers(dest="principal_command", metavar="ACTION", required=True)

    add = group.add_parser("add", help="register a Cognito user (its sub) or app client id with a tenant")
    add.add_argument("tenant_id")
    add.add_argument("principal_id", help="the Cognito `sub` of a user, or an app client id")
    add.add_argument("--role", action="append", dest="roles", required=True, help="repeatable")
    add.add_argument("--kind", choices=("user", "client"), default="user")
    add.add_argument("--consent", action="store_true", help="record consent to the tenant's terms now")
    add.add_argument(
        "--limit",
        action="append",
        dest="limits",
        metavar="NAME=VALUE",
        help="this principal's own limits (replace the tenant's principal limits)",
    )
    add.set_defaults(func=_add)

    roles = group.add_parser("roles", help="replace a principal's roles")
    roles.add_argument("principal_id")
    roles.add_argument("--role", action="append", dest="roles", required=True, help="repeatable")
    roles.set_defaults(func=_roles)

    consent = group.add_parser("consent", help="record (or --withdraw) consent to the tenant's terms")
    consent.add_argument("principal_id")
    consent.add_argument("--withdraw", action="store_true")
    consent.set_defaults(func=_consent)

    remove = group.add_parser("remove", help="remove a principal (it can no longer call)")
    remove.add_argument("principal_id")
    remove.set_defaults(func=_remove)

    show = group.add_parser("show", help="one principal")
    show.add_argument("principal_id")
    show.set_defaults(func=_show)

    list_ = group.add_parser("list", help="a tenant's principals")
    list_.add_argument("tenant_id")
    list_.set_defaults(func=_list)


def _add(args: Any) -> int:
    from gatewayctl import admin, target

    emit(
        args,
        admin.add_principal(
            target.resolve(args),
            args.tenant_id,
            args.principal_id,
            args.roles,
            kind=args.kind,
            consent=args.consent,
            limits=admin.parse_limits(args.limits),
        ),
        columns=_COLUMNS,
    )
    return 0


def _roles(args: Any) -> int:
    from gatewayctl import admin, target

    emit(args, admin.set_roles(target.resolve(args), args.principal_id, args.roles), columns=_COLUMNS)
    return 0


def _consent(args: Any) -> int:
    from gatewayctl import admin, target

    emit(
        args,
        admin.set_consent(target.resolve(args), args.principal_id, given=not args.withdraw),
        columns=_COLUMNS,
    )
    return 0


def _remove(args: Any) -> int:
    from gatewayctl import admin, target

    emit(args, admin.remove_principal(target.resolve(args), args.principal_id))
    return 0


def _show(args: Any) -> int:
    from gatewayctl import admin, target

    emit(args, admin.get_principal(target.resolve(args), args.principal_id), columns=_COLUMNS)
    return 0


def _list(args: Any) -> int:
    from gatewayctl import admin, target

    emit(args, admin.list_principals(target.resolve(args), args.tenant_id), columns=_COLUMNS)
    return 0
