"""gatewayctl: operate claude-gateway in the cloud or against the local stack.

Each command group lives in gatewayctl/commands/<name>.py and exposes `register(subparsers)`;
a group registers its sub-commands with `set_defaults(func=...)`, where func(args) returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

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
    "models",
    "demo",
)


class UsageError(Exception):
    """Bad command-line syntax or values: one line on stderr, exit 2."""


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command accepts, before or after the command's name.

    Only the top-level parser has defaults: a sub-command's copy is SUPPRESSed when absent, so it
    never overwrites a value given before the command.
    """

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--json", action="store_true", default=default(False), help="print JSON instead of tables")
    parser.add_argument(
        "--target",
        default=default(None),
        help="'local' (the local stack) or 'cloud' (deployed stacks); "
        "default: local when a local stack's state is found, else cloud",
    )
    parser.add_argument("--env", default=default("dev"), help="the deployed environment (cloud target only)")
    parser.add_argument(
        "--region", default=default(None), help="AWS region of the deployed stacks (cloud target only)"
    )


class Parser(argparse.ArgumentParser):
    """Errors in one line (no usage dump) and the global options on every sub-command."""

    def __init__(self, *args: Any, top: bool = False, **kwargs: Any) -> None:
        # A sub-command may define an option of the same name (`local up --region`): its own wins.
        kwargs.setdefault("conflict_handler", "resolve")
        super().__init__(*args, **kwargs)
        _global_options(self, defaults=top)

    def error(self, message: str) -> Any:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="gatewayctl", description=__doc__.splitlines()[0], top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
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
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"gatewayctl: error: {exc}", file=sys.stderr)
        return 2
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
    except BrokenPipeError:  # `gatewayctl ... | head`: the reader has gone, nothing to report
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
