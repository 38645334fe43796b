"""Fidelity: the simulator configured like each real rig workload, against the real result.

For every real migration (``benchmarks.realrig``) the same migration is
simulated through the same driver, monitor and policy, with the same
configuration, the guest's measured dirty rate (its own report while it
migrated), its dirty region as the working set, and the link rate libvirt
measured (median ``memory_bps``).  Compared: total time (the outcome's) and
the number of passes (libvirt's ``memory_iteration`` in the completed-job
stats, real and simulated), as ratios sim / real; the target is 0.75-1.25.

Two simulator set-ups:

* **defaults**: the guest's RAM as memory, the simulator's default fixed
  timings (``Timings``: 1.0 s prepare, 0.1 s setup, 0.5 s finish);
* **calibrated**: memory = the pages QEMU really had to send (RAM minus the
  zero pages libvirt reports as ``memory_constant``), and the fixed timings
  measured on this rig (start of RAM transfer, and an idle guest's total).

What differs between the two is what the simulator would have to model to
match without calibration (see README.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from benchmarks import realrig
from benchmarks.common import POLICIES, MiB, Report, Table, fmt, make_conf, median, migrator_logs_at

LOW, HIGH = 0.75, 1.25
PAGE = 4096


@migrator_logs_at(logging.CRITICAL)
def simulate_like(conf: Any, *, memory: int, working_set: int, dirty_rate: float,
                  link_bps: float, timings: Any = None) -> tuple[Any, dict[str, Any]]:
    """One simulated migration through the real driver; (outcome, completed-job stats).

    Like :func:`migrator.simulate.run`, plus fixed ``timings`` and the completed-job
    stats of the simulated libvirt (where the pass count is).
    """
    from migrator import constants as c
    from migrator.driver import LiveMigrationDriver
    from migrator.testing import fakelibvirt
    from migrator.testing.world import World

    world = World(make_current=False, require_event_loop=False, timings=timings)
    previous = fakelibvirt.set_world(world)
    try:
        gbps = link_bps * 8 / 1e9
        world.add_host("source-host", link_gbps=gbps)
        world.add_host("dest-host", link_gbps=gbps)
        world.add_guest("source-host", "guest", memory=memory, working_set=working_set,
                        dirty_rate=dirty_rate)
        conn = fakelibvirt.open("qemu+tcp://source-host/system")
        driver = LiveMigrationDriver(conf, conn, clock=world.clock,
                                     open_connection=fakelibvirt.open)
        driver.init_host()
        handle = driver.live_migration(conn.lookupByName("guest"), "dest-host",
                                       post_method=lambda o: None,
                                       recover_method=lambda o: None)
        outcome = handle.wait(600)
        if outcome is None:
            raise RuntimeError("the simulated migration did not settle in 600 s")
        host = "dest-host" if outcome.succeeded else "source-host"
        other = fakelibvirt.open(f"qemu+tcp://{host}/system")
        flags = c.VIR_DOMAIN_JOB_STATS_COMPLETED | c.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED
        try:
            stats = dict(other.lookupByName("guest").jobStats(flags) or {})
        except fakelibvirt.libvirtError:  # libvirt kept no completed stats (e.g. cancelled)
            stats = {}
        other.close()
        conn.close()
        return outcome, stats
    finally:
        world.shutdown()
        fakelibvirt.set_world(previous)


def idle_baseline(rig: Any) -> dict[str, Any]:
    """An idle guest (nothing dirtied) migrated at a high cap: the fixed costs of a migration."""
    w = realrig.RigWorkload("idle", "quick", mb=0, rate=0, cap=1000)
    return realrig.migrate_once(rig, w, "steps", "bench-idle")


def sim_for(rec: dict[str, Any], calibrated: bool,
            timings: Any = None) -> tuple[Any, dict[str, Any]]:
    """Simulate the real record ``rec`` (see the module docstring)."""
    kibps = rec["guest_kibps_during"] or rec["guest_kibps_before"] or 0
    memory = realrig.GUEST_MEMORY_MIB * MiB
    if calibrated and rec.get("zero_pages"):
        memory = max(memory - rec["zero_pages"] * PAGE, rec["mb"] * MiB, PAGE)
    conf = make_conf(live_migration_convergence=rec["policy"],
                     live_migration_bandwidth=rec["cap"], **realrig.CONF)
    return simulate_like(conf, memory=memory, working_set=min(rec["mb"] * MiB, memory),
                         dirty_rate=kibps * 1024.0, link_bps=rec["link_bps"] or rec["cap"] * MiB,
                         timings=timings if calibrated else None)


def _ratio(sim: float | None, real: float | None) -> float | None:
    if sim is None or not real:
        return None
    return sim / real


def _ok(r: float | None) -> bool:
    return r is not None and LOW <= r <= HIGH


def compare(records: Sequence[dict[str, Any]], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """Each real record with its two simulations and the ratios."""
    from migrator.testing.world import Timings

    # Calibrated fixed costs: RAM starts ram_start_s after the monitor does; everything else
    # of an idle migration (whose transfer takes ~no time) is the finish.
    start = median(r["ram_start_s"] for r in records if r["ram_start_s"] is not None) or 0.3
    finish = max(0.0, baseline["total_s"] - start)
    timings = Timings(prepare=max(start - 0.01, 0.0), setup=0.01, finish=finish)
    out = []
    for rec in records:
        row = {"workload": rec["workload"], "policy": rec["policy"], "rep": rec.get("rep", 0),
               "real_status": rec["status"], "real_total_s": rec["total_s"],
               "real_passes": rec["passes"], "guest_mibps": (rec["guest_kibps_during"]
                                                             or rec["guest_kibps_before"]
                                                             or 0) / 1024,
               "link_mibps": (rec["link_bps"] or 0) / MiB,
               "timings": {"prepare": timings.prepare, "setup": timings.setup,
                           "finish": timings.finish}}
        for label, cal in (("default", False), ("calibrated", True)):
            outcome, stats = sim_for(rec, cal, timings)
            row[f"{label}_status"] = outcome.status
            row[f"{label}_total_s"] = outcome.total_seconds
            # count passes the way the real run's count was obtained
            if rec.get("passes_from") == "monitor":
                passes = outcome.passes
            else:
                passes = stats.get("memory_iteration")
            row[f"{label}_passes"] = passes
            row[f"{label}_t_ratio"] = _ratio(outcome.total_seconds, rec["total_s"])
            row[f"{label}_p_ratio"] = _ratio(passes, rec["passes"])
            row[f"{label}_actions"] = [(round(a.at, 2), a.action, a.value, a.ok)
                                       for a in outcome.actions]
        row["real_actions"] = rec.get("actions")
        out.append(row)
    return out


def fidelity_table(rows: Sequence[dict[str, Any]]) -> Table:
    t = Table("Fidelity: simulator / real, per workload and policy",
              ["workload", "policy", "real outcome", "real T (s)", "real passes",
               "sim T (s)", "T ratio", "passes ratio", "cal. sim T (s)", "cal. T ratio",
               "cal. passes ratio", "cal. within +-25 %"])
    for r in rows:
        both = _ok(r["calibrated_t_ratio"]) and _ok(r["calibrated_p_ratio"])
        t.add(r["workload"], r["policy"], r["real_status"], fmt(r["real_total_s"], 1),
              r["real_passes"] if r["real_passes"] is not None else "-",
              fmt(r["default_total_s"], 1), fmt(r["default_t_ratio"]),
              fmt(r["default_p_ratio"]), fmt(r["calibrated_total_s"], 1),
              fmt(r["calibrated_t_ratio"]), fmt(r["calibrated_p_ratio"]),
              "yes" if both else "NO")
    if rows:
        tm = rows[0]["timings"]
        t.notes.append(
            "sim = simulator defaults (memory = the guest's 128 MiB, Timings 1.0/0.1/0.5 s); "
            "cal. = calibrated (memory without the zero pages libvirt skipped; Timings "
            f"prepare {tm['prepare']:.2f} s, setup {tm['setup']:.2f} s, finish "
            f"{tm['finish']:.2f} s measured on the rig).  Both: same options and policy, the "
            "guest's own dirty-rate report during the migration, working set = its dirty "
            "region, link = libvirt's median memory_bps.  Passes = memory_iteration of the "
            "completed job (real and simulated), or the last one the monitor saw where the "
            "real job did not complete.")
    return t


def verdict(rows: Sequence[dict[str, Any]]) -> list[str]:
    def share(prefix: str, key: str) -> str:
        vals = [r[f"{prefix}_{key}"] for r in rows]
        return f"{sum(_ok(v) for v in vals)}/{len(vals)}"

    conv = [r for r in rows if r["real_status"] == "completed"]
    out = ["**Fidelity** (within +-25 %: ratio 0.75-1.25)", ""]
    for prefix, label in (("default", "simulator defaults"), ("calibrated", "calibrated")):
        out.append(
            f"- {label}: total time {share(prefix, 't_ratio')}, passes "
            f"{share(prefix, 'p_ratio')}; median ratio T "
            f"{fmt(median(r[f'{prefix}_t_ratio'] for r in rows if r[f'{prefix}_t_ratio']))}, "
            f"passes "
            f"{fmt(median(r[f'{prefix}_p_ratio'] for r in rows if r[f'{prefix}_p_ratio']))}"
            f"; outcome agrees on "
            f"{sum(r[f'{prefix}_status'] == r['real_status'] for r in rows)}/{len(rows)}")
    if conv:
        out.append(
            f"- completed real runs only ({len(conv)}): calibrated T within +-25 % on "
            f"{sum(_ok(r['calibrated_t_ratio']) for r in conv)}, passes on "
            f"{sum(_ok(r['calibrated_p_ratio']) for r in conv)}")
    return out


def run(quick: bool = False, reps: int | None = None, rig: Any = None) -> Report:
    workloads = realrig.QUICK_WORKLOADS if quick else realrig.WORKLOADS
    reps = reps or 1
    noisy = len(realrig.other_guests())
    t0 = time.monotonic()

    def on(r: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        base = idle_baseline(r)
        recs = realrig.run_workloads(r, workloads, reps, POLICIES)
        return recs, base

    if rig is None:
        with realrig.bench_rig() as own:
            records, baseline = on(own)
            mode = own.mode
    else:
        records, baseline = on(rig)
        mode = rig.mode
    rows = compare(records, baseline)
    wall = time.monotonic() - t0
    report = Report("fidelity", records=rows,
                    meta={"quick": quick, "rig_mode": mode, "wall_seconds": round(wall, 1),
                          "baseline": {k: baseline[k] for k in ("total_s", "ram_start_s",
                                                                "job_elapsed_s", "passes")},
                          "real": records})
    report.tables.append(fidelity_table(rows))
    report.verdict = verdict(rows) + [
        "", f"{len(rows)} real migrations (+1 idle baseline) and {2 * len(rows)} simulations "
        f"in {wall:.0f} s wall (rig mode {mode})"
        + (f"; WARNING: {noisy} other QEMU guests were running" if noisy else "") + "."]
    return report
