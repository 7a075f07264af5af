"""The fault suite's stack: one per xdist worker, on free ports, with the gateway's DynamoDB and Kinesis behind
the fault proxy (tests/faults/rig.py). `rig` resets every fault, count and breaker before and after each test,
and files the test's figures under its module's FAULT_CLASS; the suite's figures (docs/faults.md) are written to
bench/results/faults-<worker>.json when the worker ends (`python -m tests.faults.figures` adds them up)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from tests.faults.figures import RESULTS
from tests.faults.rig import Rig


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="session")
def fault_rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    rig = Rig().start()
    try:
        yield rig
    finally:
        rig.stop()
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        # Every worker of one run has the same run id; a run without xdist gets its own.
        workerinput = getattr(request.config, "workerinput", {})
        run = workerinput.get("testrunuid") or f"main-{os.getpid()}"
        RESULTS.mkdir(parents=True, exist_ok=True)
        figures = {"run": run, "worker": worker, "classes": rig.figures.as_dict()}
        (RESULTS / f"faults-{worker}.json").write_text(json.dumps(figures, indent=2) + "\n")


@pytest.fixture
def rig(fault_rig: Rig, request: pytest.FixtureRequest) -> Iterator[Rig]:
    fault_rig.reset()
    fault_rig.figures.fault_class = getattr(request.module, "FAULT_CLASS", "unclassified")
    fault_rig.figures.add(tests=1)
    yield fault_rig
    fault_rig.reset()
