"""The Athena side of `gatewayctl audit query`: the request it sends, polling, paging, typed values."""

from __future__ import annotations

from typing import Any

import pytest

from gatewayctl.auditing import AuditError, athena_literal, athena_query


class FakeAthena:
    def __init__(self, states: list[str], pages: list[dict[str, Any]], reason: str = "") -> None:
        self.states = states
        self.pages = pages
        self.reason = reason
        self.started: dict[str, Any] = {}
        self.stopped = False

    def start_query_execution(self, **kwargs: Any) -> dict[str, Any]:
        self.started = kwargs
        return {"QueryExecutionId": "q-1"}

    def get_query_execution(self, QueryExecutionId: str) -> dict[str, Any]:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {"QueryExecution": {"Status": {"State": state, "StateChangeReason": self.reason}}}

    def stop_query_execution(self, QueryExecutionId: str) -> None:
        self.stopped = True

    def get_paginator(self, name: str) -> Any:
        assert name == "get_query_results"
        pages = self.pages

        class Paginator:
            def paginate(self, QueryExecutionId: str):
                return iter(pages)

        return Paginator()


def rows(*values: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [{"Data": [{"VarCharValue": v} if v is not None else {} for v in row]} for row in values]


META = {"ColumnInfo": [{"Name": "tenant", "Type": "varchar"}, {"Name": "n", "Type": "bigint"},
                       {"Name": "usd", "Type": "double"}]}  # fmt: skip


def test_query_runs_in_the_workgroup_with_quoted_parameters_and_typed_rows():
    athena = FakeAthena(
        ["QUEUED", "RUNNING", "SUCCEEDED"],
        [
            {
                "ResultSet": {
                    "ResultSetMetadata": META,
                    "Rows": rows(("tenant", "n", "usd"), ("acme", "3", "0.5")),
                }
            },
            {"ResultSet": {"ResultSetMetadata": META, "Rows": rows(("o'brien", "1", None))}},
        ],
    )
    sleeps: list[float] = []
    result = athena_query(
        athena, "SELECT ... WHERE tenant = ?", ["acme"], workgroup="wg", database="db", sleep=sleeps.append
    )
    assert athena.started == {
        "QueryString": "SELECT ... WHERE tenant = ?",
        "WorkGroup": "wg",
        "QueryExecutionContext": {"Database": "db"},
        "ExecutionParameters": ["'acme'"],
    }
    assert len(sleeps) == 2
    assert result.columns == ["tenant", "n", "usd"]
    # The header row is dropped only on the first page; values are typed by the column's type.
    assert result.rows == [("acme", 3, 0.5), ("o'brien", 1, None)]


def test_failed_query_raises_with_the_reason():
    athena = FakeAthena(["FAILED"], [], reason="CONSTRAINT_VIOLATION: injected partition")
    with pytest.raises(AuditError, match="CONSTRAINT_VIOLATION"):
        athena_query(athena, "SELECT 1", workgroup="wg", database="db", sleep=lambda s: None)


def test_slow_query_is_stopped_at_the_timeout():
    athena = FakeAthena(["RUNNING"], [])
    with pytest.raises(AuditError, match="did not finish"):
        athena_query(
            athena, "SELECT 1", workgroup="wg", database="db", timeout_seconds=0, sleep=lambda s: None
        )
    assert athena.stopped


def test_literals():
    assert athena_literal("it's") == "'it''s'"
    assert athena_literal(3) == "3" and athena_literal(True) == "true"
