"""Wall time of one synthesis: `python -m bench synth [ENV ...]` (default: dev prod).

Each environment is synthesized in a fresh process (like `cdk synth` runs app.py), once cold (the Lambda
bundle's pip cache emptied into a temporary directory) and then warm (cache filled), with the AwsSolutions
pack on as in every real synthesis. Figures go to bench/results/synth.json.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "synth.json"
WARM_RUNS = 3


def _synth_once(env: str, build_dir: Path) -> float:
    with tempfile.TemporaryDirectory(prefix=f"bench-synth-{env}-") as out:
        return _timed(env, build_dir, out)


def _timed(env: str, build_dir: Path, out: str) -> float:
    context = {"env": env, **_flags()}
    example = ROOT / "sites" / f"{env}.example.json"
    if example.exists():  # staging and prod need site settings: the placeholders are enough to synthesize
        context["site_file"] = str(example)
    environ = {
        **os.environ,
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "GATEWAY_BUILD_DIR": str(build_dir),
        "CDK_OUTDIR": out,
        "CDK_CONTEXT_JSON": json.dumps(context),
    }
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=environ, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"synth {env} failed:\n{result.stderr[-2000:]}")
    return elapsed


def _flags() -> dict:
    return json.loads((ROOT / "cdk.json").read_text())["context"]


def main(argv: list[str]) -> int:
    envs = argv or ["dev", "prod"]
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-build-") as build:
        for env in envs:
            cold = _synth_once(env, Path(build) / env)  # empty pip cache: downloads the arm64 wheels
            warm = [_synth_once(env, Path(build) / env) for _ in range(WARM_RUNS)]
            figures[env] = {
                "cold_s": round(cold, 2),
                "warm_median_s": round(statistics.median(warm), 2),
                "warm_min_s": round(min(warm), 2),
            }
            print(
                f"synth {env}: cold {cold:.2f} s (pip download), warm median {statistics.median(warm):.2f} s "
                f"over {WARM_RUNS} runs (cached bundle deps)",
                flush=True,
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"benchmark": "synth", "python": sys.version.split()[0], "results": figures}, indent=2)
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
