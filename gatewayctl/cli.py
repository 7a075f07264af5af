"""gatewayctl: operate claude-gateway in the cloud or against the local stack.

Each command group lives in gatewayctl/commands/<name>.py and exposes `register(subparsers)`;
a group registers its sub-commands with `set_defaults(func=...)`, where func(args) returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from gatewayctl.output import CommandError

# Command groups, imported lazily by name so one group's heavy imports never slow another down.
COMMAND_MODULES = (
    "tenant",
    "principal",
    "role",
    "client",
    "usage",
    "health",
    "audit",
    "gdpr",
    "local",
    "login",
    "token",
    "chat",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatewayctl", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--target",
        default=None,
        help="'local' (the local stack, .local/stack.json) or 'cloud' (deployed stacks); "
        "default: local when .local/stack.json exists, else cloud",
    )
    parser.add_argument("--env", default="dev", help="the deployed environment (cloud target only)")
    parser.add_argument("--region", default=None, help="AWS region of the deployed stacks (cloud target only)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"gatewayctl.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"gatewayctl.commands.{name}":
                raise
            continue  # a command group not built yet
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"gatewayctl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
