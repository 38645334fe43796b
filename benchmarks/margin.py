"""Choosing the post-copy rule: adaptive at several margins, against the bound.

The adaptive policy starts post-copy at a pass boundary where pre-copy at the
ceiling is predicted to take longer than the post-copy push by a margin
(:data:`migrator.switchover.POST_COPY_MARGIN`).  This runs the simulator
suite's post-copy option set with the margin at each of :data:`MARGINS` (inf:
post-copy only on a stall, as before the rule) and reports, per band, how close
each comes to the clairvoyant bound and what it costs: more migrations end in
post-copy, and the guest runs slower while its pages are pulled.
"""

from __future__ import annotations

import math
import time
from typing import Any

from benchmarks import sim, simreport
from benchmarks.common import Report, Table, fmt, median, percentile

MARGINS = (1.0, 1.25, 1.5, 2.0, 3.0, math.inf)
OPTION = "post-copy"


def _name(margin: float) -> str:
    return "stall only" if math.isinf(margin) else f"margin {margin:g}"


def _run_margin(args: tuple[sim.Workload, float]) -> dict[str, Any]:
    from migrator.adaptive import AdaptivePolicy
    from migrator.tuning import AdaptiveTuning

    w, margin = args

    def factory(settings: Any, plan: Any) -> AdaptivePolicy:
        return AdaptivePolicy(settings, AdaptiveTuning(post_copy_margin=margin))

    return {**sim.run_one(w, "adaptive", factory=factory), "policy": _name(margin)}


def run(quick: bool = False, jobs: int | None = None) -> Report:
    ws = [w for w in sim.workloads(quick) if w.options == OPTION]
    t0 = time.perf_counter()
    margin_tasks = [(w, m) for w in ws for m in MARGINS]
    records = sim.against_bound(ws, margin_tasks, _run_margin, jobs)
    wall = time.perf_counter() - t0
    report = Report("margin", records=records,
                    meta={"workloads": len(ws), "wall_seconds": round(wall, 1), "quick": quick})
    report.tables.append(_table(simreport.Suite(records, sim.CEILING_MS)))
    report.verdict.append(f"{len(records)} simulated migrations in {wall:.0f} s wall "
                          f"({len(ws)} workloads with post-copy permitted).")
    return report


def _table(s: simreport.Suite) -> Table:
    t = Table("The post-copy margin: adaptive with post-copy permitted, against the bound",
              ["band (dirty/bw)", "rule", "completed", "T/T_best p50", "T/T_best p90",
               "T/T_best max", "faster / slower than stall only", "ended in post-copy",
               "time in post-copy p50 (s)", "time in post-copy total (s)"])
    base = _name(math.inf)
    for band, _ in sim.BANDS:
        for margin in MARGINS:
            name = _name(margin)
            rs = s.runs(name, band)
            ratios = [x for x in (s.t_best_ratio(r) for r in rs) if x is not None]
            faster = slower = 0
            for r in rs:
                other = s.by[simreport.key(r)].get(base)
                if other and simreport.done(r, s.ceiling_ms) \
                        and simreport.done(other, s.ceiling_ms):
                    delta = r["total_s"] / other["total_s"]
                    faster += delta < 0.99
                    slower += delta > 1.01
            pcs = [r["post_copy_s"] for r in rs if r["post_copy_s"] is not None]
            t.add(band, name, f"{sum(simreport.done(r, s.ceiling_ms) for r in rs)}/{len(rs)}",
                  fmt(median(ratios)), fmt(percentile(ratios, 90)),
                  fmt(max(ratios) if ratios else None), f"{faster} / {slower}", len(pcs),
                  fmt(median(pcs), 1), fmt(sum(pcs), 0))
    t.notes.append("Faster / slower: paired with 'stall only' on the same workload, beyond 1 %. "
                   "Time in post-copy: from the switch to the end, while the guest runs on the "
                   "destination and pulls the pages it touches (slower).")
    return t
