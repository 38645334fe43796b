"""Simulator suite: every policy on the same grid of workloads, through the real driver.

Every migration runs :func:`migrator.simulate.run`: the shipped
``LiveMigrationDriver``, monitor loop and a policy against the simulated
hypervisor on a virtual clock.  migrator's policies are chosen the way an
operator chooses them (``live_migration_convergence``), and adaptive once
more as ``adaptive-measured``: given the prediction the driver makes first
from the guest's measured dirty rate (its prior, issue 12); the peers
(:mod:`benchmarks.peers`) and the candidates of the clairvoyant bound
(:mod:`benchmarks.bound`) come in through the driver's ``policy_factory``.
The option sets (``live_migration_permit_post_copy`` / ``_auto_converge``)
are the same for all; everything else is Nova's defaults (500 ms downtime
ceiling in 10 steps of 75 s/GiB, completion timeout 800 s/GiB with action
abort).

Workloads: memory x dirty-rate/bandwidth ratio x link x options, each run in
two working-set models: the whole memory is writable (the classic geometric
pre-copy model: pass *i* sends ``V * lambda**i``), and a hot working set of
1/8 of memory (writes land there only, so the dirty set saturates at it and a
guest dirtying faster than the link can still converge once the working set
fits in ``bandwidth x downtime``).  The tables and verdicts are in
:mod:`benchmarks.simreport`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks import bound, simreport
from benchmarks.common import GiB, Report, make_conf, migrator_logs_at
from benchmarks.peers import PEERS

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


MIGRATOR = ("steps", "adaptive")  # live_migration_convergence
# adaptive given the prediction the driver makes first (LiveMigrationDriver.predict:
# page sampling on the simulated guest, a few virtual seconds before the start).
MEASURED = "adaptive-measured"
PEER_NAMES = tuple(PEERS)
POLICY_NAMES = MIGRATOR + (MEASURED,) + PEER_NAMES


def applies(w: Workload, policy: str) -> bool:
    """Whether ``policy`` runs on ``w`` (the post-copy candidate needs post-copy)."""
    if policy == "one-pass-then-post-copy":
        return bool(OPTIONS[w.options].get("live_migration_permit_post_copy"))
    return True


def _factory(w: Workload, policy: str) -> Any:
    if policy in PEERS:
        return lambda settings, plan: PEERS[policy](settings)
    if policy in bound.BOUND_NAMES:
        memory = w.memory_gib * GiB
        guest = bound.Guest(memory, w.ratio * w.bandwidth, w.bandwidth, memory * w.working_set)
        return lambda settings, plan: bound.make(policy, settings, guest)
    return None


def run_one(w: Workload, policy: str, factory: Any = None) -> dict[str, Any]:
    """One migration of ``w`` under ``policy`` through migrator.simulate; a flat record.

    ``factory`` (settings, plan -> policy) replaces the named policy's."""
    from migrator import simulate

    convergence = "adaptive" if policy == MEASURED else policy if policy in MIGRATOR else "steps"
    conf = make_conf(live_migration_convergence=convergence, **OPTIONS[w.options])
    memory = w.memory_gib * GiB
    t0 = time.perf_counter()
    with migrator_logs_at(logging.CRITICAL):
        res = simulate.run(conf, memory=memory, dirty_rate=w.ratio * w.bandwidth,
                           bandwidth=w.bandwidth, working_set=int(memory * w.working_set),
                           policy_factory=factory or _factory(w, policy),
                           predict_first=policy == MEASURED)
    o = res.outcome
    last = o.actions[-1] if o.actions else None
    return {
        **asdict(w), "policy": policy, "band": w.band, "bound_s": w.bound,
        "status": o.status, "mode": o.mode, "total_s": o.total_seconds,
        "t_over_bound": o.total_seconds / w.bound, "downtime_ms": _downtime_ms(o),
        "post_copy_s": _post_copy_seconds(o), "passes": o.passes,
        "max_downtime_set": max((int(a.value) for a in o.actions
                                 if a.action == "set_max_downtime" and a.ok), default=None),
        "last_action": last.action if last else None,
        "last_reason": last.reason if last else None,
        "wall_s": time.perf_counter() - t0,
    }


def _since(o: Any, action: str) -> float | None:
    """Seconds from the first successful ``action`` to the end (None: never)."""
    at = next((a.at for a in o.actions if a.action == action and a.ok), None)
    return None if at is None else max(o.total_seconds - at, 0.0)


def _post_copy_seconds(o: Any) -> float | None:
    """Time the guest ran on the destination while pages were still pulled (slower)."""
    return _since(o, "start_post_copy") if o.mode == "post-copy" else None


def _downtime_ms(o: Any) -> int | None:
    """The guest's downtime: libvirt's measured one, or from the suspend to the end."""
    if o.mode == "paused":
        paused = _since(o, "suspend")
        if paused is not None:
            return max(int(paused * 1000), o.downtime_ms or 0)
    return o.downtime_ms


def _run_task(args: tuple[Workload, str]) -> dict[str, Any]:
    return run_one(*args)


def run_all(ws: Sequence[Workload], policies: Sequence[str],
            jobs: int | None = None) -> list[dict[str, Any]]:
    """Every workload under every policy that applies; ``jobs`` processes (default: CPUs)."""
    tasks = [(w, p) for w in ws for p in policies if applies(w, p)]
    # Expensive first (hopeless big guests on slow links run the longest in real time).
    tasks.sort(key=lambda t: -t[0].memory_gib * t[0].ratio / t[0].link_gbps)
    jobs = jobs or os.cpu_count() or 1
    if jobs <= 1 or len(tasks) < 8:
        return [_run_task(t) for t in tasks]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_run_task, tasks, chunksize=2))


def against_bound(ws: Sequence[Workload], tasks: Sequence[Any], run_task: Any,
                  jobs: int | None = None) -> list[dict[str, Any]]:
    """The bound's candidates on ``ws``, then ``run_task`` on each of ``tasks`` (a sweep of
    one policy's variants: the margin and hold benchmarks); ``jobs`` processes."""
    bound_tasks = [(w, p) for w in ws for p in bound.BOUND_NAMES if applies(w, p)]
    with ProcessPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        records = list(pool.map(_run_task, bound_tasks, chunksize=2))
        return records + list(pool.map(run_task, tasks, chunksize=2))


def run(quick: bool = False, jobs: int | None = None) -> Report:
    ws = workloads(quick)
    policies = POLICY_NAMES + bound.BOUND_NAMES
    t0 = time.perf_counter()
    records = run_all(ws, policies, jobs)
    wall = time.perf_counter() - t0
    report = Report("sim", records=records,
                    meta={"workloads": len(ws), "migrations": len(records),
                          "wall_seconds": round(wall, 1), "quick": quick})
    simreport.fill(report, records, ceiling_ms=CEILING_MS, bands=[b for b, _ in BANDS],
                   options=list(OPTIONS), peers=("steps",) + PEER_NAMES,
                   adaptive=("adaptive", MEASURED))
    report.verdict.append(
        f"{len(records)} simulated migrations in {wall:.0f} s wall ({len(ws)} workloads x "
        f"{len(POLICY_NAMES)} policies + the bound's {len(bound.BOUND_NAMES)} candidates).")
    return report
