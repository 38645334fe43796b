"""Simulator suite: both policies on the same grid of workloads, through the real driver.

Every migration runs :func:`migrator.simulate.run`: the shipped
``LiveMigrationDriver``, monitor loop and policy against the simulated
hypervisor on a virtual clock.  The policy is chosen the way an operator
chooses it (``live_migration_convergence``), and so are the option sets
(``live_migration_permit_post_copy`` / ``_auto_converge``); everything else is
Nova's defaults (500 ms downtime ceiling in 10 steps of 75 s/GiB, completion
timeout 800 s/GiB with action abort).

Workloads: memory x dirty-rate/bandwidth ratio x link x options, each run in
two working-set models: the whole memory is writable (the classic geometric
pre-copy model: pass *i* sends ``V * lambda**i``), and a hot working set of
1/8 of memory (writes land there only, so the dirty set saturates at it and a
guest dirtying faster than the link can still converge once the working set
fits in ``bandwidth x downtime``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.common import (
    POLICIES,
    GiB,
    Report,
    Table,
    fmt,
    make_conf,
    median,
    migrator_logs_at,
    percentile,
)

MEMORY_GIB = (1, 4, 16, 64)
RATIOS = (0.05, 0.2, 0.5, 0.8, 0.95, 1.2, 2.0)
LINKS_GBPS = (1, 10, 25)
OPTIONS: dict[str, dict[str, bool]] = {
    "defaults": {},
    "post-copy": {"live_migration_permit_post_copy": True},
    "auto-converge": {"live_migration_permit_auto_converge": True},
}
# Working-set models: fraction of memory the guest writes to.
WORKING_SETS = (1.0, 0.125)

QUICK_MEMORY_GIB = (1,)
QUICK_RATIOS = (0.2, 0.8, 2.0)
QUICK_LINKS_GBPS = (10,)
QUICK_WORKING_SETS = (1.0,)

CEILING_MS = 500  # live_migration_downtime default: both policies' ceiling
BANDS: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("< 0.5", (0.05, 0.2)),
    ("0.5-0.95", (0.5, 0.8, 0.95)),
    (">= 1.2", (1.2, 2.0)),
)


@dataclass(frozen=True)
class Workload:
    memory_gib: int
    ratio: float  # guest dirty rate / link bandwidth
    link_gbps: float
    options: str  # a key of OPTIONS
    working_set: float  # fraction of memory

    @property
    def bandwidth(self) -> float:
        """Link bytes/s (pre-copy runs at the link: live_migration_bandwidth is 0)."""
        return self.link_gbps * 1e9 / 8

    @property
    def bound(self) -> float:
        """memory / bandwidth: the physical lower bound of the total time (s)."""
        return self.memory_gib * GiB / self.bandwidth

    @property
    def band(self) -> str:
        for name, ratios in BANDS:
            if self.ratio in ratios:
                return name
        return "other"

    def key(self) -> tuple[Any, ...]:
        return (self.memory_gib, self.ratio, self.link_gbps, self.options, self.working_set)

    def label(self) -> str:
        ws = "" if self.working_set == 1.0 else f" ws={self.working_set:g}"
        return (f"{self.memory_gib} GiB, ratio {self.ratio:g}, {self.link_gbps:g} Gbit/s, "
                f"{self.options}{ws}")


def workloads(quick: bool = False) -> list[Workload]:
    mems = QUICK_MEMORY_GIB if quick else MEMORY_GIB
    ratios = QUICK_RATIOS if quick else RATIOS
    links = QUICK_LINKS_GBPS if quick else LINKS_GBPS
    sets = QUICK_WORKING_SETS if quick else WORKING_SETS
    return [Workload(m, r, g, o, w) for w in sets for m in mems for r in ratios for g in links
            for o in OPTIONS]


def run_one(w: Workload, policy: str) -> dict[str, Any]:
    """One migration of ``w`` under ``policy`` through migrator.simulate; a flat record."""
    from migrator import simulate

    conf = make_conf(live_migration_convergence=policy, **OPTIONS[w.options])
    memory = w.memory_gib * GiB
    t0 = time.perf_counter()
    with migrator_logs_at(logging.CRITICAL):
        res = simulate.run(conf, memory=memory, dirty_rate=w.ratio * w.bandwidth,
                           bandwidth=w.bandwidth, working_set=int(memory * w.working_set))
    o = res.outcome
    last = o.actions[-1] if o.actions else None
    return {
        **asdict(w), "policy": policy, "band": w.band, "bound_s": w.bound,
        "status": o.status, "mode": o.mode, "total_s": o.total_seconds,
        "t_over_bound": o.total_seconds / w.bound, "downtime_ms": o.downtime_ms,
        "passes": o.passes, "last_action": last.action if last else None,
        "last_reason": last.reason if last else None,
        "wall_s": time.perf_counter() - t0,
    }


def _run_pair(args: tuple[Workload, str]) -> dict[str, Any]:
    return run_one(*args)


def run_all(ws: Sequence[Workload], jobs: int | None = None) -> list[dict[str, Any]]:
    """Every workload under both policies; ``jobs`` processes (default: CPUs, max 2 in quick)."""
    tasks = [(w, p) for w in ws for p in POLICIES]
    # Expensive first (hopeless big guests on slow links run the longest in real time).
    tasks.sort(key=lambda t: -t[0].memory_gib * t[0].ratio / t[0].link_gbps)
    jobs = jobs or os.cpu_count() or 1
    if jobs <= 1 or len(tasks) < 8:
        return [_run_pair(t) for t in tasks]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_run_pair, tasks, chunksize=2))


# -- reporting ---------------------------------------------------------------------------


def _completed(recs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in recs if r["status"] == "completed"]


def _pairs(records: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(steps, adaptive) records of the same workload."""
    by: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for r in records:
        k = (r["memory_gib"], r["ratio"], r["link_gbps"], r["options"], r["working_set"])
        by.setdefault(k, {})[r["policy"]] = r
    return [(v["steps"], v["adaptive"]) for v in by.values() if len(v) == 2]


def band_table(records: Sequence[dict[str, Any]], title: str) -> Table:
    t = Table(title, ["band (dirty/bw)", "options", "policy", "completed", "pre/post/paused",
                      "T/bound p50",
                      "T/bound p95", "downtime p50 (ms)", "downtime max (ms)",
                      "> ceiling", "gave up after p50 (x bound)", "gave up p50 (s)"])
    for band, _ in BANDS:
        for opt in OPTIONS:
            for pol in POLICIES:
                rs = [r for r in records
                      if r["band"] == band and r["options"] == opt and r["policy"] == pol]
                if not rs:
                    continue
                done = _completed(rs)
                failed = [r for r in rs if r["status"] != "completed"]
                dts = [r["downtime_ms"] for r in done if r["downtime_ms"] is not None]
                modes = [sum(1 for r in done if r["mode"] == m)
                         for m in ("pre-copy", "post-copy", "paused")]
                t.add(band, opt, pol, f"{len(done)}/{len(rs)}", "/".join(map(str, modes)),
                      fmt(median(r["t_over_bound"] for r in done)),
                      fmt(percentile((r["t_over_bound"] for r in done), 95)),
                      fmt(median(dts), 0), fmt(max(dts) if dts else None, 0),
                      sum(1 for d in dts if d > CEILING_MS),
                      fmt(median(r["t_over_bound"] for r in failed), 1),
                      fmt(median(r["total_s"] for r in failed), 0))
    t.notes.append(
        f"T = total time of completed runs, bound = memory / link bandwidth; downtime is the "
        f"destination's measured one (none after post-copy: libvirt keeps no completed stats "
        f"there), ceiling {CEILING_MS} ms (live_migration_downtime); "
        "'gave up' = time to the outcome of runs that did not complete (timed_out or stalled).")
    return t


def ratio_table(records: Sequence[dict[str, Any]], title: str) -> Table:
    t = Table(title, ["dirty/bw", "completed steps", "completed adaptive",
                      "T/bound p50 steps", "T/bound p50 adaptive", "adaptive/steps T p50",
                      "downtime p50 steps", "downtime p50 adaptive",
                      "give-up adaptive/steps p50"])
    pairs = _pairs(records)
    for ratio in sorted({r["ratio"] for r in records}):
        ps = [(s, a) for s, a in pairs if s["ratio"] == ratio]
        both = [(s, a) for s, a in ps if s["status"] == a["status"] == "completed"]
        neither = [(s, a) for s, a in ps
                   if s["status"] != "completed" and a["status"] != "completed"]
        ss = [s for s, _ in ps]
        aa = [a for _, a in ps]
        t.add(f"{ratio:g}", f"{len(_completed(ss))}/{len(ss)}", f"{len(_completed(aa))}/{len(aa)}",
              fmt(median(r["t_over_bound"] for r in _completed(ss))),
              fmt(median(r["t_over_bound"] for r in _completed(aa))),
              fmt(median(a["total_s"] / s["total_s"] for s, a in both), 3),
              fmt(median(r["downtime_ms"] for r in _completed(ss) if r["downtime_ms"] is not None),
                  0),
              fmt(median(r["downtime_ms"] for r in _completed(aa) if r["downtime_ms"] is not None),
                  0),
              fmt(median(a["total_s"] / s["total_s"] for s, a in neither), 3))
    t.notes.append("Paired columns compare the two policies on the same workload "
                   "(memory x link x options); all option sets pooled.")
    return t


def verdict(records: Sequence[dict[str, Any]], label: str) -> list[str]:
    """The issue's "Done when" checks, computed from ``records``."""
    pairs = _pairs(records)
    lost = [s for s, a in pairs if s["status"] == "completed" and a["status"] != "completed"]
    won = [a for s, a in pairs if a["status"] == "completed" and s["status"] != "completed"]
    hopeless = [(s, a) for s, a in pairs
                if s["status"] != "completed" and a["status"] != "completed"]
    sooner = [(s, a) for s, a in hopeless if a["total_s"] < s["total_s"]]
    mid = [(s, a) for s, a in pairs if s["band"] == "0.5-0.95"]
    mid_s = median(s["total_s"] / s["bound_s"] for s, _ in mid if s["status"] == "completed")
    mid_a = median(a["total_s"] / a["bound_s"] for _, a in mid if a["status"] == "completed")
    mid_both = [(s, a) for s, a in mid if s["status"] == a["status"] == "completed"]
    faster = sum(1 for s, a in mid_both if a["total_s"] < s["total_s"])
    slower = sum(1 for s, a in mid_both if a["total_s"] > s["total_s"])
    out = [f"**{label}** ({len(pairs)} workloads, each under both policies)", ""]
    ok1 = not lost
    out.append(f"- adaptive completes every workload steps completes: "
               f"{'yes' if ok1 else 'NO'} ({len(lost)} lost"
               + (": " + "; ".join(_wl(r) for r in lost[:5]) + (" ..." if len(lost) > 5 else "")
                  if lost else "")
               + f"; adaptive completes {len(won)} that steps does not)")
    ok2 = bool(hopeless) and len(sooner) == len(hopeless)
    out.append(f"- adaptive gives up on hopeless workloads sooner: "
               f"{'yes' if ok2 else 'NO' if hopeless else 'n/a'} "
               f"({len(sooner)}/{len(hopeless)} sooner; median time to give up "
               f"{fmt(median(a['total_s'] for _, a in hopeless), 0)} s vs "
               f"{fmt(median(s['total_s'] for s, _ in hopeless), 0)} s, "
               f"median ratio {fmt(median(a['total_s'] / s['total_s'] for s, a in hopeless), 3)})")
    ok3 = mid_s is not None and mid_a is not None and mid_a < mid_s
    out.append(f"- lower median total time on the 0.5-0.95 band: "
               f"{'yes' if ok3 else 'NO'} (T/bound p50 {fmt(mid_a, 3)} adaptive vs "
               f"{fmt(mid_s, 3)} steps; paired: adaptive faster on {faster}, slower on {slower} "
               f"of {len(mid_both)}, median ratio "
               f"{fmt(median(a['total_s'] / s['total_s'] for s, a in mid_both), 3)})")
    dt_s = [s["downtime_ms"] for s, a in pairs
            if s["status"] == a["status"] == "completed" and s["downtime_ms"] is not None
            and a["downtime_ms"] is not None and s["mode"] == a["mode"] == "pre-copy"]
    dt_a = [a["downtime_ms"] for s, a in pairs
            if s["status"] == a["status"] == "completed" and s["downtime_ms"] is not None
            and a["downtime_ms"] is not None and s["mode"] == a["mode"] == "pre-copy"]
    out.append(f"- downtime (both completed in pre-copy, {len(dt_s)} workloads): p50 "
               f"{fmt(median(dt_a), 0)} ms adaptive vs {fmt(median(dt_s), 0)} ms steps, max "
               f"{fmt(max(dt_a) if dt_a else None, 0)} vs {fmt(max(dt_s) if dt_s else None, 0)} "
               f"ms (ceiling {CEILING_MS} ms)")
    return out


def _wl(r: dict[str, Any]) -> str:
    return Workload(r["memory_gib"], r["ratio"], r["link_gbps"], r["options"],
                    r["working_set"]).label()


def run(quick: bool = False, jobs: int | None = None) -> Report:
    ws = workloads(quick)
    t0 = time.perf_counter()
    records = run_all(ws, jobs)
    wall = time.perf_counter() - t0
    report = Report("sim", records=records,
                    meta={"workloads": len(ws), "migrations": len(records),
                          "wall_seconds": round(wall, 1), "quick": quick})
    for frac in sorted({w.working_set for w in ws}, reverse=True):
        recs = [r for r in records if r["working_set"] == frac]
        what = "working set = memory" if frac == 1.0 else f"working set = memory x {frac:g}"
        report.tables.append(band_table(recs, f"Simulator suite, {what}: per band"))
        report.tables.append(ratio_table(recs, f"Simulator suite, {what}: per ratio, paired"))
        report.verdict += verdict(recs, what) + [""]
    report.verdict.append(
        f"{len(records)} simulated migrations in {wall:.0f} s wall "
        f"({len(ws)} workloads x {len(POLICIES)} policies).")
    return report
