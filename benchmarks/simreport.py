"""The simulator suite's tables and verdicts (records in, :class:`Table` and lines out).

* **T / T_best** per band of dirty/bandwidth and option set, for migrator's
  policies, with the costs beside it: downtime / ceiling and the time the
  guest ran in post-copy (slower: its pages come over the network on demand).
* **Paired**: adaptive against each peer on the same workloads, per band.
* **Verdicts**: the targets of the convergence work, computed from the records.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from benchmarks import bound
from benchmarks.common import Report, Table, fmt, median, percentile

Record = dict[str, Any]
ADAPTIVE = "adaptive"


def key(r: Record) -> tuple[Any, ...]:
    return (r["memory_gib"], r["ratio"], r["link_gbps"], r["options"], r["working_set"])


def label(r: Record) -> str:
    ws = "" if r["working_set"] == 1.0 else f" ws={r['working_set']:g}"
    return (f"{r['memory_gib']} GiB, ratio {r['ratio']:g}, {r['link_gbps']:g} Gbit/s, "
            f"{r['options']}{ws}")


def done(r: Record | None, ceiling_ms: int) -> bool:
    """Completed, with the guest stopped no longer than the ceiling."""
    return (r is not None and r["status"] == "completed"
            and (r["downtime_ms"] is None or r["downtime_ms"] <= ceiling_ms))


def above_ceiling(r: Record | None, ceiling_ms: int) -> bool:
    return (r is not None and r["status"] == "completed" and r["downtime_ms"] is not None
            and r["downtime_ms"] > ceiling_ms)


class Suite:
    """The records by workload and policy, and the bound of each workload."""

    def __init__(self, records: Sequence[Record], ceiling_ms: int) -> None:
        self.ceiling_ms = ceiling_ms
        self.by: dict[tuple[Any, ...], dict[str, Record]] = {}
        for r in records:
            self.by.setdefault(key(r), {})[r["policy"]] = r
        self.best: dict[tuple[Any, ...], Record] = {}
        for k, runs in self.by.items():
            cands = [r for name, r in runs.items()
                     if name in bound.BOUND_NAMES and done(r, ceiling_ms)]
            if cands:
                self.best[k] = min(cands, key=lambda r: r["total_s"])

    def runs(self, policy: str, band: str | None = None,
             options: str | None = None) -> list[Record]:
        return [runs[policy] for runs in self.by.values() if policy in runs
                and (band is None or runs[policy]["band"] == band)
                and (options is None or runs[policy]["options"] == options)]

    def t_best_ratio(self, r: Record) -> float | None:
        b = self.best.get(key(r))
        return r["total_s"] / b["total_s"] if b is not None and done(r, self.ceiling_ms) \
            else None

    def pairs(self, other: str, band: str | None = None,
              who: str = ADAPTIVE) -> list[tuple[Record, Record]]:
        return [(runs[who], runs[other]) for runs in self.by.values()
                if who in runs and other in runs
                and (band is None or runs[who]["band"] == band)]


def _cost_cells(s: Suite, rs: list[Record]) -> list[str]:
    ok = [r for r in rs if done(r, s.ceiling_ms)]
    dts = [r["downtime_ms"] / s.ceiling_ms for r in ok if r["downtime_ms"] is not None]
    pcs = [r["post_copy_s"] for r in ok if r["post_copy_s"] is not None]
    return [fmt(median(dts)), fmt(max(dts) if dts else None),
            str(len(pcs)), fmt(median(pcs), 1)]


def bound_table(s: Suite, bands: Sequence[str], options: Sequence[str],
                policies: Sequence[str]) -> Table:
    t = Table("T / T_best per band and option set (T_best: the clairvoyant bound)",
              ["band (dirty/bw)", "options", "policy", "completed", "T/T_best p50",
               "T/T_best p90", "T/T_best max", "downtime/ceiling p50", "downtime/ceiling max",
               "ended in post-copy", "time in post-copy p50 (s)"])
    for band in bands:
        for opt in options:
            for pol in policies:
                rs = s.runs(pol, band, opt)
                if not rs:
                    continue
                ratios = [x for x in (s.t_best_ratio(r) for r in rs) if x is not None]
                n_done = sum(done(r, s.ceiling_ms) for r in rs)
                t.add(band, opt, pol, f"{n_done}/{len(rs)}", fmt(median(ratios)),
                      fmt(percentile(ratios, 90)), fmt(max(ratios) if ratios else None),
                      *_cost_cells(s, rs))
            best = [b for k, b in s.best.items() if b["band"] == band and b["options"] == opt]
            total = len({k for k, runs in s.by.items() if ADAPTIVE in runs
                         and runs[ADAPTIVE]["band"] == band and runs[ADAPTIVE]["options"] == opt})
            t.add(band, opt, "(bound)", f"{len(best)}/{total}", "1.00", "1.00", "1.00",
                  *_cost_cells(s, best))
    t.notes.append(
        "T_best: per workload, the fastest of the bound's candidates that completed within the "
        f"{s.ceiling_ms} ms ceiling (constant max downtime {', '.join(map(str, bound.CONSTANT_MS))}"
        " ms; full passes then the ceiling once a pass's rest fits bandwidth x ceiling; one pass "
        "then post-copy when permitted), through the same driver and monitor.  Ratios over the "
        "workloads a policy completed within the ceiling; 'completed' counts those.  Costs: "
        "downtime / ceiling (none after post-copy: the switch stops the guest only briefly), "
        "and how many runs ended in post-copy and for how long the guest then ran on the "
        "destination while its pages were pulled (slower).")
    return t


def _paired_cells(s: Suite, pairs: list[tuple[Record, Record]]) -> list[str]:
    c = s.ceiling_ms
    both = [(a, p) for a, p in pairs if done(a, c) and done(p, c)]
    won = [a for a, p in pairs if done(a, c) and not done(p, c)]
    lost = [p for a, p in pairs if done(p, c) and not done(a, c)]
    ratios = [a["total_s"] / p["total_s"] for a, p in both]
    dt_a = [a["downtime_ms"] for a, _ in both if a["downtime_ms"] is not None]
    dt_p = [p["downtime_ms"] for _, p in both if p["downtime_ms"] is not None]
    over = sum(above_ceiling(p, c) for _, p in pairs)
    pc = f"{sum(a['post_copy_s'] is not None for a, _ in both)}/" \
         f"{sum(p['post_copy_s'] is not None for _, p in both)}"
    tb_p = median(s.t_best_ratio(p) for _, p in pairs)
    return [str(len(pairs)), str(len(both)), str(len(won)), str(len(lost)), str(over),
            fmt(median(ratios), 3), fmt(percentile(ratios, 90), 3), fmt(tb_p),
            f"{fmt(median(dt_a), 0)} / {fmt(median(dt_p), 0)}", pc]


def paired_table(s: Suite, bands: Sequence[str], peers: Sequence[str]) -> Table:
    t = Table("Adaptive vs each peer, paired on the same workloads (all option sets)",
              ["band (dirty/bw)", "peer", "workloads", "both completed", "won", "lost",
               "peer above ceiling", "T adaptive/peer p50", "T adaptive/peer p90",
               "peer T/T_best p50", "downtime p50 adaptive / peer (ms)",
               "post-copy runs adaptive / peer"])
    for band in bands:
        for peer in peers:
            pairs = s.pairs(peer, band)
            if pairs:
                t.add(band, peer, *_paired_cells(s, pairs))
    t.notes.append(
        "'completed' means within the ceiling; 'won': adaptive completed and the peer did not, "
        "'lost': the reverse; 'peer above ceiling': the peer completed by stopping the guest "
        "longer than live_migration_downtime (Proxmox doubles without a ceiling).  Time and "
        "downtime ratios over the workloads both completed.")
    return t


def verdict(s: Suite, bands: Sequence[str], options: Sequence[str],
            peers: Sequence[str], who: str = ADAPTIVE) -> list[str]:
    """The verdict lines for migrator's policy ``who`` (adaptive, or adaptive measured)."""
    c = s.ceiling_ms
    out = []
    worst = []
    for band in bands:
        for opt in options:
            ratios = [x for x in (s.t_best_ratio(r) for r in s.runs(who, band, opt))
                      if x is not None]
            p50, p90 = median(ratios), percentile(ratios, 90)
            if p50 is not None and (p50 > 1.05 or (p90 or 0) > 1.5):
                worst.append(f"{band} {opt}: p50 {p50:.3f}, p90 {p90:.2f}")
    out.append(f"- {who} T/T_best p50 <= 1.05 and p90 <= 1.5 in every band and option set: "
               + ("yes" if not worst else "NO (" + "; ".join(worst) + ")"))
    missed = sorted({label(a) for peer in peers for a, p in s.pairs(peer, who=who)
                     if done(p, c) and not done(a, c)})
    out.append(f"- {who} completes every workload any peer completes within the ceiling: "
               + ("yes" if not missed else f"NO ({len(missed)}: " + "; ".join(missed[:6])
                  + (" ..." if len(missed) > 6 else "") + ")"))
    over_only = sorted({label(a) for peer in peers for a, p in s.pairs(peer, who=who)
                        if above_ceiling(p, c) and not done(a, c)})
    if over_only:
        out.append(f"  ({len(over_only)} workloads only a peer completes, by stopping the guest "
                   f"longer than the {c} ms ceiling: " + "; ".join(over_only[:4])
                   + (" ..." if len(over_only) > 4 else "") + ")")
    dts = [r["downtime_ms"] for r in s.runs(who) if r["status"] == "completed"
           and r["downtime_ms"] is not None]
    high = max(dts) if dts else None
    out.append(f"- {who} downtime never above the ceiling: "
               f"{'yes' if high is None or high <= c else 'NO'} (max {fmt(high, 0)} ms, "
               f"ceiling {c} ms)")
    slower = []
    for band in bands:
        for peer in peers:
            both = [(a, p) for a, p in s.pairs(peer, band, who)
                    if done(a, c) and done(p, c)]
            ratio = median(a["total_s"] / p["total_s"] for a, p in both)
            if ratio is not None and ratio > 1.0:
                slower.append(f"{band} vs {peer}: {ratio:.4f}")
    out.append(f"- {who}'s paired median time is at most every peer's on every band: "
               + ("yes" if not slower else "NO (" + "; ".join(slower) + ")"))
    return out


def fill(report: Report, records: Iterable[Record], *, ceiling_ms: int, bands: Sequence[str],
         options: Sequence[str], peers: Sequence[str],
         adaptive: Sequence[str] = (ADAPTIVE,)) -> None:
    """Add the tables and verdict lines of ``records`` to ``report`` (verdicts for each
    of migrator's ``adaptive`` variants that ran)."""
    s = Suite(list(records), ceiling_ms)
    ran = [who for who in adaptive if s.runs(who)]
    report.tables.append(bound_table(s, bands, options, (*ran, "steps")))
    report.tables.append(paired_table(s, bands, peers))
    report.verdict += [f"**Simulator suite** ({len(s.by)} workloads)", ""]
    for who in ran:
        report.verdict += verdict(s, bands, options, peers, who)
