"""The predict benchmark's table and verdict (the rig run itself is a functional smoke test)."""

from __future__ import annotations

from benchmarks import predict as bench

MiB = 1024**2
CAL = {"start_s": 0.3, "finish_s": 0.2, "line_bps": 1000 * MiB, "qemu_own_bytes": 38 * MiB}


def record(workload, policy, status, total, pred_completes, pred_total, ram_total=None):
    return {"workload": workload, "policy": policy, "status": status, "total_s": total,
            "passes": 5, "measured_bps": 16 * MiB, "measured_ws": None, "at_least": False,
            "send_bytes": 33 * MiB, "pred_completes": pred_completes, "pred_total_s": pred_total,
            "pred_passes": 4, "ram_total_s": ram_total, "own_bps": 16 * MiB,
            "own_completes": pred_completes, "own_total_s": pred_total, "own_passes": 4}


def test_table_and_verdict() -> None:
    records = [record("Q1", "steps", "completed", 1.0, True, 1.1, 2.0),
               record("S1", "adaptive", "completed", 4.0, True, 6.0, 6.0),
               record("N1", "steps", "timed_out", 64.0, False, None),
               record("N2", "adaptive", "stalled", 50.0, True, 9.0)]
    t = bench.table(records)
    assert t.rows[0][:8] == ["Q1", "steps", "16", "-", "33", "completes", "completed", "yes"]
    assert t.rows[0][8:11] == ["1.1", "1.0", "1.10"]
    assert t.rows[2][7] == "yes" and t.rows[2][10] == "-"  # no ratio for a run that failed
    assert t.rows[3][7] == "NO"
    text = "\n".join(bench.verdict(records, CAL))
    assert "predicted right: 3/4 (wrong: N2/adaptive)" in text
    assert "within 25 % on the converging ones: 1/2 (median ratio predicted/real 1.30)" in text
    assert "from the guest's whole RAM instead: 0/2 within 25 %" in text
    assert "QEMU's own resident memory 38 MiB" in text
    assert "from the guest's own rate instead of page sampling: converges or not right 3/4, " \
           "total time within 25 % 1/2 (median ratio 1.30)" in text
    assert t.rows[0][-3:] == ["16", "completes", "1.10"]
