#!/usr/bin/env python3
"""The CDK app: the only place that reads context. `cdk synth -c env=prod`; default dev.

Site settings (docs/environments.md) come from `sites/<env>.json` (or the file `-c site_file=PATH` names),
and each one can be given or overridden as `-c NAME=VALUE` (a JSON value, or a plain string).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT / "lambda_src"), str(ROOT)]  # the Glue columns come from gateway.models.audit

import aws_cdk as cdk  # noqa: E402


def main() -> None:
    app = cdk.App()
    try:
        # load() checks the environment with its site settings: every problem stops here, each one named.
        from stacks.config import load

        env = app.node.try_get_context("env") or "dev"
        config = load(env, site_settings(app, env))
    except ValueError as exc:
        sys.exit(f"claude-gateway: {exc}")
    from stacks.composition import build
    from stacks.config import ConfigError
    from stacks.nag import apply_checks

    try:
        build(app, config)  # what only the stacks can check (the function's environment size)
    except ConfigError as exc:
        sys.exit(f"claude-gateway: {exc}")
    apply_checks(app)
    app.synth()


def site_settings(app: cdk.App, env: str) -> dict[str, Any]:
    from stacks.config import SITE_SETTINGS, ConfigError

    named = app.node.try_get_context("site_file")
    path = Path(named) if named else ROOT / "sites" / f"{env}.json"
    site: dict[str, Any] = {}
    if path.exists():
        try:
            site = json.loads(path.read_text())
        except ValueError as exc:
            raise ConfigError(f"{path}: not JSON ({exc})") from None
        if not isinstance(site, dict):
            raise ConfigError(f"{path}: a JSON object of site settings")
    elif named:
        raise ConfigError(f"site_file {named!r} does not exist")
    for key in SITE_SETTINGS:
        value = app.node.try_get_context(key)
        if value is not None:
            site[key] = _context_value(value)
    return site


def _context_value(value: Any) -> Any:
    """`-c vertex=null`, `-c callback_urls='["https://..."]'` are JSON; `-c region=eu-west-1` is a string."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


if __name__ == "__main__":
    main()
