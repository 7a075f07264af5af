"""gatewayctl principal add|roles|consent|remove|show|list."""

from __future__ import annotations

from typing import Any

from gatewayctl.options import limit
from gatewayctl.output import emit

_COLUMNS = ("principal_id", "tenant_id", "kind", "roles", "status", "consent_given_at", "limits")
_LIST_COLUMNS = ("principal_id", "username", "email", "kind", "roles", "status", "consent_given_at", "limits")
_WHO = "a person's e-mail or user name (looked up in Cognito), their Cognito `sub`, or an app client id"


def register(sub: Any) -> None:
    group = sub.add_parser(
        "principal", help="principals: who belongs to which tenant, with which roles"
    ).add_subparsers(dest="principal_command", metavar="ACTION", required=True)

    add = group.add_parser("add", help="register a Cognito user or an app client id with a tenant")
    add.add_argument("tenant_id")
    add.add_argument("principal_id", metavar="PRINCIPAL", help=_WHO)
    add.add_argument("--role", action="append", dest="roles", required=True, help="repeatable")
    add.add_argument("--kind", choices=("user", "client"), default="user")
    add.add_argument("--consent", action="store_true", help="record consent to the tenant's terms now")
    add.add_argument(
        "--limit",
        action="append",
        dest="limits",
        type=limit,
        metavar="NAME=VALUE",
        help="this principal's own limits (replace the tenant's principal limits)",
    )
    add.set_defaults(func=_add)

    roles = group.add_parser("roles", help="replace a principal's roles")
    roles.add_argument("principal_id", metavar="PRINCIPAL", help=_WHO)
    roles.add_argument("--role", action="append", dest="roles", required=True, help="repeatable")
    roles.set_defaults(func=_roles)

    consent = group.add_parser("consent", help="record (or --withdraw) consent to the tenant's terms")
    consent.add_argument("principal_id", metavar="PRINCIPAL", help=_WHO)
    consent.add_argument("--withdraw", action="store_true")
    consent.set_defaults(func=_consent)

    remove = group.add_parser("remove", help="remove a principal (it can no longer call)")
    remove.add_argument("principal_id", metavar="PRINCIPAL", help=_WHO)
    remove.set_defaults(func=_remove)

    show = group.add_parser("show", help="one principal")
    show.add_argument("principal_id", metavar="PRINCIPAL", help=_WHO)
    show.set_defaults(func=_show)

    list_ = group.add_parser("list", help="a tenant's principals, with the user names and e-mails of people")
    list_.add_argument("tenant_id")
    list_.set_defaults(func=_list)


def _add(args: Any) -> int:
    from gatewayctl import admin, target
    from gatewayctl.admin import directory

    where = target.resolve(args)
    limits = admin.parse_limits(args.limits)
    principal_id = directory.resolve(where, args.principal_id) if args.kind == "user" else args.principal_id
    display_name = args.principal_id if principal_id != args.principal_id else None  # the name it was found by
    emit(
        args,
        admin.add_principal(
            where,
            args.tenant_id,
            principal_id,
            args.roles,
            kind=args.kind,
            consent=args.consent,
            limits=limits,
            display_name=display_name,
        ),
        columns=_COLUMNS,
    )
    return 0


def _roles(args: Any) -> int:
    from gatewayctl import admin, target
    from gatewayctl.admin import directory

    where = target.resolve(args)
    principal_id = directory.resolve(where, args.principal_id)
    emit(args, admin.set_roles(where, principal_id, args.roles), columns=_COLUMNS)
    return 0


def _consent(args: Any) -> int:
    from gatewayctl import admin, target
    from gatewayctl.admin import directory

    where = target.resolve(args)
    principal_id = directory.resolve(where, args.principal_id)
    emit(args, admin.set_consent(where, principal_id, given=not args.withdraw), columns=_COLUMNS)
    return 0


def _remove(args: Any) -> int:
    from gatewayctl import admin, target
    from gatewayctl.admin import directory

    where = target.resolve(args)
    emit(args, admin.remove_principal(where, directory.resolve(where, args.principal_id)))
    return 0


def _show(args: Any) -> int:
    from gatewayctl import admin, target
    from gatewayctl.admin import directory

    where = target.resolve(args)
    principal = admin.get_principal(where, directory.resolve(where, args.principal_id))
    emit(args, directory.people(where, [principal])[0], columns=_LIST_COLUMNS)
    return 0


def _list(args: Any) -> int:
    from gatewayctl import admin, target
    from gatewayctl.admin import directory

    where = target.resolve(args)
    emit(args, directory.people(where, admin.list_principals(where, args.tenant_id)), columns=_LIST_COLUMNS)
    return 0
