"""The real-rig benchmarks still run: ``rig`` and ``fidelity`` in their --quick form.

They run on the session's rig (no second pair of daemons).  Only shape and
sanity are checked, never timings.
"""

from __future__ import annotations

import pytest

from benchmarks import fidelity, realrig

pytest.importorskip("libvirt")

STATUSES = {"completed", "timed_out", "stalled", "cancelled", "failed"}


def test_rig_quick(rig) -> None:
    report = realrig.run(quick=True, rig=rig)
    names = [w.name for w in realrig.QUICK_WORKLOADS]
    assert len(report.records) == len(realrig.POLICIES) * len(names)
    for r in report.records:
        assert r["status"] in STATUSES, r
        assert r["total_s"] > 0 and r["passes_seen"] >= 0
        assert r["link_bps"] and r["link_bps"] > 0  # libvirt reported a rate
        assert r["guest_kibps_before"] and r["guest_kibps_before"] > 0  # the guest dirtied
        if r["status"] == "completed":
            assert r["passes"] >= 1 and r["downtime_ms"] is not None
    # the quick workload converges under every policy
    quick = [r for r in report.records if r["workload"] == names[0]]
    assert {r["status"] for r in quick} == {"completed"}, quick
    (table,) = report.tables
    assert table.columns[:4] == ["workload", "guest dirties", "cap (MiB/s)", "policy"]
    assert [row[0] for row in table.rows] == [n for n in names for _ in realrig.POLICIES]
    assert {row[3] for row in table.rows} == set(realrig.POLICIES)
    for other in ("steps", realrig.PEER):
        assert f"completes every workload {other} completes" in report.markdown()
    assert rig.domains("a") == [] and rig.domains("b") == []  # it cleaned up


def test_fidelity_quick(rig) -> None:
    report = fidelity.run(quick=True, rig=rig)
    assert len(report.records) == 2 * len(realrig.QUICK_WORKLOADS)
    for row in report.records:
        assert row["real_status"] in STATUSES
        for prefix in ("default", "calibrated"):
            assert row[f"{prefix}_status"] in STATUSES
            assert row[f"{prefix}_t_ratio"] is not None and row[f"{prefix}_t_ratio"] > 0
    (table,) = report.tables
    assert "cal. within +-25 %" in table.columns
    assert "Fidelity" in report.markdown()
