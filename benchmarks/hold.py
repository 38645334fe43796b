"""What the adaptive policy's hold costs and buys, against the bound.

While each pass at least halves the dirty set, adaptive keeps its initial max
downtime (Nova's step 0) for one more pass rather than raising it to what the
set needs (:data:`migrator.tuning.SHRINKING_FAST`): the pass costs about the
downtime it saves, and the guest is stopped for less.  At the first boundary a
guest rewriting a small hot working set faster than the link looks the same
(its set fell from all of memory to the working set, and QEMU counts each page
once per pass, so its rate reads low): there the pass is lost.  This runs the
simulator suite's option set without post-copy or auto-converge with the hold
and without it (``shrinking_fast=0``) and reports, per band, the time against
the clairvoyant bound beside the downtime.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import sim, simreport
from benchmarks.common import Report, Table, fmt, median, percentile

OPTION = "defaults"
RULES = {"hold": None, "no hold": 0.0}  # name -> AdaptiveTuning.shrinking_fast (None: default)


def _run_rule(args: tuple[sim.Workload, str]) -> dict[str, Any]:
    from migrator.adaptive import AdaptivePolicy
    from migrator.tuning import AdaptiveTuning

    w, name = args
    fast = RULES[name]
    tuning = AdaptiveTuning() if fast is None else AdaptiveTuning(shrinking_fast=fast)

    def factory(settings: Any, plan: Any) -> AdaptivePolicy:
        return AdaptivePolicy(settings, tuning)

    return {**sim.run_one(w, "adaptive", factory=factory), "policy": name}


def run(quick: bool = False, jobs: int | None = None) -> Report:
    ws = [w for w in sim.workloads(quick) if w.options == OPTION]
    t0 = time.perf_counter()
    rule_tasks = [(w, name) for w in ws for name in RULES]
    records = sim.against_bound(ws, rule_tasks, _run_rule, jobs)
    wall = time.perf_counter() - t0
    report = Report("hold", records=records,
                    meta={"workloads": len(ws), "wall_seconds": round(wall, 1), "quick": quick})
    report.tables.append(_table(simreport.Suite(records, sim.CEILING_MS)))
    report.verdict.append(f"{len(records)} simulated migrations in {wall:.0f} s wall "
                          f"({len(ws)} workloads without post-copy or auto-converge).")
    return report


def _table(s: simreport.Suite) -> Table:
    t = Table("The hold: adaptive with and without it, against the bound",
              ["band (dirty/bw)", "rule", "completed", "T/T_best p50", "T/T_best p90",
               "T/T_best max", "downtime p50 (ms)", "downtime p90 (ms)",
               "downtime higher / lower than with the hold"])
    for band, _ in sim.BANDS:
        for name in RULES:
            rs = [r for r in s.runs(name, band) if simreport.done(r, s.ceiling_ms)]
            ratios = [x for x in (s.t_best_ratio(r) for r in rs) if x is not None]
            downs = [r["downtime_ms"] for r in rs if r["downtime_ms"] is not None]
            higher = lower = 0
            for r in rs:
                other = s.by[simreport.key(r)].get("hold")
                if other and simreport.done(other, s.ceiling_ms) and r is not other:
                    higher += (r["downtime_ms"] or 0) > (other["downtime_ms"] or 0) + 5
                    lower += (r["downtime_ms"] or 0) < (other["downtime_ms"] or 0) - 5
            t.add(band, name, f"{len(rs)}/{len(s.runs(name, band))}", fmt(median(ratios)),
                  fmt(percentile(ratios, 90)), fmt(max(ratios) if ratios else None),
                  fmt(median(downs), 0), fmt(percentile(downs, 90), 0),
                  f"{higher} / {lower}")
    t.notes.append("Completed: within the ceiling.  Downtime higher / lower: paired with 'hold' "
                   "on the same workload, by more than 5 ms.")
    return t
