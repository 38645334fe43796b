"""Predict, then migrate: migrator's answer before a migration against what the rig then did.

For each workload of the rig benchmark (:mod:`benchmarks.realrig`) and both
policies: the guest starts dirtying at its pace, is measured with libvirt's
page sampling (:func:`migrator.measure.guest_facts`, ~12 s), predicted under the
options the migration then uses (:func:`migrator.forecast.forecast`: the
policy, the cap, Nova's timers compressed 25x), and migrated through the
driver.  Compared: converges or not (the target: right on every workload),
total time (within 25 % on the converging ones) and passes (libvirt's
``memory_iteration``).

Three facts of the rig come from two migrations at the start of the run (as
the fidelity benchmark calibrates): an idle guest's gives the fixed costs of a
migration here (until RAM moves, and after the switchover) and QEMU's own
resident memory; one of a guest that wrote 64 MiB once, at a high cap, the
rate of the final, unthrottled copy.  The memory to send is the
guest's QEMU process's resident memory minus the latter (pages a guest never
touched are zero pages: QEMU sends a marker, not the page); the prediction
from the guest's whole RAM is shown beside it.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks import realrig
from benchmarks.common import POLICIES, MiB, Report, Table, fmt, make_conf, median

LOW, HIGH = 0.75, 1.25
# Page sampling hashes 512 pages per GiB of guest RAM, so it reads a rate r from about
# r x seconds / 2 sampled pages written (r in MiB/s): its error is ~sqrt(2 / (r x seconds)),
# whatever the guest's size.  Eight 1 s windows and four of 4 s (~24 s per guest): on a guest
# whose long windows see no working set all 24 s count (forecast.interpret), e.g. +-7 % at
# 16 MiB/s; the short ones read a small region's rate when the long ones saturate.
WINDOWS = (1, 1, 1, 1, 1, 1, 1, 1, 4, 4, 4, 4)
RigWorkload = realrig.RigWorkload
# Not the rig benchmark's workloads (README.md section 5 says why): a prediction's error
# is the rate's error times rate / (cap - rate), so the converging ones dirty at most ~0.6 of
# the cap (the rig benchmark's S1 and S2 dirty 0.83 and 0.94 of it: 1 MiB/s of sampling error
# there moves the time by 25-50 %), over regions large enough that their runs last 6-15 s
# (the rig's fixed costs, ~1.7 s, vary with the machine's load).  quick = a few passes,
# slow = several, each half the last; never = the cap is below the dirty rate (as the rig's).
WORKLOADS: tuple[RigWorkload, ...] = (
    RigWorkload("Q1", "quick", mb=64, rate=4, cap=16),
    RigWorkload("Q2", "quick", mb=96, rate=8, cap=32),
    RigWorkload("S1", "slow", mb=96, rate=8, cap=16),
    RigWorkload("S2", "slow", mb=96, rate=16, cap=28),
    *(w for w in realrig.WORKLOADS if w.expect == "never"),
)
QUICK_WORKLOADS: tuple[RigWorkload, ...] = (WORKLOADS[1],)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _resident(rig: Any, name: str) -> float:
    with contextlib.closing(rig.connect("a")) as conn:
        return float(conn.lookupByName(name).memoryStats()["rss"]) * 1024


def calibrate(rig: Any) -> dict[str, Any]:
    """Two migrations at a high cap: an idle guest (a migration's fixed costs, QEMU's own
    resident memory) and one with 64 MiB written once (the rate of an unthrottled copy)."""
    idle = RigWorkload("idle", "quick", mb=0, rate=0, cap=1000)
    rec = realrig.migrate_once(rig, idle, "steps", "bench-pred-idle",
                               prepare=lambda n: {"resident": _resident(rig, n)})
    bulk = realrig.migrate_once(rig, RigWorkload("bulk", "quick", mb=64, rate=1,
                                                         cap=1000), "steps", "bench-pred-bulk")
    # link_bps already falls back to libvirt's figure for the whole job (a bulk migration
    # can end before the monitor's first sample); the cap when libvirt kept none
    line = bulk["link_bps"] or idle.cap * MiB
    # An idle migration sends too little for the monitor to see RAM move: when RAM started
    # comes from the bulk one, the rest of the idle one's time is the finish.
    start = next((r["ram_start_s"] for r in (bulk, rec) if r["ram_start_s"] is not None), 0.3)
    sent = rec["memory_normal_bytes"] or 0
    return {"start_s": start, "finish_s": max(rec["total_s"] - start - sent / line, 0.0),
            "line_bps": line, "qemu_own_bytes": max(rec["resident"] - sent, 0.0),
            "idle_total_s": rec["total_s"], "idle_sent_bytes": sent}


def conf_for(w: RigWorkload, policy: str) -> Any:
    """The options :func:`benchmarks.realrig.migrate_once` migrates with."""
    return make_conf(**{"live_migration_convergence": policy,
                        "live_migration_bandwidth": w.cap, **realrig.CONF})


def predict_guest(rig: Any, name: str, w: RigWorkload, policy: str,
                  cal: dict[str, Any], windows: tuple[int, ...] = WINDOWS) -> dict[str, Any]:
    """Measure the running guest and predict its migration (the migrate_once hook)."""
    from migrator import forecast, measure

    with contextlib.closing(rig.connect("a")) as conn:
        facts = measure.guest_facts(conn.lookupByName(name), windows=windows)
    resident = facts.resident or facts.memory
    send = min(facts.memory, max(resident - cal["qemu_own_bytes"], 4096.0))
    conf, fixed = conf_for(w, policy), (cal["start_s"], cal["finish_s"])
    used = forecast.GuestFacts(name, send, facts.dirty, resident=resident)
    pred = forecast.forecast(conf, used, cal["line_bps"], fixed_seconds=fixed)
    whole = forecast.forecast(conf, facts, cal["line_bps"], fixed_seconds=fixed).configured
    # the same prediction from the guest's own figures: the rate it reports, its region
    said = rig.guest_stats("a", name) or {}
    told = forecast.GuestFacts(name, send, forecast.DirtyRate(
        said.get("kibps", 0) * 1024.0, min(said.get("mb", w.mb) * MiB, send) or None))
    own = forecast.forecast(conf, told, cal["line_bps"], fixed_seconds=fixed).configured
    est = pred.configured
    return {"measured_bps": facts.dirty.bytes_per_second,
            "measured_ws": facts.dirty.working_set, "at_least": facts.dirty.at_least,
            "windows": [[x.seconds, x.bytes_per_second] for x in facts.dirty.windows],
            "resident": resident, "send_bytes": send,
            "pred_completes": est.completes, "pred_strategy": est.strategy,
            "pred_ending": est.ending, "pred_total_s": est.total_seconds if est.completes
            else None, "pred_passes": est.passes, "pred_summary": pred.summary(),
            "ram_completes": whole.completes,
            "ram_total_s": whole.total_seconds if whole.completes else None,
            "own_bps": told.dirty.bytes_per_second, "own_completes": own.completes,
            "own_total_s": own.total_seconds if own.completes else None,
            "own_passes": own.passes}


def _hook(rig: Any, w: RigWorkload, policy: str, cal: dict[str, Any],
          windows: tuple[int, ...], name: str) -> dict[str, Any]:
    return predict_guest(rig, name, w, policy, cal, windows)


def run_workloads(rig: Any, workloads: Sequence[RigWorkload], reps: int,
                  cal: dict[str, Any],
                  windows: tuple[int, ...] = WINDOWS) -> list[dict[str, Any]]:
    records = []
    for rep in range(reps):
        order = POLICIES if rep % 2 == 0 else tuple(reversed(POLICIES))
        for w in workloads:
            for policy in order:
                rec = realrig.migrate_once(rig, w, policy, f"bench-pred-{w.name.lower()}-"
                                           f"{policy[0]}{rep}", prepare=functools.partial(
                                               _hook, rig, w, policy, cal, windows))
                rec["rep"] = rep
                records.append(rec)
                _log(f"[predict] {w.label()} {policy}: predicted "
                     f"{'completes' if rec['pred_completes'] else 'does not complete'} "
                     f"{fmt(rec['pred_total_s'], 1)} s; real {rec['status']} "
                     f"{rec['total_s']:.1f} s, {rec['passes']} passes")
    return records


def _ratio(pred: float | None, real: float | None) -> float | None:
    return pred / real if pred is not None and real else None


def table(records: Sequence[dict[str, Any]]) -> Table:
    t = Table("Predicted before migrating vs what the migration did",
              ["workload", "policy", "measured (MiB/s)", "working set (MiB)",
               "to send (MiB)", "predicted", "real", "right", "T pred (s)", "T real (s)",
               "T ratio", "passes pred", "passes real", "T ratio, whole RAM",
              "guest's own rate (MiB/s)", "predicted from it", "T ratio from it"])
    for r in records:
        real_ok = r["status"] == "completed"
        ws = fmt(r["measured_ws"] / MiB, 0) if r["measured_ws"] else "-"
        t.add(r["workload"], r["policy"],
              ("at least " if r["at_least"] else "") + fmt(r["measured_bps"] / MiB, 0), ws,
              fmt(r["send_bytes"] / MiB, 0),
              "completes" if r["pred_completes"] else "does not",
              r["status"], "yes" if r["pred_completes"] == real_ok else "NO",
              fmt(r["pred_total_s"], 1), fmt(r["total_s"], 1),
              fmt(_ratio(r["pred_total_s"], r["total_s"]) if real_ok else None),
              r["pred_passes"], r["passes"] if r["passes"] is not None else "-",
              fmt(_ratio(r["ram_total_s"], r["total_s"]) if real_ok else None),
              fmt(r["own_bps"] / MiB, 0), "completes" if r["own_completes"] else "does not",
              fmt(_ratio(r["own_total_s"], r["total_s"]) if real_ok else None))
    t.notes.append(
        "measured = libvirt page sampling before the migration (eight 1 s windows and four "
        "of 4 s, weighted by length when the 4 s ones saw no working set; else the 1 s ones, "
        "and the working set from the 4 s ones); to send = QEMU's "
        "resident memory minus an idle guest's QEMU overhead; predicted = the configured "
        "strategy under the same options (cap, policy, Nova's timers / 25); T = total time "
        "(the outcome's); passes = libvirt's memory_iteration (the monitor's last one where "
        "the job did not complete); 'whole RAM' = the same prediction from the guest's 128 "
        "MiB; 'guest's own rate' = the rate the guest reports itself (its heartbeat) with its "
        "region as the working set: what the model predicts when the dirty rate is exact.")
    return t


def verdict(records: Sequence[dict[str, Any]], cal: dict[str, Any]) -> list[str]:
    right = [r for r in records if r["pred_completes"] == (r["status"] == "completed")]
    done = [r for r in records if r["status"] == "completed" and r["pred_completes"]]
    ratios = [_ratio(r["pred_total_s"], r["total_s"]) for r in done]
    within = [x for x in ratios if x is not None and LOW <= x <= HIGH]
    whole = [_ratio(r["ram_total_s"], r["total_s"]) for r in done]
    whole_ok = [x for x in whole if x is not None and LOW <= x <= HIGH]
    wrong = ", ".join(f"{r['workload']}/{r['policy']}" for r in records if r not in right)
    own_right = [r for r in records if r["own_completes"] == (r["status"] == "completed")]
    own_done = [r for r in records if r["status"] == "completed" and r["own_completes"]]
    own = [_ratio(r["own_total_s"], r["total_s"]) for r in own_done]
    own_ok = [x for x in own if x is not None and LOW <= x <= HIGH]
    return [
        "**Predict, then migrate**", "",
        f"- converges or not, predicted right: {len(right)}/{len(records)}"
        + (f" (wrong: {wrong})" if wrong else ""),
        f"- total time within 25 % on the converging ones: {len(within)}/{len(done)} "
        f"(median ratio predicted/real {fmt(median(ratios))})",
        f"- from the guest's whole RAM instead: {len(whole_ok)}/{len(done)} within 25 % "
        f"(median ratio {fmt(median(whole))})",
        f"- from the guest's own rate instead of page sampling: converges or not right "
        f"{len(own_right)}/{len(records)}, total time within 25 % {len(own_ok)}/{len(own_done)} "
        f"(median ratio {fmt(median(own))})",
        f"- calibration: RAM moves {cal['start_s']:.2f} s after the start, "
        f"{cal['finish_s']:.2f} s after the switchover; final copy at "
        f"{cal['line_bps'] / MiB:.0f} MiB/s; QEMU's own resident memory "
        f"{cal['qemu_own_bytes'] / MiB:.0f} MiB",
    ]


def run(quick: bool = False, reps: int | None = None, rig: Any = None) -> Report:
    """The benchmark on ``rig`` (a started Rig) or a netns rig of its own; ``quick``: one
    quick workload under both policies, measured in 1 + 3 s (a smoke test, ~30 s)."""
    workloads = QUICK_WORKLOADS if quick else WORKLOADS
    windows = (1, 3) if quick else WINDOWS
    reps = reps or 1
    t0 = time.monotonic()
    with (contextlib.nullcontext(rig) if rig is not None else realrig.bench_rig()) as r:
        cal = calibrate(r)
        records = run_workloads(r, workloads, reps, cal, windows)
        mode = r.mode
    wall = time.monotonic() - t0
    report = Report("predict", records=records,
                    meta={"quick": quick, "rig_mode": mode, "wall_seconds": round(wall, 1),
                          "calibration": cal, "conf": realrig.CONF})
    report.tables.append(table(records))
    report.verdict = verdict(records, cal) + [
        "", f"{len(records)} guests measured, predicted and migrated (+2 for calibration) "
        f"in {wall:.0f} s wall (rig mode {mode})."]
    return report
