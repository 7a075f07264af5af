"""gatewayctl token: print a fresh access token (refreshed when close to expiry).

Made for Claude Code's apiKeyHelper (`"apiKeyHelper": "gatewayctl token"` with
ANTHROPIC_BASE_URL set to the gateway) and for scripts: `curl -H "Authorization: Bearer $(gatewayctl token)"`.
Only the token goes to stdout.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.commands.login import cache_path, fresh_token
from gatewayctl.target import resolve


def register(sub: Any) -> None:
    parser = sub.add_parser("token", help="print a fresh access token (for apiKeyHelper, curl, SDKs)")
    parser.set_defaults(func=_token)


def _token(args: Any) -> int:
    target = resolve(args)
    print(fresh_token(target, cache_path(target, getattr(args, "env", "dev"))))
    return 0
