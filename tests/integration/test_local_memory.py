"""The local stack stays under 1 GB after 10,000 requests: 2,000 here (bench local_memory runs 10,000),
through the whole path, on a stack started as `gatewayctl local up` starts it; the growth per request
must not rise during the run, and what it predicts for 10,000 must fit. Before moto's memory was bounded
this stack grew by about 2.8 MB a request (27.8 GB predicted)."""

from __future__ import annotations

from bench import local_memory

REQUESTS = 2_000


def test_the_local_stack_stays_under_a_gigabyte_for_ten_thousand_requests() -> None:
    run = local_memory.measure(REQUESTS, clients=8)
    report = run.report()
    print({k: v for k, v in report.items() if k != "samples"})

    assert run.statuses == {"200": REQUESTS}
    assert run.steady(), report  # linear growth: the prediction below is honest
    assert run.predicted_bytes(local_memory.TARGET_REQUESTS) < local_memory.LIMIT_BYTES, report
