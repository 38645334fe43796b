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

from benchmarks import bound, hold, margin, overhead, sim, simreport
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
    policies = sim.POLICY_NAMES + bound.BOUND_NAMES
    expected = sum(sim.applies(w, p) for w in workloads for p in policies)
    assert len(report.records) == expected
    for r in report.records:
        assert r["status"] in ("completed", "timed_out", "stalled"), r
        if r["status"] != "completed":
            assert r["mode"] is None
            continue
        assert r["t_over_bound"] > 1.0  # nothing beats memory / bandwidth
        if r["policy"] in (*sim.MIGRATOR, sim.MEASURED, *bound.BOUND_NAMES):
            assert r["downtime_ms"] is None or 0 <= r["downtime_ms"] <= sim.CEILING_MS, r
        assert (r["post_copy_s"] is not None) == (r["mode"] == "post-copy")
    # every policy saw the same workloads (the post-copy candidate only where permitted)
    keys = {p: sorted(simreport.key(r) for r in report.records if r["policy"] == p)
            for p in sim.POLICY_NAMES}
    assert len({tuple(k) for k in keys.values()}) == 1
    best, paired = report.tables
    rows = _rows(best)
    assert {r["band (dirty/bw)"] for r in rows} == {"< 0.5", "0.5-0.95", ">= 1.2"}
    assert {r["policy"] for r in rows} == {"adaptive", sim.MEASURED, "steps", "(bound)"}
    for r in rows:  # no policy beats the bound by more than the poll it may save
        if r["T/T_best p50"] != "-":
            assert float(r["T/T_best p50"]) > 0.8, r
    assert {r["peer"] for r in _rows(paired)} == {"steps", *sim.PEER_NAMES}
    text = report.markdown()
    for check in ("T/T_best p50 <= 1.05 and p90 <= 1.5 in every band and option set",
                  "completes every workload any peer completes",
                  "downtime never above the ceiling", "paired median time"):
        assert check in text
    assert f"- {sim.MEASURED} T/T_best p50" in text  # its own verdict lines


def test_sim_command_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "sim", "--quick", "--jobs", "1",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "### T / T_best per band and option set" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["name"] == "sim" and doc["records"] and doc["tables"]


def test_margin_quick() -> None:
    report = margin.run(quick=True, jobs=1)
    workloads = [w for w in sim.workloads(quick=True) if w.options == margin.OPTION]
    rules = {margin._name(m) for m in margin.MARGINS}
    adaptive = [r for r in report.records if r["policy"] in rules]
    assert len(adaptive) == len(workloads) * len(margin.MARGINS)
    for r in adaptive:
        if r["status"] == "completed":
            assert r["t_over_bound"] > 1.0  # nothing beats memory / bandwidth
            assert r["downtime_ms"] is None or r["downtime_ms"] <= sim.CEILING_MS, r
            assert (r["post_copy_s"] is not None) == (r["mode"] == "post-copy")
            assert r["post_copy_s"] is None or 0 <= r["post_copy_s"] <= r["total_s"]
    (table,) = report.tables
    rows = _rows(table)
    assert {r["rule"] for r in rows} == rules
    assert {r["band (dirty/bw)"] for r in rows} == {b for b, _ in sim.BANDS}
    for r in rows:  # each rule ran every workload of its band
        done, total = r["completed"].split("/")
        assert int(total) == len([w for w in workloads if w.band == r["band (dirty/bw)"]])


def test_hold_quick() -> None:
    report = hold.run(quick=True, jobs=1)
    workloads = [w for w in sim.workloads(quick=True) if w.options == hold.OPTION]
    adaptive = [r for r in report.records if r["policy"] in hold.RULES]
    assert len(adaptive) == len(workloads) * len(hold.RULES)
    for r in adaptive:
        if r["status"] == "completed":
            assert r["t_over_bound"] > 1.0  # nothing beats memory / bandwidth
            assert r["downtime_ms"] is None or r["downtime_ms"] <= sim.CEILING_MS, r
    (table,) = report.tables
    rows = _rows(table)
    assert {r["rule"] for r in rows} == set(hold.RULES)
    assert {r["band (dirty/bw)"] for r in rows} == {b for b, _ in sim.BANDS}
    for r in rows:
        done, total = r["completed"].split("/")
        assert int(total) == len([w for w in workloads if w.band == r["band (dirty/bw)"]])
        higher, lower = (int(x) for x in r["downtime higher / lower than with the hold"]
                         .split(" / "))
        assert r["rule"] != "hold" or higher == lower == 0


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
