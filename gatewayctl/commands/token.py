"""gatewayctl token: print a fresh access token (refreshed when close to expiry), and nothing else.

Made for Claude Code's apiKeyHelper and for scripts: `curl -H "Authorization: Bearer $(gatewayctl token)"`.
It works from any directory: the local stack is found wherever it runs (gatewayctl/paths.py), and a
cloud sign-in is refreshed from what `login` saved, with no AWS credentials (gatewayctl/credentials.py).
It never asks anything: without a usable sign-in it fails in one line on stderr.
"""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser("token", help="print a fresh access token (for apiKeyHelper, curl, SDKs)")
    parser.set_defaults(func=_token)


def _token(args: Any) -> int:
    from gatewayctl import credentials

    token, _ = credentials.session(args)
    print(token)
    return 0
