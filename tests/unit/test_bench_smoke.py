"""The benchmarks that need no servers run, finish and check themselves, so `python -m bench` cannot rot
unnoticed."""

from __future__ import annotations

from typing import Any


def test_reservation_share_finds_no_overspend_and_a_sequential_tenant_uses_nearly_all_its_budget(
    monkeypatch,
) -> None:
    from bench import _common, reservation_share

    written: dict[str, Any] = {}
    monkeypatch.setattr(_common, "write_result", lambda name, data: written.update({name: data}))

    assert reservation_share.main(["--budget", "20000"]) == 0

    results = written["reservation_share"]
    assert set(results) == {"ascii", "bmp-cjk", "extension-b"}
    for script, r in results.items():
        assert r["zero_overspend"], script
        assert r["sequential_share"] > 0.9, script
        assert r["reserved_per_real"] >= 1.0, script  # a reservation is an upper bound
        assert 0 < r["admitted_of_50"] <= 50, script


def test_the_litellm_bench_refuses_the_compromised_releases(monkeypatch) -> None:
    from bench import litellm

    monkeypatch.setattr(litellm, "install", lambda version: (_ for _ in ()).throw(AssertionError("installed")))
    assert litellm.main(["--version", "1.82.7"]) == 2
    assert litellm.main(["--version", "1.82.8"]) == 2


def test_the_cost_table_adds_up_and_compares_with_the_model(monkeypatch) -> None:
    from bench import _common, cost

    written: dict[str, Any] = {}
    monkeypatch.setattr(_common, "write_result", lambda name, data: written.update({name: data}))
    monkeypatch.setattr(cost, "measured", lambda: {"latency_ms": 4.0})

    assert cost.main(["--design", "holds"]) == 0

    table = written["cost"]
    total = sum(line["usd_per_million"] for line in table["lines"])
    assert round(total, 1) == round(table["gateway_usd_per_million"], 1)
    # 1,000 input and 300 output tokens of Sonnet at $3 and $15 a million, 10% geographic uplift.
    assert table["model_usd_per_million"] == 8250.0
    assert all(line["source"].startswith("https://") for line in table["lines"])
    assert table["share_percent"] == round(table["gateway_usd_per_million"] / 8250.0 * 100, 3)
    # The audit writer's own lines, not Firehose's; a hot tenant's leases priced beside the holds.
    items = [line["item"] for line in table["lines"]]
    assert "Audit writer: Lambda arm64 time" in items and "Firehose (API Gateway access logs)" in items
    assert not any("Firehose" in item and "audit" in item.lower() for item in items)
    assert table["other_design"]["design"] == "leases"
    assert table["other_design"]["gateway_usd_per_million"] < table["gateway_usd_per_million"]
    records = table["audit_records"]
    assert records["request_record_bytes"] <= 1024 and records["response_record_bytes"] <= 1024  # 1 KB each billed
    assert 0 < records["stored_bytes_per_record"] < records["request_record_bytes"]
