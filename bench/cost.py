"""The gateway's own AWS cost per million requests, itemized, next to the model cost of a typical request.

Prices are us-east-1 list prices, each with its source; the per-request quantities come from the
measured figures (bench/results/overhead.json when present: the request's duration with its real adapters)
and from what this benchmark measures itself: the size of the two audit records a request writes, how well
1,000 of them compress, and the audit writer's own CPU to group and compress a batch of them. Re-run after a
benchmark or a price change:

    .venv/bin/python -m bench cost [--memory-mb 1024] [--model-seconds 5.6] [--design holds|leases]

Lambda bills the whole time a request holds its execution environment, including the wait for the
model (the response streams through the function): that wait, not the gateway's own CPU, is what
dominates the Lambda line. The typical request: claude-sonnet-4-6 (lambda_src/gateway/catalog.json),
1,000 input and 300 output tokens, served through a US geographic profile (regional uplift applied).

The audit path is the project's own: the function puts two records a request on the Kinesis stream
(on-demand), the audit writer Lambda (arm64, 512 MB; stacks/constructs/audit_trail.py) reads them in
batches of up to 1,000 (a 30 s batching window) and writes one gzip NDJSON object per tenant and day in
the batch to the Object Lock bucket, which Athena queries. API Gateway's access log goes through a Firehose
stream to a staging bucket, from which the access-log writer Lambda moves it into the same bucket.
Fixed monthly costs (the on-demand stream's hour charge, KMS keys, WAF, alarms) are not per request.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from bench import _common as c

MILLION = 1_000_000
GIB = 1024**3


@dataclass(frozen=True)
class Price:
    usd: float
    per: str
    source: str


PRICES = {
    "apigw_rest": Price(
        3.50, "million REST API requests (first 333 M a month)", "https://aws.amazon.com/api-gateway/pricing/"
    ),
    "data_out": Price(
        0.09, "GB out to the internet (after the first 100 GB a month)", "https://aws.amazon.com/ec2/pricing/on-demand/"
    ),
    "lambda_requests": Price(0.20, "million Lambda requests", "https://aws.amazon.com/lambda/pricing/"),
    "lambda_arm_gbs": Price(
        0.0000133334, "GB-second, arm64 (first 7.5 B GB-s a month)", "https://aws.amazon.com/lambda/pricing/"
    ),
    "ddb_wru": Price(
        0.625, "million on-demand write request units", "https://aws.amazon.com/dynamodb/pricing/on-demand/"
    ),
    "ddb_rru": Price(
        0.125, "million on-demand read request units", "https://aws.amazon.com/dynamodb/pricing/on-demand/"
    ),
    "kinesis_in": Price(
        0.08,
        "GB written, on-demand (each record rounded up to 1 KB)",
        "https://aws.amazon.com/kinesis/data-streams/pricing/",
    ),
    "kinesis_out": Price(0.04, "GB read, on-demand", "https://aws.amazon.com/kinesis/data-streams/pricing/"),
    "firehose": Price(
        0.029, "GB ingested, Direct PUT (each record rounded up to 5 KB)", "https://aws.amazon.com/firehose/pricing/"
    ),
    "logs": Price(
        0.50, "GB of CloudWatch Logs ingested (standard class)", "https://aws.amazon.com/cloudwatch/pricing/"
    ),
    "s3_put": Price(0.005, "1,000 PUT requests, S3 Standard", "https://aws.amazon.com/s3/pricing/"),
    "s3_get": Price(0.0004, "1,000 GET requests, S3 Standard", "https://aws.amazon.com/s3/pricing/"),
    "s3_storage": Price(0.023, "GB-month, S3 Standard (first 50 TB)", "https://aws.amazon.com/s3/pricing/"),
    "athena": Price(5.00, "TB scanned", "https://aws.amazon.com/athena/pricing/"),
}
MODEL_SOURCE = "https://platform.claude.com/docs/en/about-claude/pricing"

# DynamoDB write request units per request (on-demand: a write of up to 1 KB is 1 WRU, an item in a
# transaction 2; https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-capacity-handling).
DESIGNS = {
    # A tenant that is not hot (docs/tenancy.md, Exactly once): its reservation is one TransactWriteItems of
    # its three window items (minute, day, month) and the hold's own state item; settlement one more of the
    # same four (none when the request was charged exactly what it reserved, which the table does not count).
    "holds": {"wru": 4 * 2 + 4 * 2, "calls": 2, "note": "2 transactions of 3 windows + the hold's item"},
    # A hot tenant (docs/tenancy.md, Hot tenants): one UpdateItem per request (its lease's commit); taking,
    # renewing and giving back leases and refilling pools amortized, as `bench quota_scale` measured them
    # at 5,000 requests a second (docs/benchmarks.md).
    "leases": {"wru": 1.93, "calls": 1, "note": "1 UpdateItem (the lease's commit), lease and pool writes amortized"},
}
RESPONSE_BYTES = 1500  # a 300-token reply with its headers, out through API Gateway
WRITER_BATCH = 1000  # the audit writer's event source batch size (stacks/constructs/audit_trail.py)
WRITER_MEMORY_MB = 512
# Objects per batch: one per tenant and day in it. The table takes one tenant a batch (a busy tenant's
# batches); a batch that spans N tenants writes N objects (each PUT is $0.005 per 1,000).
OBJECTS_PER_BATCH = 1
# The writer's wait for its PutObject, per object: not measured here (no S3); S3 documents first-byte
# latencies of about 100-200 ms for small objects
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance-design-patterns.html).
S3_PUT_SECONDS = 0.2
# API Gateway's access log: one line a request (stacks/audit_queries.py ACCESS_LOG_FORMAT, about 220 B) to a
# Firehose Direct PUT stream, which bills each record as 5 KB, buffers 60 s or 5 MB and writes a staged object;
# the access-log writer Lambda reads it and writes it into the audit bucket. At 100 requests a second (the
# rate assumed here) that is an object a minute: a Firehose PUT, the writer's GET and PUT, and about 0.3 s
# of the writer's time at 512 MB for 6,000 requests.
ACCESS_LOG_RATE = 100
ACCESS_LOG_WRITER_SECONDS = 0.3
# CloudWatch Logs a request: the function's "request finished" JSON line (about 370 B as the gateway
# writes it) and Lambda's START, END and REPORT lines (about 330 B).
LOG_BYTES = 370 + 330


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench cost")
    parser.add_argument("--memory-mb", type=int, default=1024, help="the function's memory (stacks/config.py default)")
    parser.add_argument(
        "--model-seconds",
        type=float,
        default=5.6,
        help="how long the model takes (first token about 0.6 s, then 300 tokens at about 60 a second)",
    )
    parser.add_argument("--design", choices=sorted(DESIGNS), default="holds", help="the quota design the table uses")
    parser.add_argument("--input-tokens", type=int, default=1000)
    parser.add_argument("--output-tokens", type=int, default=300)
    args = parser.parse_args(argv)
    table = compute(args.memory_mb, args.model_seconds, args.design, args.input_tokens, args.output_tokens)
    for line in table["lines"]:
        usd = line["usd_per_million"]
        print(
            f"| {line['item']} | ${usd:.2f} | {line['basis']} | {line['source']} |"
            if usd >= 0.01 or not usd
            else f"| {line['item']} | ${usd:.4f} | {line['basis']} | {line['source']} |"
        )
    other = table["other_design"]
    print(
        f"gateway total ${table['gateway_usd_per_million']:.2f} per million requests ({table['design']}); "
        f"with {other['design']} (${other['line']['usd_per_million']:.2f}: {other['line']['basis']}) "
        f"${other['gateway_usd_per_million']:.2f}; model ${table['model_usd_per_million']:.0f} per million; "
        f"share {table['share_percent']:.2f}% / {other['share_percent']:.2f}% "
        f"(target < 2%: {'met' if table['target_met'] else 'NOT met'})"
    )
    print(f"audit records: {table['audit_records']}")
    c.write_result("cost", table)
    return 0


def measured() -> dict:
    path = c.RESULTS / "overhead.json"
    if not path.exists():
        return {}
    try:
        whole = json.loads(path.read_text())["real_adapters"]["gateways"]["current"]["whole"]
    except (KeyError, ValueError):
        return {}
    return {"cpu_ms": whole["cpu_ms_per_request"], "latency_ms": whole["latency"]["p50_ms"]}


def audit_records() -> dict:
    """A request's two records as the function writes them (sizes), 1,000 of them as the writer stores them
    (gzip NDJSON: bytes a record), and the writer's CPU to group and compress a batch (this machine)."""
    import random
    import time
    import uuid

    from audit_writer.writer import group_audit_records, gzip_ndjson
    from gateway.models.audit import AttemptRecord, AuditRecord, iso_millis

    rng = random.Random(7)
    lines: list[bytes] = []
    sizes: dict[str, int] = {}
    for n in range(WRITER_BATCH // 2):
        started = 1_796_000_000 + n * 0.37
        common = {
            "schema_version": 1,
            "request_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "tenant_id": "acme",
            "principal": f"{rng.getrandbits(128):032x}",
            "model_alias": "claude-sonnet-4-6",
            "request_sha256": f"{rng.getrandbits(256):064x}",
            "quota_decision": "granted",
            "source_ip": f"{rng.getrandbits(128):032x}",
            "user_agent": f"{rng.getrandbits(128):032x}",
        }
        request = AuditRecord(
            event_id=str(uuid.UUID(int=rng.getrandbits(128))),
            event_time=iso_millis(started),
            event_type="request",
            **common,
        )
        response = AuditRecord(
            event_id=str(uuid.UUID(int=rng.getrandbits(128))),
            event_time=iso_millis(started + 5.6),
            event_type="response",
            provider="bedrock",
            region="us-east-1",
            upstream_model_id="us.anthropic.claude-sonnet-4-6",
            response_sha256=f"{rng.getrandbits(256):064x}",
            input_tokens=1000 + rng.randrange(200),
            output_tokens=300 + rng.randrange(100),
            cache_read_tokens=0,
            cache_write_tokens=0,
            cost_usd=round(0.0075 + rng.random() / 1000, 6),
            latency_ms=5600 + rng.randrange(900),
            ttfb_ms=600 + rng.randrange(200),
            status=200,
            attempt_count=1,
            attempts=[AttemptRecord("bedrock", "us-east-1", None, 200, False)],
            **common,
        )
        for record in (request, response):
            line = (record.to_json() + "\n").encode()
            sizes[record.event_type] = max(sizes.get(record.event_type, 0), len(line))
            lines.append(line)
    compressed = sum(len(gzip_ndjson(g.lines)) for g in group_audit_records(lines, day="2026-11-30"))
    runs = []
    for _ in range(5):
        started = time.process_time()
        for group in group_audit_records(lines, day="2026-11-30"):
            gzip_ndjson(group.lines)
        runs.append(time.process_time() - started)
    return {
        "request_record_bytes": sizes["request"],
        "response_record_bytes": sizes["response"],
        "stored_bytes_per_record": round(compressed / len(lines), 1),
        "writer_cpu_ms_per_batch": round(sorted(runs)[len(runs) // 2] * 1000, 2),
    }


def model_cost(input_tokens: int, output_tokens: int) -> float:
    catalog = json.loads((c.ROOT / "lambda_src" / "gateway" / "catalog.json").read_text())
    entries = catalog["models"] if isinstance(catalog, dict) and "models" in catalog else catalog
    entry = next(e for e in entries if e["alias"] == "claude-sonnet-4-6")
    # The catalog gives the uplift as a fraction (0.1: geographic profiles cost 10% more).
    uplift = 1 + float(catalog.get("regional_uplift", 0.0)) if entry.get("regional_uplift") else 1.0
    prices = entry["prices"]
    return (input_tokens * prices["input"] + output_tokens * prices["output"]) / MILLION * uplift


def compute(memory_mb: int, model_seconds: float, design: str, input_tokens: int, output_tokens: int) -> dict:
    p = PRICES
    figures = measured()
    records = audit_records()
    own_ms = figures.get("latency_ms", 5.0)  # the gateway's whole request against a zero-latency upstream
    gb = memory_mb / 1024
    # Kinesis bills each record rounded up to 1 KB (on-demand ingest) and reads what it stored.
    kinesis_kb = sum(-(-records[f"{kind}_record_bytes"] // 1024) for kind in ("request", "response"))
    kinesis_gb = kinesis_kb * 1024 / GIB
    stored_gb = 2 * records["stored_bytes_per_record"] / GIB
    batches = 2 / WRITER_BATCH  # writer invocations per request, batches full
    writer_seconds = records["writer_cpu_ms_per_batch"] / 1000 + OBJECTS_PER_BATCH * S3_PUT_SECONDS
    staged_objects = MILLION / (ACCESS_LOG_RATE * 60)  # per million requests

    def quota_line(name: str) -> tuple:
        writes = DESIGNS[name]
        who = "a tenant that is not hot: holds" if name == "holds" else "a hot tenant: leases"
        return (
            f"DynamoDB writes ({who})",
            writes["wru"] * p["ddb_wru"].usd,
            f"{writes['wru']} WRU: {writes['note']}",
            p["ddb_wru"],
        )

    lines = [
        ("API Gateway REST (streaming)", p["apigw_rest"].usd, "1 request", p["apigw_rest"]),
        (
            "Data out through API Gateway",
            RESPONSE_BYTES / GIB * p["data_out"].usd * MILLION,
            f"{RESPONSE_BYTES} B",
            p["data_out"],
        ),
        ("Lambda requests", p["lambda_requests"].usd, "1 invocation", p["lambda_requests"]),
        (
            "Lambda arm64: the gateway's own time",
            own_ms / 1000 * gb * p["lambda_arm_gbs"].usd * MILLION,
            f"{own_ms:.1f} ms at {memory_mb} MB (measured: the request against a zero-latency model)",
            p["lambda_arm_gbs"],
        ),
        (
            "Lambda arm64: waiting for the model",
            model_seconds * gb * p["lambda_arm_gbs"].usd * MILLION,
            f"{model_seconds:.1f} s at {memory_mb} MB (the response streams through the function)",
            p["lambda_arm_gbs"],
        ),
        quota_line(design),
        ("DynamoDB reads", 0.0, "principal and tenant cached per container", p["ddb_rru"]),
        (
            "Kinesis in",
            kinesis_gb * p["kinesis_in"].usd * MILLION,
            f"2 records ({records['request_record_bytes']} and {records['response_record_bytes']} B), "
            f"{kinesis_kb} KB billed",
            p["kinesis_in"],
        ),
        (
            "Kinesis out (to the audit writer)",
            kinesis_gb * p["kinesis_out"].usd * MILLION,
            f"{kinesis_kb} KB",
            p["kinesis_out"],
        ),
        (
            "Audit writer: Lambda requests",
            batches * p["lambda_requests"].usd,
            f"1 invocation a batch of {WRITER_BATCH} records",
            p["lambda_requests"],
        ),
        (
            "Audit writer: Lambda arm64 time",
            batches * writer_seconds * WRITER_MEMORY_MB / 1024 * p["lambda_arm_gbs"].usd * MILLION,
            f"{writer_seconds * 1000:.0f} ms a batch at {WRITER_MEMORY_MB} MB: "
            f"{records['writer_cpu_ms_per_batch']:.0f} ms grouping and gzip (measured here) + "
            f"{S3_PUT_SECONDS * 1000:.0f} ms a PutObject",
            p["lambda_arm_gbs"],
        ),
        (
            "S3 PUTs",
            batches * OBJECTS_PER_BATCH * MILLION / 1000 * p["s3_put"].usd,
            f"{OBJECTS_PER_BATCH} object a batch of {WRITER_BATCH} records (one per tenant and day in it)",
            p["s3_put"],
        ),
        (
            "S3 storage, first month",
            stored_gb * MILLION * p["s3_storage"].usd,
            f"{2 * records['stored_bytes_per_record']:.0f} B gzip NDJSON (measured)",
            p["s3_storage"],
        ),
        ("Athena", stored_gb * MILLION / 1024 * p["athena"].usd, "every record scanned once (compressed)", p["athena"]),
        (
            "Firehose (API Gateway access logs)",
            5 * 1024 / GIB * p["firehose"].usd * MILLION,
            "1 line a request, billed at 5 KB",
            p["firehose"],
        ),
        (
            "Access-log writer: Lambda time and S3 requests",
            staged_objects
            * (
                (2 * p["s3_put"].usd + p["s3_get"].usd) / 1000
                + ACCESS_LOG_WRITER_SECONDS * WRITER_MEMORY_MB / 1024 * p["lambda_arm_gbs"].usd
                + p["lambda_requests"].usd / MILLION
            ),
            f"an object a minute at {ACCESS_LOG_RATE} requests a second: 2 PUTs, a GET, "
            f"{ACCESS_LOG_WRITER_SECONDS * 1000:.0f} ms at {WRITER_MEMORY_MB} MB",
            p["s3_put"],
        ),
        (
            "CloudWatch Logs",
            LOG_BYTES / GIB * p["logs"].usd * MILLION,
            f"{LOG_BYTES} B a request: the function's line and Lambda's START, END and REPORT",
            p["logs"],
        ),
    ]
    gateway = sum(usd for _, usd, _, _ in lines)
    other = "leases" if design == "holds" else "holds"
    other_line = quota_line(other)
    other_total = gateway - lines[5][1] + other_line[1]
    model = model_cost(input_tokens, output_tokens) * MILLION
    share = gateway / model * 100
    return {
        "design": design,
        "memory_mb": memory_mb,
        "model_seconds": model_seconds,
        "measured": figures,
        "audit_records": records,
        "lines": [
            {
                "item": item,
                "usd_per_million": round(usd, 4),
                "basis": basis,
                "price": f"${price.usd} per {price.per}",
                "source": price.source,
            }
            for item, usd, basis, price in lines
        ],
        "gateway_usd_per_million": round(gateway, 2),
        "other_design": {
            "design": other,
            "line": {"item": other_line[0], "usd_per_million": round(other_line[1], 4), "basis": other_line[2]},
            "gateway_usd_per_million": round(other_total, 2),
            "share_percent": round(other_total / model * 100, 3),
        },
        "model_usd_per_million": round(model, 2),
        "model_source": MODEL_SOURCE,
        "share_percent": round(share, 3),
        "target_met": share < 2.0 and other_total / model * 100 < 2.0,
        "typical_request": {"model": "claude-sonnet-4-6", "input_tokens": input_tokens, "output_tokens": output_tokens},
    }


if __name__ == "__main__":
    raise SystemExit(main([]))
