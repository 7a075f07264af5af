"""Cold start: a fresh process until the gateway is ready to serve, as a ratio to a fresh process that
imports boto3 and makes a bedrock-runtime client (the usual baseline for a Python Lambda calling Bedrock).

Measured side by side, interleaved, median of --runs fresh processes each:
- baseline: python -c "import boto3; boto3.client('bedrock-runtime', region_name='us-east-1')"
- ready: python -c "import uvicorn; from gateway.main import app" (what the Lambda Web Adapter starts:
  uvicorn and the app from Settings.from_env, with the real adapters for tenancy, quota and audit)
- ready + Bedrock client: the same, plus the first region's botocore client built (the app warms it in
  the background at startup; the first request would otherwise pay for it). This is the figure the
  target applies to. Target: ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import _common as c

TARGET_RATIO = 1.5
ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "baseline": "import boto3; boto3.client('bedrock-runtime', region_name='us-east-1')",
    "ready": "import uvicorn; from gateway.main import app",
    "ready_with_bedrock_client": (
        "import uvicorn; from gateway.main import app; app.state.chain.upstreams['us'][0].client"
    ),
}
ENV = {
    "PYTHONPATH": str(ROOT / "lambda_src"),
    "GATEWAY_ENV": "bench",
    "AWS_REGION": "us-east-1",
    "TENANTS_TABLE": "tenants",
    "USAGE_TABLE": "usage",
    "AUDIT_STREAM": "audit",
    "AUDIT_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/dlq",
    "BEDROCK_REGIONS": json.dumps({"us": ["us-east-1", "us-west-2"], "eu": ["eu-west-1"]}),
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench cold_start")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    env = {"PATH": os.environ.get("PATH", ""), **ENV}
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for code in COMMANDS.values():  # one unmeasured run each: the OS file cache, .pyc files
        _run(code, env)
    for _ in range(args.runs):
        for name, code in COMMANDS.items():
            times[name].append(_run(code, env))
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio_ready = medians["ready"] / medians["baseline"]
    ratio_client = medians["ready_with_bedrock_client"] / medians["baseline"]
    ok = ratio_client <= TARGET_RATIO
    for name, median in medians.items():
        print(f"{name}: median {median * 1000:.0f} ms over {args.runs} fresh processes")
    print(
        f"ratio ready / baseline {ratio_ready:.2f}; ready with Bedrock client / baseline {ratio_client:.2f} "
        f"(target <= {TARGET_RATIO}: {'met' if ok else 'NOT met'})"
    )
    c.write_result(
        "cold_start",
        {
            "target_ratio": TARGET_RATIO,
            "target_met": ok,
            "runs": args.runs,
            "median_ms": {k: round(v * 1000, 1) for k, v in medians.items()},
            "all_ms": {k: [round(v * 1000, 1) for v in vs] for k, vs in times.items()},
            "ratio_ready": round(ratio_ready, 3),
            "ratio_ready_with_bedrock_client": round(ratio_client, 3),
            "python": sys.version.split()[0],
        },
    )
    return 0


def _run(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True)
    return time.perf_counter() - started
