"""Real rig: migrator's policies and KubeVirt's on real libvirt daemons and a real guest.

Uses the functional tests' rig (``tests/functional/rig``): two libvirtd
"hosts" on this machine and ``dirtyguest``, which rewrites ``mb`` MiB at
``rate`` MiB/s.  By default the benchmark starts its own rig in netns mode
(own base dir and tag, so it can run next to a loopback rig); the functional
smoke test passes the session's rig instead.

Timers.  The guests are tiny (128 MiB; Nova counts at least 2 GiB), so Nova's
defaults would run a hopeless migration for 1 600 s.  Every run therefore uses
Nova's defaults compressed 25x in time, keeping their shape (the ramp reaches
the ceiling shortly before the completion timeout): downtime ceiling 500 ms
in 10 steps, ``live_migration_downtime_delay = 3`` s/GiB (a step every 6 s),
``live_migration_completion_timeout = 32`` s/GiB (64 s), action abort.
AdaptivePolicy's own stall window (6 passes and 40 s) is not compressed, nor
are the KubeVirt peer's timers (:mod:`benchmarks.peers`: they scale with the
guest's own memory, 150 s/GiB, with no 2 GiB floor: 19 s for 128 MiB).

Guests are TCG: the rig's test guest prints nothing under this machine's
nested KVM (its CPU has no SSE3 there, and ``-cpu host`` fails to set MSR
0x10a), so KVM guests of a GiB or more, which would need less compression,
are not used.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.common import Report, Table, fmt, make_conf, median, migrator_logs_at
from benchmarks.peers import PEERS

# Nova's defaults / 25 (see the module docstring)
CONF: dict[str, Any] = {
    "live_migration_downtime_delay": 3,
    "live_migration_completion_timeout": 32,
}
CEILING_MS = 500
GUEST_MEMORY_MIB = 128
TICK_MS = 250
BENCH_BASE = "/tmp/migrator-bench"
BENCH_TAG = "bench"
PEER = "kubevirt-stall"  # the peer users of KubeVirt get in 2026 (VEP 248 + VEP 291)
POLICIES = ("steps", "adaptive", PEER)


@dataclass(frozen=True)
class RigWorkload:
    name: str
    expect: str  # quick | slow | never: what it was chosen to do
    mb: int  # dirtied region, MiB
    rate: int  # MiB/s the guest rewrites it at (0: as fast as the vCPU can)
    cap: int  # live_migration_bandwidth, MiB/s
    reps: int | None = None  # repetitions when the run's default is not used

    def label(self) -> str:
        pace = "flat out" if self.rate == 0 else f"{self.rate} MiB/s"
        return f"{self.name}: {self.mb} MiB @ {pace}, cap {self.cap} MiB/s"


# Measured on the 2-core machine (see README.md): quick = a few passes, slow = tens of passes,
# never = the dirty set per pass needs seconds at the cap, far above the 500 ms ceiling.
WORKLOADS: tuple[RigWorkload, ...] = (
    RigWorkload("Q1", "quick", mb=16, rate=8, cap=100),
    RigWorkload("Q2", "quick", mb=32, rate=16, cap=64),
    RigWorkload("S1", "slow", mb=32, rate=20, cap=24),
    RigWorkload("S2", "slow", mb=32, rate=30, cap=32),
    # A hopeless run lasts as long as the policies' timers (~45-65 s): two repetitions
    # keep the whole benchmark near 10 minutes.  N2's passes are short (~1.2 s), so a raised
    # max downtime changes QEMU's pass boundaries noticeably (see README.md).
    RigWorkload("N1", "never", mb=64, rate=40, cap=20, reps=2),
    RigWorkload("N2", "never", mb=24, rate=40, cap=20, reps=2),
)
QUICK_WORKLOADS: tuple[RigWorkload, ...] = (WORKLOADS[1], WORKLOADS[3])
DEFAULT_REPS = 3


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def other_guests() -> list[int]:
    """PIDs of QEMU processes that are not ours (another rig's guests make numbers noisy)."""
    import os

    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"qemu-system-x86_64") and not any(
                BENCH_BASE.encode() in part for part in cmd):
            pids.append(int(entry))
    return pids


@contextlib.contextmanager
def bench_rig(wait: float = 900.0, attempts: int = 3) -> Any:
    """Our own netns rig.  Waits (up to ``wait`` s) while another rig holds its base dir;
    other start failures (e.g. a daemon that died while another rig was starting) are
    retried ``attempts`` times."""
    from tests.functional.rig import Rig, RigError

    deadline = time.monotonic() + wait
    failures = 0
    while True:
        rig = Rig(mode="netns", base=BENCH_BASE, tag=BENCH_TAG)
        try:
            rig.start()
            break
        except RigError as e:
            busy = "another rig" in str(e) or "has processes" in str(e)
            failures += 0 if busy else 1
            if failures >= attempts or time.monotonic() > deadline:
                raise
            _log(f"rig did not start ({str(e).splitlines()[0]}); retrying in 15 s")
            time.sleep(15)
    others = other_guests()
    if others:
        _log(f"warning: {len(others)} other QEMU guest(s) running on this machine "
             f"(pids {others[:5]}): the timings will be noisy")
    try:
        yield rig
    finally:
        rig.stop()


@migrator_logs_at(logging.ERROR)
def migrate_once(rig: Any, w: RigWorkload, policy: str, name: str,
                 extra_conf: dict[str, Any] | None = None,
                 prepare: Any = None) -> dict[str, Any]:
    """Define the guest on host a, migrate it to b through migrator's driver; a record.

    ``prepare(name)``, if given, runs once the guest dirties at its pace, before the
    migration (the predict benchmark measures there); its dict joins the record."""
    from migrator.driver import LiveMigrationDriver

    rig.define_guest("a", name, mb=w.mb, rate=w.rate, tick_ms=TICK_MS,
                     memory_mib=GUEST_MEMORY_MIB)
    rig.wait_heartbeat("a", name, above=3, timeout=60)  # the region is filled, pace is on
    prepared = prepare(name) if prepare is not None else {}
    before = rig.guest_stats("a", name) or {}
    convergence = "steps" if policy in PEERS else policy
    conf = make_conf(**{"live_migration_convergence": convergence,
                        "live_migration_bandwidth": w.cap, **CONF, **(extra_conf or {})})
    factory = (lambda settings, plan: PEERS[policy](settings)) if policy in PEERS else None
    conn = rig.connect("a")
    samples: list[tuple[float, Any]] = []
    during: list[int] = []
    try:
        driver = LiveMigrationDriver(conf, conn, policy_factory=factory)
        driver.init_host()
        t0 = time.monotonic()
        handle = driver.live_migration(
            conn.lookupByName(name), rig.b.addr, inbound_addr=rig.b.addr,
            post_method=lambda o: None,
            recover_method=lambda o: None, on_sample=lambda t, s: samples.append((t, s)))
        last_tick = before.get("tick", 0)
        while not handle.done():  # the guest's own dirty-rate reports while it migrates
            gs = rig.guest_stats("a", name)
            if gs and gs["tick"] > last_tick:
                last_tick = gs["tick"]
                during.append(gs["kibps"])
            handle.wait(TICK_MS / 1000)
        outcome = handle.wait(600)
        wall = time.monotonic() - t0
    finally:
        conn.close()
    assert outcome is not None
    final = completed_stats(rig, "b" if outcome.succeeded else "a", name)
    running = [(t, s) for t, s in samples if s.is_running]
    bps = [s.memory_bps for _, s in running if s.memory_bps > 0]
    first_ram = next(((t, s) for t, s in running if s.memory_processed > 0), None)
    ram_start = None
    if first_ram is not None and bps:
        t, s = first_ram
        ram_start = max(0.0, t - s.memory_processed / max(s.memory_bps or bps[0], 1))
    last = running[-1][1] if running else None
    rec = {
        "workload": w.name, **asdict(w), "policy": policy, "domain": name,
        "status": outcome.status, "mode": outcome.mode, "total_s": outcome.total_seconds,
        "downtime_ms": final.get("downtime") if outcome.succeeded else None,
        # libvirt's count when it kept the completed job's stats, else what the monitor saw
        "passes": final.get("memory_iteration") or outcome.passes,
        "passes_from": "libvirt" if final.get("memory_iteration") else "monitor",
        "passes_seen": outcome.passes, "final_stats": final,
        "job_elapsed_s": final["time_elapsed"] / 1000 if "time_elapsed" in final else None,
        "memory_normal_bytes": final.get("memory_normal_bytes"),
        "zero_pages": final.get("memory_constant"), "wall_s": wall,
        "guest_kibps_before": before.get("kibps"),
        "guest_kibps_during": median(during), "guest_reports_during": len(during),
        # a migration that ended before the monitor's first sample with a rate: libvirt's
        # completed-job figure
        "link_bps": median(bps) or final.get("memory_bps"), "ram_start_s": ram_start,
        "memory_processed": last.memory_processed if last else None,
        "memory_total": last.memory_total if last else None,
        "max_downtime_set": max((int(a.value) for a in outcome.actions
                                 if a.action == "set_max_downtime" and a.ok
                                 and a.value is not None), default=None),
        "actions": [(round(a.at, 2), a.action, a.value, a.ok) for a in outcome.actions],
        "last_action": outcome.actions[-1].action if outcome.actions else None,
        "last_reason": outcome.actions[-1].reason if outcome.actions else None,
        "error": outcome.error,
        "trace": [(round(t, 3), s.memory_iteration, s.memory_processed, s.memory_remaining,
                   s.memory_bps) for t, s in running],
        **prepared,
    }
    rig.cleanup_guests()
    return rec


def completed_stats(rig: Any, host: str, name: str) -> dict[str, Any]:
    """libvirt's completed-job stats of ``name`` on ``host``, kept for other readers.

    Read here rather than through the driver's ``dest_connect_uri``: the driver reads
    them without VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED, which consumes them, and the
    benchmark needs more than the downtime (the exact pass count, bytes, zero pages).
    """
    import libvirt

    flags = libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED | libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED
    with contextlib.closing(rig.connect(host)) as conn:
        try:
            return dict(conn.lookupByName(name).jobStats(flags) or {})
        except libvirt.libvirtError:
            return {}


def run_workloads(rig: Any, workloads: Sequence[RigWorkload], reps: int | None,
                  policies: Sequence[str] = POLICIES) -> list[dict[str, Any]]:
    """Every workload under every policy, repetition-major, policy order alternating."""
    records = []
    most = max((reps or w.reps or DEFAULT_REPS) for w in workloads)
    for rep in range(most):
        order = list(policies) if rep % 2 == 0 else list(reversed(policies))
        for w in workloads:
            if rep >= (reps or w.reps or DEFAULT_REPS):
                continue
            for policy in order:
                name = f"bench-{w.name.lower()}-{policy[:2]}{rep}"
                rec = migrate_once(rig, w, policy, name)
                rec["rep"] = rep
                records.append(rec)
                _log(f"[rig] rep {rep} {w.label()} {policy}: {rec['status']} "
                     f"{rec['mode'] or ''} {rec['total_s']:.1f} s, {rec['passes']} passes, "
                     f"downtime {rec['downtime_ms']} ms")
    return records


def rig_table(records: Sequence[dict[str, Any]], workloads: Sequence[RigWorkload]) -> Table:
    t = Table("Real rig: steps, adaptive and KubeVirt's on the same workloads (medians over "
              "repetitions)",
              ["workload", "guest dirties", "cap (MiB/s)", "policy", "reps", "completed",
               "outcome", "total p50 (s)", "total min-max (s)", "passes p50",
               "downtime p50 (ms)", "max downtime set (ms)"])
    for w in workloads:
        dirty = [r["guest_kibps_before"] for r in records
                 if r["workload"] == w.name and r["guest_kibps_before"]]
        for pol in POLICIES:
            rs = [r for r in records if r["workload"] == w.name and r["policy"] == pol]
            if not rs:
                continue
            totals = [r["total_s"] for r in rs]
            outcomes = sorted({r["status"] + (f" ({r['mode']})" if r["mode"] else "")
                               for r in rs})
            dts = [r["downtime_ms"] for r in rs if r["downtime_ms"] is not None]
            t.add(w.name, f"{w.mb} MiB @ {fmt(median(dirty) / 1024 if dirty else None, 0)} "
                  "MiB/s", w.cap, pol, len(rs),
                  f"{sum(r['status'] == 'completed' for r in rs)}/{len(rs)}",
                  ", ".join(outcomes), fmt(median(totals), 1),
                  f"{min(totals):.1f}-{max(totals):.1f}",
                  fmt(median(r["passes"] for r in rs), 0), fmt(median(dts), 0),
                  fmt(median(r["max_downtime_set"] for r in rs
                             if r["max_downtime_set"] is not None), 0))
    t.notes.append(
        f"Guest: {GUEST_MEMORY_MIB} MiB TCG dirtyguest; {PEER}: benchmarks/peers.py on the same "
        "driver and monitor, its own timers uncompressed (150 s/GiB of the guest's memory: "
        f"{150 * GUEST_MEMORY_MIB / 1024:.0f} s); 'guest dirties' = the dirty rate it "
        "measured itself just before the migration.  Cap = live_migration_bandwidth.  "
        f"Timers: Nova's defaults compressed 25x (downtime ceiling {CEILING_MS} ms in 10 "
        "steps every "
        "3 s/GiB x 2 GiB, completion timeout 32 s/GiB = 64 s, abort).  Downtime = libvirt's "
        "completed-job stats (destination's; none after post-copy); passes = libvirt's "
        "memory_iteration in them, or, for runs that did not complete (libvirt 9.0 keeps no "
        "completed stats for a cancelled job: type 0), the last iteration the monitor saw.")
    return t


def rig_verdict(records: Sequence[dict[str, Any]],
                workloads: Sequence[RigWorkload]) -> list[str]:
    out = ["**Real rig**", ""]
    for other in POLICIES:
        if other != "adaptive":
            out += _versus(records, workloads, other)
    return out


def _versus(records: Sequence[dict[str, Any]], workloads: Sequence[RigWorkload],
            other: str) -> list[str]:
    """Adaptive against ``other``: completions, hopeless runs, times where both complete."""
    lost: list[str] = []
    hopeless: list[str] = []
    sooner: list[str] = []
    band: list[str] = []
    faster: list[str] = []
    slower: list[str] = []
    early_runs: list[str] = []
    for w in workloads:
        by = {p: [r for r in records if r["workload"] == w.name and r["policy"] == p]
              for p in (other, "adaptive")}
        if not by[other] or not by["adaptive"]:
            continue
        done = {p: sum(r["status"] == "completed" for r in rs) for p, rs in by.items()}
        med = {p: statistics.median(r["total_s"] for r in rs) for p, rs in by.items()}
        if done[other] > done["adaptive"]:
            lost.append(w.name)
        if done[other] == 0 and done["adaptive"] == 0:
            hopeless.append(w.name)
            early = sum(r["status"] == "stalled" for r in by["adaptive"])
            early_runs.append(f"{w.name} {early}/{len(by['adaptive'])}")
            if med["adaptive"] < med[other] - _margin(med[other]):
                sooner.append(w.name)
        if done[other] == len(by[other]) and done["adaptive"] == len(by["adaptive"]):
            band.append(w.name)
            if med["adaptive"] < med[other] - _margin(med[other]):
                faster.append(w.name)
            elif med["adaptive"] > med[other] + _margin(med[other]):
                slower.append(w.name)
    return [
        f"- adaptive completes every workload {other} completes: "
        f"{'yes' if not lost else 'NO (' + ', '.join(lost) + ')'}",
        f"- adaptive gives up on hopeless workloads sooner than {other} (median, by more than "
        f"max(1 s, 5 %)): "
        f"{'yes' if hopeless and len(sooner) == len(hopeless) else 'NO' if hopeless else 'n/a'}"
        f" ({len(sooner)}/{len(hopeless)}: {', '.join(sooner) or '-'}; adaptive runs that "
        f"stopped early ('stalled'): {', '.join(early_runs) or '-'})",
        f"- median total time where both complete (differences under max(1 s, 5 %) count as "
        f"equal): adaptive faster than {other} on {len(faster)}/{len(band)} "
        f"({', '.join(faster) or '-'}), slower on {len(slower)} ({', '.join(slower) or '-'})",
    ]


def _margin(seconds: float) -> float:
    """What counts as a real difference between two medians on this noisy rig."""
    return max(1.0, 0.05 * seconds)


def run(quick: bool = False, reps: int | None = None, rig: Any = None) -> Report:
    """The rig benchmark on ``rig`` (a started Rig), or on a netns rig of its own."""
    workloads = QUICK_WORKLOADS if quick else WORKLOADS
    if quick and reps is None:
        reps = 1
    noisy = len(other_guests())
    t0 = time.monotonic()
    if rig is None:
        with bench_rig() as own:
            records = run_workloads(own, workloads, reps)
            mode = own.mode
    else:
        records = run_workloads(rig, workloads, reps)
        mode = rig.mode
    wall = time.monotonic() - t0
    report = Report("rig", records=records,
                    meta={"quick": quick, "rig_mode": mode, "wall_seconds": round(wall, 1),
                          "conf": CONF})
    report.tables.append(rig_table(records, workloads))
    report.meta["other_guests_at_start"] = noisy
    report.verdict = rig_verdict(records, workloads) + [
        "", f"{len(records)} real migrations in {wall:.0f} s wall (rig mode {mode})"
        + (f"; WARNING: {noisy} other QEMU guests were running" if noisy else "") + "."]
    return report

