"""The same SQL in both targets: Athena in the stack's workgroup (cloud), DuckDB locally.

Locally the bucket's objects are loaded into tables with the Glue table's name and columns (both
from gateway.models.audit), partitions tenant and dt included, and the access logs as their own table.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.models.audit import PARTITION_KEYS, duckdb_columns

from gatewayctl.auditing.objects import AuditError, list_keys, read_object
from stacks.audit_queries import ACCESS_LOG_FORMAT, ACCESS_LOG_TABLE, AUDIT_TABLE
from stacks.definitions import ACCESS_LOGS_PREFIX, AUDIT_RECORDS_PREFIX


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


QueryFn = Callable[[str, Sequence[Any]], QueryResult]


def query_for(target: Any) -> QueryFn:
    """The query engine of a target: DuckDB over the local bucket, Athena in the stack's workgroup."""
    if target.kind == "local":
        s3, bucket = target.client("s3"), target.output("AuditBucketName")
        return lambda sql, params=(): duckdb_query(s3, bucket, sql, params)
    athena = target.client("athena")
    workgroup, database = target.output("AthenaWorkgroupName"), target.output("GlueDatabaseName")
    return lambda sql, params=(): athena_query(athena, sql, params, workgroup=workgroup, database=database)


def duckdb_query(
    s3: Any, bucket: str, sql: str, params: Sequence[Any] = (), *, workdir: Path | None = None
) -> QueryResult:
    """Run `sql` in DuckDB over the audit objects (and access logs) in the bucket.

    The objects are copied to a scratch directory with their keys as paths, then read with hive
    partitioning: the table has the Glue table's name, data columns and partition columns.
    """
    import duckdb

    with tempfile.TemporaryDirectory(prefix="audit-", dir=workdir) as scratch:
        root = Path(scratch)
        for prefix in (AUDIT_RECORDS_PREFIX, ACCESS_LOGS_PREFIX):
            for key in list_keys(s3, bucket, prefix):
                path = root / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(read_object(s3, bucket, key))  # stored uncompressed: one reader for all
        con = duckdb.connect()
        try:
            _create_table(
                con,
                AUDIT_TABLE,
                duckdb_columns(),
                root / AUDIT_RECORDS_PREFIX,
                partitions=[name for name, _ in PARTITION_KEYS],
            )
            _create_table(con, ACCESS_LOG_TABLE, [(k, "VARCHAR") for k in ACCESS_LOG_FORMAT], root / ACCESS_LOGS_PREFIX)
            try:
                cursor = con.execute(sql, list(params))
            except duckdb.Error as exc:
                raise AuditError(f"query failed: {exc}") from exc
            columns = [d[0] for d in cursor.description or []]
            return QueryResult(columns, [tuple(row) for row in cursor.fetchall()])
        finally:
            con.close()


def _create_table(
    con: Any, name: str, columns: list[tuple[str, str]], folder: Path, *, partitions: Sequence[str] = ()
) -> None:
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    if not files:
        cols = ", ".join(f'"{n}" {t}' for n, t in [*columns, *((p, "VARCHAR") for p in partitions)])
        con.execute(f"CREATE TABLE {name} ({cols})")
        return
    spec = "{" + ", ".join(f"'{n}': '{t}'" for n, t in columns) + "}"
    hive = ""
    if partitions:
        types = "{" + ", ".join(f"'{p}': 'VARCHAR'" for p in partitions) + "}"
        hive = f", hive_partitioning = true, hive_types = {types}"
    con.execute(
        f"CREATE TABLE {name} AS SELECT * FROM read_json(?, columns = {spec}, "
        f"format = 'newline_delimited', compression = 'none'{hive})",
        [[str(p) for p in files]],
    )


def athena_literal(value: Any) -> str:
    """Athena ExecutionParameters are SQL literals: strings quoted, numbers as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def athena_query(
    athena: Any,
    sql: str,
    params: Sequence[Any] = (),
    *,
    workgroup: str,
    database: str,
    poll_seconds: float = 0.5,
    timeout_seconds: float = 600.0,
    sleep: Callable[[float], None] = time.sleep,
) -> QueryResult:
    """Run `sql` in the stack's workgroup (which enforces the result location and encryption)."""
    request: dict[str, Any] = {
        "QueryString": sql,
        "WorkGroup": workgroup,
        "QueryExecutionContext": {"Database": database},
    }
    if params:
        request["ExecutionParameters"] = [athena_literal(p) for p in params]
    query_id = athena.start_query_execution(**request)["QueryExecutionId"]
    deadline = time.monotonic() + timeout_seconds
    while True:
        status = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]
        state = status["State"]
        if state == "SUCCEEDED":
            break
        if state in ("FAILED", "CANCELLED"):
            raise AuditError(f"Athena query {query_id} {state.lower()}: {status.get('StateChangeReason', '')}")
        if time.monotonic() > deadline:
            athena.stop_query_execution(QueryExecutionId=query_id)
            raise AuditError(f"Athena query {query_id} did not finish in {timeout_seconds:.0f}s; stopped")
        sleep(poll_seconds)
    columns: list[str] = []
    types: list[str] = []
    rows: list[tuple[Any, ...]] = []
    first = True
    for page in athena.get_paginator("get_query_results").paginate(QueryExecutionId=query_id):
        result = page["ResultSet"]
        if not columns:
            info = result.get("ResultSetMetadata", {}).get("ColumnInfo", [])
            columns = [c["Name"] for c in info]
            types = [c.get("Type", "varchar") for c in info]
        for i, row in enumerate(result.get("Rows", [])):
            values = [d.get("VarCharValue") for d in row.get("Data", [])]
            if first and i == 0 and values == columns:
                continue  # a SELECT's first row repeats the column names
            rows.append(tuple(_athena_value(v, t) for v, t in zip(values, types, strict=False)))
        first = False
    return QueryResult(columns, rows)


def _athena_value(value: str | None, athena_type: str) -> Any:
    if value is None:
        return None
    try:
        if athena_type in ("tinyint", "smallint", "integer", "bigint"):
            return int(value)
        if athena_type in ("double", "float", "real", "decimal"):
            return float(value)
    except ValueError:
        return value
    return value
