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
