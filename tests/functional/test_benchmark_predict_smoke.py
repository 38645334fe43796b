"""The predict benchmark still runs on the rig (--quick): shape and sanity, never timings."""

from __future__ import annotations

import pytest

from benchmarks import predict as bench

pytest.importorskip("libvirt")


def test_predict_quick(rig) -> None:
    report = bench.run(quick=True, rig=rig)
    assert [(r["workload"], r["policy"]) for r in report.records] == [
        (bench.QUICK_WORKLOADS[0].name, p) for p in ("steps", "adaptive")]
    for r in report.records:
        assert r["measured_bps"] > 0 and r["send_bytes"] > 0, r  # the guest dirtied memory
        assert r["pred_completes"] and r["status"] == "completed", r  # the quick one converges
        assert r["pred_total_s"] > 0 and r["pred_passes"] >= 2
    assert report.meta["calibration"]["line_bps"] > 0
    assert "converges or not, predicted right: 2/2" in report.markdown()
    assert rig.domains("a") == [] and rig.domains("b") == []  # it cleaned up
