"""gatewayctl tenant create|show|list|update|suspend|resume."""

from __future__ import annotations

import argparse
from typing import Any

from gatewayctl.options import limit
from gatewayctl.output import emit

_COLUMNS = ("tenant_id", "name", "status", "residency", "allowed_models", "limits", "consent_required")
_LIMITS_HELP = (
    "NAME=VALUE, repeatable; names: requests_per_minute, tokens_per_minute, tokens_per_day, "
    "usd_per_month, max_tokens_per_request (NAME=none removes one on update)"
)


def register(sub: Any) -> None:
    group = sub.add_parser("tenant", help="tenants: config, limits, status").add_subparsers(
        dest="tenant_command", metavar="ACTION", required=True
    )

    create = group.add_parser("create", help="create a tenant")
    create.add_argument("tenant_id")
    _config_options(create)
    create.set_defaults(func=_create)

    show = group.add_parser("show", help="a tenant's config, roles and principals")
    show.add_argument("tenant_id")
    show.set_defaults(func=_show)

    group.add_parser("list", help="all tenants").set_defaults(func=_list)

    update = group.add_parser("update", help="change a tenant's config (limits merge)")
    update.add_argument("tenant_id")
    _config_options(update)
    update.add_argument("--no-consent-required", dest="consent_required", action="store_false")
    update.add_argument("--clear-notice", action="store_true", help="remove the system-prompt notice")
    update.add_argument("--all-models", action="store_true", help="remove the model allow-list")
    update.set_defaults(func=_update, consent_required=None)

    suspend = group.add_parser("suspend", help="refuse every request of the tenant")
    suspend.add_argument("tenant_id")
    suspend.set_defaults(func=_suspend, suspended=True)
    resume = group.add_parser("resume", help="lift a suspension")
    resume.add_argument("tenant_id")
    resume.set_defaults(func=_suspend, suspended=False)


def _config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name")
    parser.add_argument("--residency", help="us, eu, jp, apac, au or global: decides the upstream chain")
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="MODEL",
        help="allow this model (repeatable); none given: every catalog model",
    )
    parser.add_argument("--limit", action="append", dest="limits", type=limit, metavar="NAME=VALUE", help=_LIMITS_HELP)
    parser.add_argument(
        "--principal-limit",
        action="append",
        dest="principal_limits",
        type=limit,
        metavar="NAME=VALUE",
        help="a limit for each principal of the tenant; " + _LIMITS_HELP,
    )
    parser.add_argument(
        "--consent-required",
        action="store_true",
        default=None,
        help="principals need recorded consent (gatewayctl principal consent)",
    )
    parser.add_argument("--notice", help="text appended to every request's system prompt")
    parser.add_argument(
        "--client-details",
        choices=("pseudonymize", "drop"),
        help="what the audit trail keeps of callers' source IP and user agent: a pseudonym under the "
        "principal's key (default; erasure unlinks it) or nothing",
    )


def _create(args: Any) -> int:
    from gatewayctl import admin, target

    emit(
        args,
        admin.create_tenant(
            target.resolve(args),
            args.tenant_id,
            name=args.name,
            residency=args.residency or "us",
            allowed_models=args.models or (),
            limits=admin.parse_limits(args.limits),
            principal_limits=admin.parse_limits(args.principal_limits),
            consent_required=bool(args.consent_required),
            notice=args.notice,
            client_details=args.client_details or "pseudonymize",
        ),
        columns=_COLUMNS,
    )
    return 0


def _show(args: Any) -> int:
    from gatewayctl import admin, target
    from gatewayctl.admin import directory
    from gatewayctl.output import table

    where = target.resolve(args)
    view = admin.get_tenant(where, args.tenant_id)
    view["principals"] = directory.people(where, view["principals"])
    if args.json:
        emit(args, view)
        return 0
    config = {k: v for k, v in view.items() if k not in ("roles", "principals")}
    print(table([{"field": k, "value": v} for k, v in config.items()]))
    print("\nroles")
    print(table([{"role": r, "permissions": p} for r, p in view["roles"].items()]))
    print("\nprincipals")
    people = ("principal_id", "username", "email", "kind", "roles", "status", "consent_given_at")
    print(table(view["principals"], people))
    return 0


def _list(args: Any) -> int:
    from gatewayctl import admin, target

    emit(args, admin.list_tenants(target.resolve(args)), columns=_COLUMNS)
    return 0


def _update(args: Any) -> int:
    from gatewayctl import admin, target

    models = [] if args.all_models else args.models
    emit(
        args,
        admin.update_tenant(
            target.resolve(args),
            args.tenant_id,
            name=args.name,
            residency=args.residency,
            allowed_models=models,
            limits=admin.parse_limits(args.limits),
            principal_limits=admin.parse_limits(args.principal_limits),
            consent_required=args.consent_required,
            notice="" if args.clear_notice else args.notice,
            client_details=args.client_details,
        ),
        columns=_COLUMNS,
    )
    return 0


def _suspend(args: Any) -> int:
    from gatewayctl import admin, target

    emit(
        args,
        admin.suspend_tenant(target.resolve(args), args.tenant_id, suspended=args.suspended),
        columns=_COLUMNS,
    )
    return 0
