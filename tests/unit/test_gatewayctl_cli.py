"""gatewayctl's command line without a target: global options anywhere, bad values refused in one line
with exit 2 before anything runs, and numbers printed in fixed-point notation."""

from __future__ import annotations

import json

import pytest

from gatewayctl import admin, auditing, cli
from gatewayctl import target as target_module
from gatewayctl.auditing import QueryResult


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["tenant", "list"], {"json": False, "target": None, "env": "dev", "region": None}),
        (["--json", "tenant", "list"], {"json": True}),
        (["tenant", "list", "--json"], {"json": True}),
        (["tenant", "--json", "list"], {"json": True}),
        (["--region", "eu-west-1", "tenant", "list"], {"region": "eu-west-1"}),
        (["tenant", "list", "--region", "eu-west-1", "--env", "prod"], {"region": "eu-west-1", "env": "prod"}),
        (["--target", "cloud", "usage", "show", "acme", "--json"], {"target": "cloud", "json": True}),
        (["usage", "show", "acme", "--target", "local"], {"target": "local", "tenant_id": "acme"}),
        # `local up` has a --region of its own (the emulated region): it keeps it.
        (["local", "up", "--region", "eu-west-1", "--json"], {"region": "eu-west-1", "json": True}),
    ],
)
def test_global_options_before_or_after_the_command(argv, expected):
    args = cli.build_parser().parse_args(argv)
    assert {key: getattr(args, key) for key in expected} == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["audit", "verify", "--from", "2026-13-01"], "argument --from: not a date (YYYY-MM-DD): '2026-13-01'"),
        (["audit", "verify", "--from", "2026-11-01", "--to", "soon"], "argument --to: not a date"),
        (["health", "--timeout", "-1"], "argument --timeout: must be more than 0 seconds, not -1"),
        (["health", "--timeout", "abc"], "argument --timeout: not a number of seconds: 'abc'"),
        (["chat", "hi", "--max-tokens", "0"], "argument --max-tokens: must be 1 or more, not 0"),
        (["local", "up", "--gateway-port", "70000"], "argument --gateway-port: a port is between 1 and 65535"),
        (["demo", "--moto-port", "x"], "argument --moto-port: not a port number: 'x'"),
        (["tenant", "create", "x", "--limit", "requests_per_minute=-1"], "must not be negative"),
        (["tenant", "update", "x", "--principal-limit", "bananas=1"], "unknown limits ['bananas']"),
        (["principal", "add", "t", "p", "--role", "r", "--limit", "tokens_per_day"], "expected NAME=VALUE"),
        (["client", "create", "t", "n", "--role", "r", "--limit", "usd_per_month=lots"], "must be a number"),
        (["tenant", "list", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_a_bad_value_is_one_line_on_stderr_and_exit_2(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(target_module, "resolve", lambda args: pytest.fail("a command ran"))

    code = cli.main(argv)

    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("gatewayctl: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_good_values_parse():
    args = cli.build_parser().parse_args(["audit", "verify", "--from", "2026-11-01", "--to", "2026-11-23"])
    assert (str(args.date_from), str(args.date_to)) == ("2026-11-01", "2026-11-23")
    args = cli.build_parser().parse_args(["tenant", "update", "x", "--limit", "tokens_per_day=none"])
    assert args.limits == ["tokens_per_day=none"]


def test_usd_prints_in_fixed_point(capsys, monkeypatch):
    monkeypatch.setattr(target_module, "resolve", lambda args: object())
    windows = [
        {
            "window": "month",
            "bucket": "2026-11",
            "resets_at": "2026-12-01T00:00:00Z",
            "requests": {"used": 1, "limit": None, "remaining": None},
            "tokens": {"used": 17, "limit": None, "remaining": None},
            "usd": {"used": 5.1e-05, "limit": 0.5, "remaining": 0.499949},
        }
    ]
    monkeypatch.setattr(admin, "usage", lambda *a, **k: {"tenant_id": "acme", "windows": windows})
    monkeypatch.setattr(
        auditing, "query_for", lambda target: lambda sql, params: QueryResult(["cost_usd"], [(5.1e-05,), (1e-07,)])
    )

    assert cli.main(["usage", "show", "acme"]) == 0
    usage = capsys.readouterr().out
    assert cli.main(["audit", "query", "SELECT cost_usd FROM audit_events"]) == 0
    query = capsys.readouterr().out
    assert cli.main(["audit", "query", "SELECT cost_usd FROM audit_events", "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)

    assert "0.000051 / 0.5 (0.499949 left)" in usage and "e-0" not in usage
    assert query.split() == ["COST_USD", "0.000051", "0.0000001"]
    assert as_json == [{"cost_usd": 5.1e-05}, {"cost_usd": 1e-07}]  # JSON keeps numbers as numbers
