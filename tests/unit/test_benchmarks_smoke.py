"""The benchmarks still run: the small (--quick) simulator and overhead benchmarks.

Only shape and sanity are checked (columns, counts, physical bounds), never
timings: machines are noisy and the numbers belong in benchmarks/README.md.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import overhead, sim
from benchmarks.common import Table, percentile

ROOT = Path(__file__).resolve().parents[2]


def _rows(table: Table) -> list[dict[str, str]]:
    return [dict(zip(table.columns, row, strict=True)) for row in table.rows]


def test_percentile_and_table() -> None:
    assert percentile([], 99) is None
    assert percentile([3, 1, 2], 50) == 2
    assert percentile(range(1, 201), 99) == 198
    t = Table("t", ["a", "b"])
    t.add(1, "x")
    with pytest.raises(ValueError):
        t.add(1)
    assert t.markdown().splitlines()[2:5] == ["| a | b |", "|---|---|", "| 1 | x |"]


def test_sim_quick() -> None:
    level = logging.getLogger("migrator").level
    report = sim.run(quick=True, jobs=1)
    assert logging.getLogger("migrator").level == level  # later tests read migrator's logs
    workloads = sim.workloads(quick=True)
    assert len(report.records) == 2 * len(workloads)
    for r in report.records:
        assert r["status"] in ("completed", "timed_out", "stalled"), r
        if r["status"] == "completed":
            assert r["t_over_bound"] > 1.0  # nothing beats memory / bandwidth
            if r["downtime_ms"] is not None:
                assert 0 <= r["downtime_ms"] <= sim.CEILING_MS
        else:
            assert r["mode"] is None
    # the same workloads under both policies
    keys = {p: sorted((r["memory_gib"], r["ratio"], r["link_gbps"], r["options"])
                      for r in report.records if r["policy"] == p) for p in ("steps", "adaptive")}
    assert keys["steps"] == keys["adaptive"]
    bands, ratios = report.tables
    assert bands.columns[:5] == ["band (dirty/bw)", "options", "policy", "completed",
                                 "pre/post/paused"]
    assert {r["band (dirty/bw)"] for r in _rows(bands)} == {"< 0.5", "0.5-0.95", ">= 1.2"}
    assert {r["dirty/bw"] for r in _rows(ratios)} == {f"{x:g}" for x in sim.QUICK_RATIOS}
    text = report.markdown()
    for check in ("completes every workload steps completes", "hopeless workloads sooner",
                  "lower median total time on the 0.5-0.95 band",
                  "- downtime (both completed in pre-copy"):
        assert check in text


def test_sim_command_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "sim", "--quick", "--jobs", "1",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "### Simulator suite, working set = memory: per band" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["name"] == "sim" and doc["records"] and doc["tables"]


def test_overhead_quick() -> None:
    report = overhead.run(quick=True)
    cpu, many, latency = report.tables
    rows = _rows(cpu)
    assert [r["policy"] for r in rows] == ["steps", "adaptive"]
    assert all(float(r["total per poll (µs)"]) > 0 for r in rows)
    for r in _rows(many):
        n = int(r["N"])
        assert r["completed"] == f"{n}/{n}" and n > 1
        assert int(r["threads in flight"]) >= n  # all of them were in flight together
        # Concurrency changes neither what a monitor sees nor when the job ends in virtual
        # time: a 0.5 s poll over a ~3 s migration, alone or with N others.
        assert float(r["samples per migration p50 (min)"].split()[0]) >= 4
        assert float(r["virtual T p50 (s)"]) <= float(r["alone (s)"]) + 1.0
    rows = _rows(latency)
    assert {r["threads"] for r in rows} == {"native", "eventlet"}
    assert len(rows) == 2 * len(overhead.CALLS)
    for r in rows:
        done, trials = r["measured"].split("/")
        assert done == trials, r  # every request reached libvirt
    assert not [e for rec in report.records if rec["part"] == "latency" for e in rec["errors"]]
