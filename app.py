#!/usr/bin/env python3
"""The CDK app: the only place that reads context. `cdk synth -c env=prod`; default dev."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT / "lambda_src"), str(ROOT)]  # the Glue columns come from gateway.models.audit

import aws_cdk as cdk  # noqa: E402


def main() -> None:
    app = cdk.App()
    try:
        # stacks.config validates every environment when imported: a bad value stops here, named.
        from stacks.config import load

        config = load(app.node.try_get_context("env"))
    except ValueError as exc:
        sys.exit(f"claude-gateway: {exc}")
    from stacks.composition import build
    from stacks.nag import apply_checks

    build(app, config)
    apply_checks(app)
    app.synth()


if __name__ == "__main__":
    main()
