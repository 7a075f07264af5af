"""No server of the gateway takes a caller's X-Forwarded-For as its address: the audit trail records the
source IP API Gateway saw (docs/audit.md). uvicorn trusts proxy headers from loopback by default, and
the Lambda Web Adapter connects from loopback. (The local stack's servers: test_authorizer.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from uvicorn.main import main as uvicorn_cli

RUN_SH = Path(__file__).resolve().parents[2] / "lambda_src" / "run.sh"


def test_the_lambda_starts_uvicorn_without_proxy_headers() -> None:
    # Given the command line run.sh execs, as uvicorn's own CLI parses it
    command = re.search(r"exec python -m uvicorn (.*)", RUN_SH.read_text(), re.S).group(1)
    command = command.replace("\\\n", " ").replace('"${AWS_LWA_PORT:-8080}"', "8080")
    parsed = uvicorn_cli.make_context("uvicorn", shlex.split(command)).params
    # Then uvicorn never rewrites the client address from X-Forwarded-For
    assert parsed["app"] == "gateway.main:app"
    assert parsed["proxy_headers"] is False

