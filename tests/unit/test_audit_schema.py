"""The audit record is the one definition of the schema: the model, the Glue columns and the DuckDB
columns agree, records carry no prompt text, and every named query parses against the DuckDB table."""

from __future__ import annotations

import json
import re

import duckdb
import pytest
from gateway.domain.catalog import load_catalog
from gateway.models import audit
from gateway.models.audit import AuditRecord
from gateway.models.exchange import (
    Attempt,
    CallerIdentity,
    Exchange,
    MessagesRequest,
    PolicyDecision,
    Principal,
    RequestMeta,
    Usage,
)

from stacks.audit_queries import AUDIT_TABLE, NAMED_QUERIES

SECRET_PROMPT = "the launch code is swordfish"
SECRET_COMPLETION = "understood, swordfish it is"


def served_exchange() -> Exchange:
    entry = load_catalog().entries[0]
    body = {"model": entry.alias, "max_tokens": 64, "messages": [{"role": "user", "content": SECRET_PROMPT}]}
    ex = Exchange(
        meta=RequestMeta(request_id="req-1", source_ip="10.0.0.9", user_agent="anthropic-python/0.70"),
        identity=CallerIdentity("sub-1", "user", "client-1", frozenset({"invoke"}), {"sub": "sub-1"}),
        principal=Principal(id="sub-1", tenant_id="acme", roles=("basic_user",), pseudonym="ps-abc"),
        request=MessagesRequest(
            model=entry.alias,
            max_tokens=64,
            stream=False,
            uses_tools=False,
            has_images=False,
            estimated_input_tokens=12,
            body=body,
            body_sha256="a" * 64,
        ),
        decision=PolicyDecision(entry=entry, residency="us", body=body),
        started_at=1795405200.0,  # 2026-11-23T03:40:00Z
        quota_decision="granted",
    )
    ex.attempts = [
        Attempt("bedrock", "us-east-1", "m", error="429 ThrottlingException", status=429),
        Attempt("bedrock", "us-west-2", "m-served"),
    ]
    ex.served_by = ex.attempts[-1]
    ex.usage = Usage(input_tokens=12, output_tokens=30, cache_read_input_tokens=2, cache_creation_input_tokens=1)
    ex.cost_usd = 0.000456
    ex.response_sha256 = "b" * 64
    ex.first_byte_at = ex.started_at + 0.25
    ex.finished_at = ex.started_at + 1.5
    ex.status = 200
    ex.outcome = "response"
    return ex


def test_glue_and_duckdb_columns_come_from_the_record_fields():
    names = audit.column_names()
    assert [n for n, _ in audit.glue_columns()] == names
    assert [n for n, _ in audit.duckdb_columns()] == names
    required = {
        "schema_version", "event_id", "event_time", "request_id", "event_type", "tenant_id", "principal",
        "model_alias", "provider", "region", "upstream_model_id", "request_sha256", "response_sha256",
        "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd", "latency_ms",
        "ttfb_ms", "status", "error_type", "attempts", "quota_decision", "source_ip", "user_agent",
    }  # fmt: skip
    assert required <= set(names)
    # The partitions are columns of both engines' tables, never data fields (no clash).
    assert not {k for k, _ in audit.PARTITION_KEYS} & set(names)


def test_glue_and_duckdb_types_correspond():
    pairs = {"string": "VARCHAR", "bigint": "BIGINT", "double": "DOUBLE"}
    for (name, glue), (_, duck) in zip(audit.glue_columns(), audit.duckdb_columns(), strict=True):
        if name == "attempts":
            assert glue == (
                "array<struct<provider:string,region:string,error:string,status:bigint,possibly_billed:boolean>>"
            )
            assert duck == (
                "STRUCT(provider VARCHAR, region VARCHAR, error VARCHAR, status BIGINT, possibly_billed BOOLEAN)[]"
            )
        else:
            assert pairs[glue] == duck, name


def test_response_record_from_exchange():
    record = AuditRecord.from_exchange(served_exchange(), "response")
    assert record.schema_version == audit.SCHEMA_VERSION
    assert record.event_time == "2026-11-23T03:40:01.500Z"
    assert record.dt == "2026-11-23"
    assert (record.tenant_id, record.principal) == ("acme", "ps-abc")
    assert (record.provider, record.region, record.upstream_model_id) == ("bedrock", "us-west-2", "m-served")
    assert (record.input_tokens, record.output_tokens) == (12, 30)
    assert (record.cache_read_tokens, record.cache_write_tokens) == (2, 1)
    assert (record.latency_ms, record.ttfb_ms, record.status) == (1500, 250, 200)
    assert record.attempt_count == 2
    assert record.attempts[0].error == "429 ThrottlingException"
    assert record.cost_usd == pytest.approx(0.000456)


def test_request_record_has_no_outcome_facts_and_distinct_stable_id():
    ex = served_exchange()
    req = AuditRecord.from_exchange(ex, "request")
    assert req.event_time == "2026-11-23T03:40:00.000Z"
    assert req.input_tokens is None and req.status is None and req.attempts == [] and req.latency_ms is None
    assert req.request_sha256 == "a" * 64
    again = AuditRecord.from_exchange(ex, "request")
    assert again.event_id == req.event_id  # a retried record keeps its id
    assert AuditRecord.from_exchange(ex, "response").event_id != req.event_id


def test_record_without_principal_uses_unknown_tenant_and_no_pseudonym():
    ex = Exchange(meta=RequestMeta(request_id="r"))
    ex.status, ex.error_type, ex.outcome = 403, "permission_error", "denied"
    record = AuditRecord.from_exchange(ex, "denied")
    assert record.tenant_id == audit.UNKNOWN_TENANT and record.principal is None


def test_json_is_compact_round_trips_and_never_holds_prompt_or_completion_text():
    ex = served_exchange()
    for event_type in ("request", "response"):
        record = AuditRecord.from_exchange(ex, event_type)
        text = record.to_json()
        assert "\n" not in text and ": " not in text
        assert SECRET_PROMPT not in text and "swordfish" not in text and "sub-1" not in text
        assert AuditRecord.from_json(text) == record
        assert list(json.loads(text)) == audit.column_names()


def test_unknown_event_type_is_refused():
    with pytest.raises(ValueError):
        AuditRecord.from_exchange(served_exchange(), "deleted")


def test_iso_millis_rounds_into_the_next_second():
    assert audit.iso_millis(0.9996) == "1970-01-01T00:00:01.000Z"


@pytest.fixture
def con():
    con = duckdb.connect()
    cols = ", ".join(f"{n} {t}" for n, t in audit.duckdb_columns() + [("tenant", "VARCHAR"), ("dt", "VARCHAR")])
    con.execute(f"CREATE TABLE {AUDIT_TABLE} ({cols})")
    return con


@pytest.mark.parametrize("name", sorted(NAMED_QUERIES))
def test_named_queries_run_in_duckdb(con, name):
    description, sql = NAMED_QUERIES[name]
    assert description and sql.strip().upper().startswith("SELECT")
    params = ["x"] * sql.count("?")
    con.execute(sql, params).fetchall()  # binds every column: a renamed field fails here


@pytest.mark.parametrize("name", sorted(NAMED_QUERIES))
def test_named_queries_name_their_tenant(name):
    # The Glue table projects `tenant` with the injected type: Athena refuses a query whose WHERE
    # clause holds no static equality on it, so every SELECT from the table must have `tenant = ?`.
    _, sql = NAMED_QUERIES[name]
    selects = len(re.findall(rf"\bFROM {AUDIT_TABLE}\b", sql))
    assert len(re.findall(r"\btenant = \?", sql)) == selects >= 1


def test_local_access_log_fields_are_in_the_stacks_format():
    pytest.importorskip("aws_cdk")
    from stacks.audit_queries import ACCESS_LOG_FORMAT
    from stacks.constructs import audit_trail

    cloud = audit_trail.ACCESS_LOG_FORMAT
    assert {k: cloud.get(k) for k in ACCESS_LOG_FORMAT} == ACCESS_LOG_FORMAT


def test_named_queries_use_no_engine_specific_functions():
    # Functions that exist in only one of Trino and DuckDB would pass the DuckDB run and fail in Athena.
    banned = r"\b(cardinality|len|list_\w+|array_length|strftime|date_trunc|from_iso8601_\w+|try_cast|::)"
    for name, (_, sql) in NAMED_QUERIES.items():
        assert not re.search(banned, sql, re.IGNORECASE), name


def test_every_column_is_documented():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text()
    table = doc[doc.index("| column |") : doc.index("Partitions (columns in both engines)")]
    undocumented = [name for name in audit.column_names() if f"`{name}`" not in table]
    assert not undocumented, f"add these columns to docs/audit.md: {undocumented}"


@pytest.mark.parametrize("name", sorted(NAMED_QUERIES))
def test_named_queries_parse_as_athena_sql_against_the_glue_columns(name):
    # Athena itself cannot run offline; sqlglot's Athena (Trino) dialect parses each query and
    # resolves every column against the Glue table built from the same schema, so a query that
    # DuckDB accepts but Athena would reject on syntax or an unknown column fails here.
    import sqlglot
    from sqlglot.optimizer.qualify import qualify

    schema = {AUDIT_TABLE: dict(audit.glue_columns()) | dict(audit.PARTITION_KEYS)}
    _, sql = NAMED_QUERIES[name]
    expression = sqlglot.parse_one(sql, read="athena")
    qualify(expression, schema=schema, dialect="athena", validate_qualify_columns=True)


def test_the_athena_check_rejects_an_unknown_column():
    import sqlglot
    from sqlglot.errors import OptimizeError
    from sqlglot.optimizer.qualify import qualify

    schema = {AUDIT_TABLE: dict(audit.glue_columns()) | dict(audit.PARTITION_KEYS)}
    sql = f"SELECT prompt_text FROM {AUDIT_TABLE} WHERE tenant = ?"
    expression = sqlglot.parse_one(sql, read="athena")
    with pytest.raises(OptimizeError):
        qualify(expression, schema=schema, dialect="athena", validate_qualify_columns=True)


def possibly_billed_exchange() -> Exchange:
    """A Bedrock try that timed out after Bedrock accepted it, then Vertex served."""
    ex = served_exchange()
    ex.attempts = [
        Attempt("bedrock", "us-east-1", "m", error="Timeout", status=504, possibly_billed=True),
        Attempt("bedrock", "us-west-2", "m", error="429 ThrottlingException", status=429),
        Attempt("vertex", "us-east5", "m-served"),
    ]
    ex.served_by = ex.attempts[-1]
    return ex


def test_a_possibly_billed_attempt_is_in_the_record_and_its_json():
    record = AuditRecord.from_exchange(possibly_billed_exchange(), "response")
    assert [(a.error, a.possibly_billed) for a in record.attempts] == [
        ("Timeout", True),  # the error text stays the plain code: the flag is its own field
        ("429 ThrottlingException", False),
        (None, False),
    ]
    attempts = json.loads(record.to_json())["attempts"]
    assert [a["possibly_billed"] for a in attempts] == [True, False, False]
    assert AuditRecord.from_json(record.to_json()) == record
    # A record written before the field existed still loads (its attempts read as not flagged).
    del attempts[0]["possibly_billed"]
    old = AuditRecord.from_dict(json.loads(record.to_json()) | {"attempts": attempts})
    assert old.attempts[0].possibly_billed is False


# Counts possibly-billed attempts per request. Not a named query: the two engines unnest an array of
# structs differently (Trino expands the struct's fields into columns of the alias, DuckDB keeps one
# struct column), so no single UNNEST form runs in both. These are the two spellings docs/audit.md gives;
# the Athena one is parsed and resolved here, not run (no Athena offline).
DUCKDB_POSSIBLY_BILLED = f"""SELECT e.request_id, count(*) AS possibly_billed_attempts
FROM {AUDIT_TABLE} e CROSS JOIN UNNEST(e.attempts) AS t(a)
WHERE e.tenant = ? AND a.possibly_billed
GROUP BY e.request_id
ORDER BY e.request_id"""
ATHENA_POSSIBLY_BILLED = f"""SELECT e.request_id, count(*) AS possibly_billed_attempts
FROM {AUDIT_TABLE} e CROSS JOIN UNNEST(e.attempts) AS t(provider, region, error, status, possibly_billed)
WHERE e.tenant = ? AND t.possibly_billed
GROUP BY e.request_id
ORDER BY e.request_id"""


def test_duckdb_counts_possibly_billed_attempts_from_written_records(tmp_path):
    # Through the same read_json column spec `gatewayctl audit query` uses, over NDJSON records.
    billed = AuditRecord.from_exchange(possibly_billed_exchange(), "response")
    clean = AuditRecord.from_exchange(served_exchange(), "response")
    request = AuditRecord.from_exchange(served_exchange(), "request")
    clean = AuditRecord.from_dict(clean.to_dict() | {"request_id": "req-2"})
    folder = tmp_path / "tenant=acme" / "dt=2026-11-23"
    folder.mkdir(parents=True)
    (folder / "part.json").write_text("".join(r.to_json() + "\n" for r in (billed, clean, request)))
    spec = "{" + ", ".join(f"'{n}': '{t}'" for n, t in audit.duckdb_columns()) + "}"
    con = duckdb.connect()
    con.execute(
        f"CREATE TABLE {AUDIT_TABLE} AS SELECT * FROM read_json(?, columns = {spec}, "
        "format = 'newline_delimited', hive_partitioning = true)",
        [str(folder / "part.json")],
    )
    assert con.execute(DUCKDB_POSSIBLY_BILLED, ["acme"]).fetchall() == [("req-1", 1)]
    total = f"SELECT count(*) FROM {AUDIT_TABLE} e CROSS JOIN UNNEST(e.attempts) AS t(a) WHERE a.possibly_billed"
    assert con.execute(total).fetchone() == (1,)


def test_athena_resolves_the_possibly_billed_struct_field():
    import sqlglot
    from sqlglot.errors import OptimizeError
    from sqlglot.optimizer.qualify import qualify

    schema = {AUDIT_TABLE: dict(audit.glue_columns()) | dict(audit.PARTITION_KEYS)}

    def check(sql: str) -> None:
        expression = sqlglot.parse_one(sql, read="athena")
        qualify(expression, schema=schema, dialect="athena", validate_qualify_columns=True)

    check(ATHENA_POSSIBLY_BILLED)
    with pytest.raises(OptimizeError):
        check(ATHENA_POSSIBLY_BILLED.replace("AND t.possibly_billed", "AND t.billed"))
    # qualify resolves the UNNEST alias's own column list, not the struct behind it, and Trino binds
    # those names to the struct's fields by position: so the alias list must be the Glue struct's
    # members, in order, with possibly_billed a boolean among them.
    glue_type = sqlglot.exp.DataType.build(dict(audit.glue_columns())["attempts"], dialect="athena")
    members = [(m.name, m.args["kind"].sql("athena")) for m in glue_type.expressions[0].expressions]
    assert ("possibly_billed", "BOOLEAN") in members
    alias = sqlglot.parse_one(ATHENA_POSSIBLY_BILLED, read="athena").find(sqlglot.exp.Unnest).args["alias"]
    assert [c.name for c in alias.columns] == [name for name, _ in members]
