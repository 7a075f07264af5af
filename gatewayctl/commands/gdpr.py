"""gatewayctl gdpr export|erase: answer a data subject's access and erasure requests.

The audit trail names people only by pseudonym (HMAC of the principal id under a per-principal
secret in the tenants table). Export recomputes the pseudonym and returns every record; erase
deletes the Cognito user (after a global sign-out) or a machine principal's app client, the secret
and the principal's mutable data, so the immutable trail stays but no longer links to the person.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from gatewayctl.output import CommandError, emit

PRINCIPAL_HELP = "a person's e-mail or user name (looked up in Cognito), their `sub`, or an app client id"


def register(sub: Any) -> None:
    group = sub.add_parser("gdpr", help="GDPR export and erasure for one principal").add_subparsers(
        dest="gdpr_command", metavar="ACTION", required=True
    )
    export = group.add_parser("export", help="everything held on a principal, as JSON")
    export.add_argument("principal_id", metavar="PRINCIPAL", help=PRINCIPAL_HELP)
    export.add_argument("--out", type=Path, help="write the JSON to this file instead of stdout")
    export.set_defaults(func=_export)

    erase = group.add_parser(
        "erase",
        help="delete the principal's Cognito user or app client, pseudonym secret and mutable data "
        "(the audit trail stays, unlinkable)",
    )
    erase.add_argument("principal_id", metavar="PRINCIPAL", help=PRINCIPAL_HELP)
    erase.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    erase.set_defaults(func=_erase)


def _export(args: Any) -> int:
    from gatewayctl import auditing, target

    try:
        data = auditing.export_principal(target.resolve(args), args.principal_id)
    except auditing.AuditError as exc:
        raise CommandError(str(exc)) from None
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    if args.out:
        args.out.write_text(text)
        print(f"{len(data['records'])} records written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _erase(args: Any) -> int:
    from gatewayctl import auditing, target

    if not args.yes:
        raise CommandError("erasure cannot be undone: pass --yes to confirm", exit_code=2)
    try:
        result = auditing.erase_principal(target.resolve(args), args.principal_id)
    except auditing.AuditError as exc:
        raise CommandError(str(exc)) from None
    if getattr(args, "json", False):
        emit(args, result)
    else:
        # What this run deleted on stdout, one row each; what remains, and for how long, on stderr.
        emit(args, result["deleted"], columns=("store", "what", "id"))
        print("\nwhat remains after the erasure:", file=sys.stderr)
        for entry in result["remains"]:
            print(f"- {entry['what']} ({entry['store']})", file=sys.stderr)
            for key in ("holds", "kept_for", "linkable"):
                print(f"    {key.replace('_', ' ')}: {entry[key]}", file=sys.stderr)
    return 0
