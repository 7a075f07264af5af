"""The gateway's own AWS cost per million requests, itemized, next to the model cost of a typical request.

Prices are us-east-1 list prices, each with its source; the per-request quantities come from the
measured figures (bench/results/overhead.json when present: AWS calls and CPU per request) or the
defaults below. Re-run after a benchmark or a price change:

    .venv/bin/python -m bench cost [--memory-mb 1024] [--model-seconds 5.6] [--design today|holds]

Lambda bills the whole time a request holds its execution environment, including the wait for the
model (the response streams through the function): that wait, not the gateway's own CPU, is what
dominates the Lambda line. The typical request: claude-sonnet-4-6 (lambda_src/gateway/catalog.json),
1,000 input and 300 output tokens, served through a US geographic profile (regional uplift applied).
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
        0.029, "GB ingested (each record rounded up to 5 KB)", "https://aws.amazon.com/firehose/pricing/"
    ),
    "s3_put": Price(0.005, "1,000 PUT requests, S3 Standard", "https://aws.amazon.com/s3/pricing/"),
    "s3_storage": Price(0.023, "GB-month, S3 Standard (first 50 TB)", "https://aws.amazon.com/s3/pricing/"),
    "athena": Price(5.00, "TB scanned", "https://aws.amazon.com/athena/pricing/"),
}
MODEL_SOURCE = "https://platform.claude.com/docs/en/about-claude/pricing"

# Per request, as the gateway makes them today: the reservation is one TransactWriteItems over the
# tenant's three windows (a transactional write costs 2 WRU per item up to 1 KB), settlement three
# UpdateItems; principal and tenant are cached (a read per container per 30 s: nothing per request).
DESIGNS = {
    "today": {"wru": 3 * 2 + 3, "rru": 0.0, "note": "1 transaction of 3 window items + 3 UpdateItems"},
    # The exactly-once holds landing now: a hold state item joins the three windows in the reservation's
    # transaction, and settlement is one transaction of the same four items.
    "holds": {"wru": 4 * 2 + 4 * 2, "rru": 0.0, "note": "2 transactions of 3 windows + the hold's item"},
    # A hot tenant (docs/tenancy.md, Hot tenants): one UpdateItem per request (its lease's commit); leases,
    # refills and give-backs amortized, as `bench quota_scale` measured them at 5,000 requests a second.
    "leases": {"wru": 1.93, "rru": 0.0, "note": "1 UpdateItem (the lease's commit), lease and pool writes amortized"},
}
AUDIT_RECORD_BYTES = 1024  # two records a request, each under 1 KB (Kinesis bills 1 KB per record)
RESPONSE_BYTES = 1500  # a 300-token reply with its headers, out through API Gateway
RECORDS_PER_OBJECT = 1000  # the audit writer's batch per S3 object


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench cost")
    parser.add_argument("--memory-mb", type=int, default=1024, help="the function's memory (stacks/config.py default)")
    parser.add_argument(
        "--model-seconds",
        type=float,
        default=5.6,
        help="how long the model takes (first token about 0.6 s, then 300 tokens at about 60 a second)",
    )
    parser.add_argument("--design", choices=sorted(DESIGNS), default="today")
    parser.add_argument("--input-tokens", type=int, default=1000)
    parser.add_argument("--output-tokens", type=int, default=300)
    args = parser.parse_args(argv)
    table = compute(args.memory_mb, args.model_seconds, args.design, args.input_tokens, args.output_tokens)
    for line in table["lines"]:
        print(f"| {line['item']} | ${line['usd_per_million']:.2f} | {line['basis']} | {line['source']} |")
    print(
        f"gateway total ${table['gateway_usd_per_million']:.2f} per million requests; model "
        f"${table['model_usd_per_million']:.0f} per million; share {table['share_percent']:.2f}% "
        f"(target < 2%: {'met' if table['target_met'] else 'NOT met'})"
    )
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
    own_ms = figures.get("latency_ms", 5.0)  # the gateway's whole request against a zero-latency upstream
    gb = memory_mb / 1024
    writes = DESIGNS[design]
    kinesis_gb = 2 * max(AUDIT_RECORD_BYTES, 1024) / GIB
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
        ("DynamoDB writes", writes["wru"] * p["ddb_wru"].usd, f"{writes['wru']} WRU: {writes['note']}", p["ddb_wru"]),
        ("DynamoDB reads", writes["rru"] * p["ddb_rru"].usd, "principal and tenant cached per container", p["ddb_rru"]),
        ("Kinesis in", kinesis_gb * p["kinesis_in"].usd * MILLION, "2 records of 1 KB", p["kinesis_in"]),
        ("Kinesis out (to the audit writer)", kinesis_gb * p["kinesis_out"].usd * MILLION, "2 KB", p["kinesis_out"]),
        (
            "Firehose (audit writer)",
            2 * 5 * 1024 / GIB * p["firehose"].usd * MILLION,
            "2 records at 5 KB each",
            p["firehose"],
        ),
        (
            "S3 PUTs",
            2 / RECORDS_PER_OBJECT * 1000 * p["s3_put"].usd,
            f"{RECORDS_PER_OBJECT} records an object",
            p["s3_put"],
        ),
        ("S3 storage, first month", kinesis_gb * MILLION * p["s3_storage"].usd, "2 KB, uncompressed", p["s3_storage"]),
        ("Athena", kinesis_gb * MILLION / 1024 * p["athena"].usd, "every record scanned once", p["athena"]),
    ]
    gateway = sum(usd for _, usd, _, _ in lines)
    model = model_cost(input_tokens, output_tokens) * MILLION
    share = gateway / model * 100
    return {
        "design": design,
        "memory_mb": memory_mb,
        "model_seconds": model_seconds,
        "measured": figures,
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
        "model_usd_per_million": round(model, 2),
        "model_source": MODEL_SOURCE,
        "share_percent": round(share, 3),
        "target_met": share < 2.0,
        "typical_request": {"model": "claude-sonnet-4-6", "input_tokens": input_tokens, "output_tokens": output_tokens},
    }


if __name__ == "__main__":
    raise SystemExit(main([]))
