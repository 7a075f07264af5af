"""The audit trail for operators and auditors: query it, verify it, answer GDPR requests.

- Queries: Athena in the cloud (the stack's workgroup and Glue table); DuckDB over the same S3
  objects in the local stack, loaded into a table with the Glue table's name and columns (both come
  from gateway.models.audit), partitions tenant and dt included, so the same SQL runs in both.
- Verify: every request id in the API access logs that reached the gateway has its audit records,
  every request record has an outcome, no record lacks a witness, and every audit object is under
  Object Lock retention.
- GDPR: export recomputes the principal's pseudonym from the secret in the tenants table and
  queries by it; erase deletes the Cognito user (or a machine principal's app client), the secret
  and the principal's mutable data, leaving the immutable trail untouched and no longer linkable.

The command modules (gatewayctl/commands/{audit,gdpr}.py) are thin wrappers around this.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.domain.pseudonym import pseudonym
from gateway.models.audit import PARTITION_KEYS, duckdb_columns

from stacks.audit_queries import (
    ACCESS_LOG_FORMAT,
    ACCESS_LOG_TABLE,
    AUDIT_TABLE,
    AUDITED_RESOURCE,
    NAMED_QUERIES,
    PRE_INTEGRATION_ERRORS,
)
from stacks.definitions import ACCESS_LOGS_PREFIX, AUDIT_RECORDS_PREFIX

OUTCOME_TYPES = frozenset({"response", "denied", "error"})


class AuditError(Exception):
    """A query or verification that could not run (the message says why)."""


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


QueryFn = Callable[[str, Sequence[Any]], QueryResult]


# ---------------------------------------------------------------- S3 objects


def list_keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"]


def read_object(s3: Any, bucket: str, key: str) -> bytes:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body


def read_json_lines(s3: Any, bucket: str, key: str) -> Iterator[dict[str, Any]]:
    for line in read_object(s3, bucket, key).splitlines():
        if line.strip():
            yield json.loads(line)


def partition_of_key(key: str) -> dict[str, str]:
    """{'tenant': ..., 'dt': ...} from audit/tenant=<id>/dt=<date>/<name>."""
    return dict(part.split("=", 1) for part in key.split("/") if "=" in part)


# ---------------------------------------------------------------- queries


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
            _create_table(
                con, ACCESS_LOG_TABLE, [(k, "VARCHAR") for k in ACCESS_LOG_FORMAT], root / ACCESS_LOGS_PREFIX
            )
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
            raise AuditError(
                f"Athena query {query_id} {state.lower()}: {status.get('StateChangeReason', '')}"
            )
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


# ---------------------------------------------------------------- verify


@dataclass
class VerifyReport:
    date_from: str
    date_to: str
    witnessed: int = 0  # access-log request ids that reached the gateway in the window
    audited: int = 0  # request ids with audit records in the window
    objects_checked: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)  # witnessed, but no outcome record
    incomplete: list[dict[str, Any]] = field(default_factory=list)  # request record without outcome
    extra: list[dict[str, Any]] = field(default_factory=list)  # audit records without a witness
    unlocked: list[dict[str, Any]] = field(default_factory=list)  # objects without Object Lock retention
    duplicates: int = 0  # records seen more than once (same event_id): harmless, reported

    @property
    def ok(self) -> bool:
        return not (self.missing or self.incomplete or self.extra or self.unlocked)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "from": self.date_from,
            "to": self.date_to,
            "witnessed": self.witnessed,
            "audited": self.audited,
            "objects_checked": self.objects_checked,
            "duplicates": self.duplicates,
            "missing": self.missing,
            "incomplete": self.incomplete,
            "extra": self.extra,
            "unlocked": self.unlocked,
        }


def needs_audit(entry: dict[str, Any]) -> bool:
    """Did this request reach the gateway's Messages route (so it must have audit records)?"""
    return (
        entry.get("http_method") == "POST"
        and entry.get("resource_path") == AUDITED_RESOURCE
        and entry.get("error_type", "-") not in PRE_INTEGRATION_ERRORS
    )


def verify(
    s3: Any, bucket: str, date_from: dt.date, date_to: dt.date, *, now: dt.datetime | None = None
) -> VerifyReport:
    """Join the access-log witness with the audit trail for [date_from, date_to] (UTC days)."""
    if date_to < date_from:
        raise AuditError("--to is before --from")
    report = VerifyReport(date_from.isoformat(), date_to.isoformat())
    start = dt.datetime.combine(date_from, dt.time(), dt.UTC)
    end = dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time(), dt.UTC)
    now = now or dt.datetime.now(dt.UTC)

    # Read one day either side of the window: a request near midnight may land in the next partition.
    lo, hi = (date_from - dt.timedelta(days=1)).isoformat(), (date_to + dt.timedelta(days=1)).isoformat()
    witness: dict[str, dict[str, Any]] = {}
    for key in list_keys(s3, bucket, ACCESS_LOGS_PREFIX):
        day = partition_of_key(key).get("dt")
        if day and not lo <= day <= hi:
            continue
        for entry in read_json_lines(s3, bucket, key):
            when = dt.datetime.fromtimestamp(int(entry["request_time"]) / 1000, dt.UTC)
            if start - dt.timedelta(days=1) <= when < end + dt.timedelta(days=1):
                witness[entry["request_id"]] = {**entry, "_in_window": start <= when < end}

    events: dict[str, set[str]] = defaultdict(set)
    in_window: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for key in list_keys(s3, bucket, AUDIT_RECORDS_PREFIX):
        day = partition_of_key(key).get("dt", "")
        if not lo <= day <= hi:
            continue
        if date_from.isoformat() <= day <= date_to.isoformat():
            report.objects_checked += 1
            lock = _lock_problem(s3, bucket, key, now)
            if lock:
                report.unlocked.append({"key": key, "problem": lock})
        for record in read_json_lines(s3, bucket, key):
            if record["event_id"] in seen:
                report.duplicates += 1
                continue
            seen.add(record["event_id"])
            events[record["request_id"]].add(record["event_type"])
            if (
                record["event_time"][:10] >= date_from.isoformat()
                and record["event_time"][:10] <= date_to.isoformat()
            ):
                in_window.setdefault(record["request_id"], record)

    expected = {rid for rid, e in witness.items() if e["_in_window"] and needs_audit(e)}
    report.witnessed = len(expected)
    report.audited = len(in_window)
    for rid in sorted(expected):
        if not events.get(rid, set()) & OUTCOME_TYPES:
            entry = witness[rid]
            report.missing.append(
                {"request_id": rid, "status": entry.get("status"), "found": sorted(events.get(rid, ()))}
            )
    for rid, record in sorted(in_window.items()):
        if "request" in events[rid] and not events[rid] & OUTCOME_TYPES:
            report.incomplete.append({"request_id": rid, "tenant": record.get("tenant_id")})
        if rid not in witness:
            report.extra.append(
                {"request_id": rid, "tenant": record.get("tenant_id"), "event_time": record["event_time"]}
            )
    return report


def _lock_problem(s3: Any, bucket: str, key: str, now: dt.datetime) -> str | None:
    head = s3.head_object(Bucket=bucket, Key=key)
    mode, until = head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")
    if not mode or not until:
        return "no object lock retention"
    if until <= now:
        return f"retention expired {until.isoformat()}"
    return None


# ---------------------------------------------------------------- GDPR


def principal_key(principal_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"PRINCIPAL#{principal_id}"}, "sk": {"S": "PRINCIPAL"}}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as plain values (strings, numbers, lists), enough for an export."""
    out: dict[str, Any] = {}
    for name, typed in item.items():
        ((kind, value),) = typed.items()
        if kind == "N":
            out[name] = float(value) if "." in value else int(value)
        elif kind in ("SS", "NS", "L"):
            out[name] = [_plain({"v": v})["v"] for v in value] if kind == "L" else sorted(value)
        elif kind == "M":
            out[name] = _plain(value)
        else:
            out[name] = value
    return out


def gdpr_export(ddb: Any, tenants_table: str, principal_id: str, query: QueryFn) -> dict[str, Any]:
    """Everything the gateway holds on a person: the principal's data and their audit records."""
    item = ddb.get_item(TableName=tenants_table, Key=principal_key(principal_id), ConsistentRead=True).get(
        "Item"
    )
    secret = item.get("pseudonym_secret", {}).get("S") if item else None
    if not secret:
        return {
            "principal_id": principal_id,
            "principal": None,
            "pseudonym": None,
            "records": [],
            "note": "no pseudonym secret (unknown or erased principal): no audit record links to them",
        }
    alias = pseudonym(secret, principal_id)
    _, sql = NAMED_QUERIES["principal_records"]
    result = query(sql, [item["tenant_id"]["S"], alias])
    data = {k: v for k, v in _plain(item).items() if k not in ("pk", "sk", "pseudonym_secret")}
    return {
        "principal_id": principal_id,
        "principal": data,
        "pseudonym": alias,
        "records": [_jsonable(r) for r in result.dicts()],
    }


def gdpr_erase(
    ddb: Any, cognito: Any, *, tenants_table: str, usage_table: str, user_pool_id: str, principal_id: str
) -> dict[str, Any]:
    """Delete everything mutable that names the principal; the audit trail (immutable) is not touched.

    Looks everything up first and writes nothing for an unknown principal (AuditError). Then, in
    this order: the Cognito identity (a person: global sign-out, then the user; a machine: its app
    client), the principal's usage windows, and last the principal item with the secret. A run cut
    short leaves the principal item, so running erase again finishes the job; what is already gone
    is skipped. `deleted` lists exactly what this run deleted.
    """
    item = ddb.get_item(TableName=tenants_table, Key=principal_key(principal_id), ConsistentRead=True).get(
        "Item"
    )
    kind = item.get("kind", {}).get("S", "user") if item else "user"
    tenant_id = item.get("tenant_id", {}).get("S") if item else None
    # Only a registered client principal's app client is deleted: an id that is not one (the
    # stack's own app clients, say) never reaches DeleteUserPoolClient.
    usernames = _cognito_usernames(cognito, user_pool_id, principal_id) if kind == "user" else []
    if not item and not usernames:
        raise AuditError(f"no principal {principal_id!r} (unknown, or already erased): nothing deleted")

    deleted: list[dict[str, str]] = []
    if kind == "client" and _gone_if_missing(
        cognito.delete_user_pool_client, UserPoolId=user_pool_id, ClientId=principal_id
    ):
        deleted.append({"store": "cognito", "what": "app client", "id": principal_id})
    for username in usernames:
        # Sign-out needs the user, so it comes first: it revokes the user's refresh tokens (no new
        # access tokens). Access tokens already issued stay valid JWTs until they expire (docs/audit.md).
        _gone_if_missing(cognito.admin_user_global_sign_out, UserPoolId=user_pool_id, Username=username)
        if _gone_if_missing(cognito.admin_delete_user, UserPoolId=user_pool_id, Username=username):
            deleted.append({"store": "cognito", "what": "user (after global sign-out)", "id": username})
    if tenant_id:
        # Per-principal quota windows: USAGE#<tenant>#P#<principal>.
        pk = f"USAGE#{tenant_id}#P#{principal_id}"
        for page in ddb.get_paginator("query").paginate(
            TableName=usage_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
            ProjectionExpression="pk, sk",
        ):
            for usage in page.get("Items", []):
                ddb.delete_item(TableName=usage_table, Key={"pk": usage["pk"], "sk": usage["sk"]})
                deleted.append({"store": "dynamodb", "what": "usage window", "id": f"{pk} {usage['sk']['S']}"})
    if item:
        # The principal item holds the secret: deleting it makes every pseudonym of this person unlinkable.
        ddb.delete_item(TableName=tenants_table, Key=principal_key(principal_id))
        deleted.append({"store": "dynamodb", "what": "principal and pseudonym secret", "id": principal_id})
    return {"principal_id": principal_id, "kind": kind, "tenant_id": tenant_id, "erased": True, "deleted": deleted}


def _cognito_usernames(cognito: Any, user_pool_id: str, sub: str) -> list[str]:
    """The usernames of the pool's users whose `sub` is this id (one, or none)."""
    found: list[str] = []
    for page in cognito.get_paginator("list_users").paginate(
        UserPoolId=user_pool_id, Filter=f'sub = "{sub}"', AttributesToGet=["sub"]
    ):
        found += [user["Username"] for user in page.get("Users", [])]
    return found


def _gone_if_missing(call: Callable[..., Any], **kwargs: Any) -> bool:
    """Run a Cognito delete; False when the thing was already gone (a second run, a race)."""
    from botocore.exceptions import ClientError

    try:
        call(**kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("UserNotFoundException", "ResourceNotFoundException"):
            return False
        raise
    return True


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(row, default=str))


# ---------------------------------------------------------------- against a target (local or cloud)


def query_for(target: Any) -> QueryFn:
    """The query engine of a target: DuckDB over the local bucket, Athena in the stack's workgroup."""
    if target.kind == "local":
        s3, bucket = target.client("s3"), target.output("AuditBucketName")
        return lambda sql, params=(): duckdb_query(s3, bucket, sql, params)
    athena = target.client("athena")
    workgroup, database = target.output("AthenaWorkgroupName"), target.output("GlueDatabaseName")
    return lambda sql, params=(): athena_query(athena, sql, params, workgroup=workgroup, database=database)


def verify_target(target: Any, date_from: dt.date, date_to: dt.date) -> VerifyReport:
    return verify(target.client("s3"), target.output("AuditBucketName"), date_from, date_to)


def export_principal(target: Any, principal_id: str) -> dict[str, Any]:
    return gdpr_export(
        target.client("dynamodb"), target.output("TenantsTableName"), principal_id, query_for(target)
    )


def erase_principal(target: Any, principal_id: str) -> dict[str, Any]:
    from gatewayctl import tenancy

    # The rule principal ids are registered under, checked before any call: the id goes into a
    # ListUsers filter string, so no quote may reach it.
    tenancy.check_principal_id(principal_id)
    return gdpr_erase(
        target.client("dynamodb"),
        target.client("cognito-idp"),
        tenants_table=target.output("TenantsTableName"),
        usage_table=target.output("UsageTableName"),
        user_pool_id=target.output("UserPoolId"),
        principal_id=principal_id,
    )


def redrive_dlq(target: Any) -> int:
    from gatewayctl.local.pump import drain_dlq

    return len(
        drain_dlq(
            target.client("sqs"),
            target.output("AuditDlqUrl"),
            target.client("kinesis"),
            target.output("AuditStreamName"),
        )
    )
