"""What migrating one guest will do under migrator's options, before it starts.

The glue between the options (``[libvirt]``), a guest's facts (its memory,
its dirty rate measured by :mod:`migrator.measure` or given by the caller) and
the pure model in :mod:`migrator.predict`; pure, like the model:

* page sampling's windows tell the rate (the short ones) and, when the writes
  saturate the long one, the working set (:func:`interpret`);

* the max downtime follows the configured policy: Nova's ramp
  (``live_migration_downtime`` in ``live_migration_downtime_steps`` steps,
  ``live_migration_downtime_delay`` s per GiB apart) for ``steps``, the
  ceiling from the first pass boundary for ``adaptive``, which also switches
  to post-copy early when permitted;
* the completion timeout and its action, auto-converge and post-copy as the
  options permit them;
* the pre-copy rate is ``live_migration_bandwidth`` or the link's, whichever
  is lower; the final copy and post-copy run at the link's rate.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, replace
from typing import Any

from migrator import exception
from migrator.jobstats import data_gb
from migrator.policy import completion_timeout, downtime_steps
from migrator.precopy import CHECK_SECONDS
from migrator.predict import (
    PRECOPY,
    SWITCHOVER,
    Estimate,
    Limits,
    Link,
    Prediction,
    Workload,
    least,
    predict,
)
from migrator.tuning import POSSIBLE_FACTOR, SHRINKING_FAST, AdaptiveTuning
from migrator.units import GiB, MiB, human_bytes

# The long window's distinct pages below this share of rate x window: a working set.
SATURATED = 0.75
# QEMU's page sampling hashes 512 pages per GiB (its default; libvirt's API has no
# parameter for it): one sampled page stands for this many bytes, whatever the guest's size.
SAMPLED_PAGE_SPAN = GiB / 512
# How many standard deviations of sampling noise a shortfall must exceed to be a working set.
NOISE_SIGMAS = 2.0
# Passes without progress that confirm a stall the prediction foresaw (the adaptive
# policy's own window is 6 passes and 40 s, to learn it without a prediction).
PRIOR_STALL_PASSES = 2
# When the adaptive policy sees a pass boundary: it asks for a sample right after
# QEMU's predicted sync (AdaptivePolicy.next_sample_in), at most one check later.
BOUNDARY_SEEN_SECONDS = CHECK_SECONDS


@dataclass(frozen=True)
class Window:
    seconds: int
    bytes_per_second: float  # distinct pages written in the window, per second


@dataclass(frozen=True)
class DirtyRate:
    """How fast a guest writes its memory, and where (bytes, bytes/s)."""

    bytes_per_second: float
    working_set: float | None = None  # None: not seen (all of memory, for all we know)
    at_least: bool = False  # the short windows were saturated: the rate may be higher
    windows: tuple[Window, ...] = ()
    source: str = "given"  # "page-sampling" when measured, "paused" for a paused guest

    def describe(self) -> str:
        text = f"dirties {'at least ' if self.at_least else ''}" \
               f"{human_bytes(self.bytes_per_second)}/s"
        if self.working_set is not None:
            text += f" into a working set of ~{human_bytes(self.working_set)}"
        if self.source == "page-sampling":
            text += " (measured: libvirt page sampling, " + ", ".join(
                f"{w.seconds} s: {w.bytes_per_second / MiB:.0f} MiB/s" for w in self.windows) + ")"
        else:
            text += f" ({self.source})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"bytes_per_second": self.bytes_per_second, "working_set": self.working_set,
                "at_least": self.at_least, "source": self.source,
                "windows": [[w.seconds, w.bytes_per_second] for w in self.windows]}


def interpret(windows: tuple[Window, ...]) -> DirtyRate:
    """The rate and the working set from page-sampling results.

    The working set is the mean of the longest windows when the writes saturated
    them: they saw clearly fewer distinct pages than the rate would write, by more
    than page sampling's noise.  The rate is the mean of the shortest windows; when
    the longest ones were not saturated they measured the same rate, so every
    window counts, weighted by its length: page sampling's error shrinks with the
    sampled pages written, i.e. with the seconds measured.
    """
    if not windows:
        raise ValueError("no measurement windows")
    short = min(w.seconds for w in windows)
    longest = max(w.seconds for w in windows)
    shorts = [w.bytes_per_second for w in windows if w.seconds == short]
    rate = _mean(shorts)
    working_set = None
    if longest > short:
        longs = [w.bytes_per_second * longest for w in windows if w.seconds == longest]
        distinct, expected = _mean(longs), rate * longest
        # nothing seen in the long windows while the short ones saw writes is sampling
        # noise on a slow guest (few sampled pages), not a working set of zero
        if 0 < distinct < SATURATED * expected and _beyond_noise(
                expected, distinct, len(longs), rate * short * len(shorts)):
            working_set = distinct
        elif distinct > 0 or expected == 0:
            rate = (sum(w.bytes_per_second * w.seconds for w in windows)
                    / sum(w.seconds for w in windows))
    # a short window that saw (about) the whole working set only bounds the rate from below
    at_least = working_set is not None and rate * short >= 0.9 * working_set
    return DirtyRate(rate, working_set, at_least, windows, "page-sampling")


def _beyond_noise(expected: float, distinct: float, long_windows: int,
                  written_short: float) -> bool:
    """Whether long windows that saw ``distinct`` bytes each, where the short ones'
    rate (``written_short`` bytes seen in all) says ``expected``, fell short by more
    than sampling noise.  A window that saw ``d`` bytes read them from ``d /
    SAMPLED_PAGE_SPAN`` sampled pages (variance ~ their count): few pages at low
    rates, so a slow guest's long window can read well below ``expected`` by chance."""
    var_long = SAMPLED_PAGE_SPAN * distinct / long_windows
    var_expected = expected ** 2 * SAMPLED_PAGE_SPAN / written_short
    return expected - distinct > NOISE_SIGMAS * math.sqrt(var_long + var_expected)


def _mean(values: Any) -> float:
    vals = list(values)
    return sum(vals) / len(vals)


@dataclass(frozen=True)
class GuestFacts:
    """One guest as the model needs it (bytes, bytes/s)."""

    name: str
    memory: float  # RAM, or what the caller says QEMU will have to send
    dirty: DirtyRate
    disk: float = 0.0  # disks a block migration copies
    resident: float | None = None  # QEMU's resident memory, when libvirt reports it

    def workload(self) -> Workload:
        ws = self.dirty.working_set
        return Workload(self.memory, self.dirty.bytes_per_second,
                        None if ws is None else min(ws, self.memory), self.disk)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "memory": self.memory, "disk": self.disk,
                "resident": self.resident, "dirty_rate": self.dirty.to_dict()}


def limits(conf: Any, memory: float, disk: float = 0.0, *, dirty_rate: float | None = None,
           bandwidth: float | None = None, working_set: float | None = None,
           fixed_seconds: tuple[float, float] | None = None) -> Limits:
    """The model's :class:`~migrator.predict.Limits` from ``conf.libvirt``.

    Nova's ramp for ``steps``.  The adaptive policy keeps Nova's step 0 while
    the guest dirties at most half the link (each pass then at least halves
    the set), and raises the max downtime at the first pass boundary whose set
    the ceiling (times its margin) can take; without the rates, the ceiling
    from the start.  ``fixed_seconds``: a migration's fixed costs on these
    hosts (before RAM moves, after the switchover), if measured.
    """
    lv = conf.libvirt
    start, finish = fixed_seconds or (Limits.start_seconds, Limits.finish_seconds)
    gb = data_gb(int(memory), [int(disk)] if disk else [])
    ramp = tuple((at, ms / 1000) for at, ms in downtime_steps(
        gb, lv.live_migration_downtime, lv.live_migration_downtime_steps,
        lv.live_migration_downtime_delay))
    adaptive = lv.live_migration_convergence == "adaptive"
    if adaptive and (dirty_rate is None or not bandwidth):
        ramp = ()  # the ceiling throughout
    elif adaptive:
        ceiling = lv.live_migration_downtime / 1000
        raised = _adaptive_raise(ceiling, memory, dirty_rate, bandwidth, working_set)
        ramp = ((0.0, ramp[0][1]),) if raised is None else (
            (0.0, ramp[0][1]), (start + disk / bandwidth + raised, ceiling))
    return Limits(
        max_downtime=lv.live_migration_downtime / 1000, schedule=ramp,
        completion_timeout=completion_timeout(lv.live_migration_completion_timeout, gb),
        timeout_action=lv.live_migration_timeout_action,
        permit_post_copy=lv.live_migration_permit_post_copy,
        permit_auto_converge=lv.live_migration_permit_auto_converge,
        post_copy_early=adaptive, start_seconds=start, finish_seconds=finish)


def _adaptive_raise(ceiling: float, memory: float, dirty_rate: float, bandwidth: float,
                    working_set: float | None) -> float | None:
    """Seconds after RAM starts moving at which the adaptive policy raises the max downtime
    to the ceiling (None: it keeps Nova's step 0).

    It raises at the first boundary whose dirty set needs at most ``POSSIBLE_FACTOR`` x
    the ceiling; the set left falls at ``bandwidth - dirty rate`` (or is the working set,
    dirty again after each pass), and the monitor sees the boundary a check later.
    """
    if _halving(dirty_rate, bandwidth):
        return None
    fits = POSSIBLE_FACTOR * ceiling * bandwidth
    first_pass = memory / bandwidth
    if _first_set(memory, dirty_rate, bandwidth, working_set) <= fits:
        return first_pass + BOUNDARY_SEEN_SECONDS
    if dirty_rate >= bandwidth:
        return None  # never fits: the stall ladder raises it, then gives up
    return max(first_pass, (memory - fits) / (bandwidth - dirty_rate)) + BOUNDARY_SEEN_SECONDS


def _halving(dirty_rate: float, bandwidth: float) -> bool:
    """Each pass at least halves the dirty set: the adaptive policy keeps Nova's step 0."""
    return bandwidth <= 0 or dirty_rate <= SHRINKING_FAST * bandwidth


def _first_set(memory: float, dirty_rate: float, bandwidth: float,
               working_set: float | None) -> float:
    """What the first boundary finds: the writes of the first pass, at most the working
    set (or all of memory)."""
    return min(dirty_rate * memory / bandwidth, working_set or memory, memory)


def link(conf: Any, link_rate: float | None = None) -> Link:
    """Pre-copy at ``live_migration_bandwidth`` (MiB/s) or the link's rate, the lower."""
    cap = conf.libvirt.live_migration_bandwidth * MiB
    if not cap and not link_rate:
        raise exception.ConfigError(
            "live_migration_bandwidth is 0 (no limit), so the migration runs at the link's "
            "rate: give the migration network's rate to predict it")
    if not link_rate:
        return Link(cap)
    return Link(min(cap, link_rate) if cap else link_rate, line_rate=link_rate)


def forecast(conf: Any, facts: GuestFacts, link_rate: float | None = None,
             fixed_seconds: tuple[float, float] | None = None) -> Prediction:
    """Every strategy for ``facts`` under ``conf``'s options (see :func:`predict.predict`).

    A guest that rewrote its whole working set within the measurement window
    may write faster than measured: the caveat says so, and from which rate
    on the verdict would change."""
    work, net = facts.workload(), link(conf, link_rate)

    def at(rate: float, remedies: bool = True) -> Prediction:
        lim = limits(conf, facts.memory, facts.disk, dirty_rate=rate, bandwidth=net.bandwidth,
                     working_set=work.working_set, fixed_seconds=fixed_seconds)
        return predict(replace(work, dirty_rate=rate), net, lim, remedies)

    measured = at(work.dirty_rate)
    if not facts.dirty.at_least or work.working_set is None:
        return measured
    measured = replace(measured, rate_at_least=True)
    low = human_bytes(work.dirty_rate) + "/s"
    caveat = (f"the guest rewrote its whole {human_bytes(work.working_set)} working set within "
              f"the 1 s measurement window, so it may write faster than {low}")
    fastest = measured.fastest_rate
    if at(fastest, False).configured.completes == measured.configured.completes:
        return replace(measured, caveat=caveat + ": the verdict holds up to the link's rate")
    # the slowest rate at which the verdict changes
    flip = least(lambda r: at(r, False).configured.completes != measured.configured.completes,
                 work.dirty_rate, fastest, rounds=20) or fastest
    caveat += (f"; above ~{human_bytes(flip)}/s it "
               + ("does not complete" if measured.configured.completes else "completes"))
    return replace(measured, caveat=caveat)


@dataclass(frozen=True)
class Drain:
    """Migrating a host's guests ``concurrency`` at a time, longest first (seconds)."""

    concurrency: int
    seconds: float  # until the last of the guests that complete is done
    order: tuple[str, ...]  # the guests that complete, longest first
    incomplete: tuple[str, ...]  # the guests predicted not to complete

    def to_dict(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency, "seconds": self.seconds,
                "order": list(self.order), "incomplete": list(self.incomplete)}


def drain(estimates: list[tuple[str, Estimate]], concurrency: int) -> Drain:
    """When a drain ends if each guest takes its predicted time and a free slot takes the
    longest one left (0: all at once)."""
    done = sorted(((e.total_seconds, name) for name, e in estimates if e.completes),
                  reverse=True)
    slots = [0.0] * max(1, min(concurrency or len(done), len(done)))
    heapq.heapify(slots)
    for seconds, _ in done:
        heapq.heappush(slots, heapq.heappop(slots) + seconds)
    return Drain(concurrency, max(slots), tuple(name for _, name in done),
                 tuple(name for name, e in estimates if not e.completes))


def starts_at_ceiling(ceiling: float, memory: float, dirty_rate: float, bandwidth: float,
                      working_set: float | None) -> bool:
    """Whether the adaptive policy, knowing the dirty rate before the start, sets the max
    downtime to the ceiling from the start instead of Nova's step 0.

    While the guest dirties at most half the link each pass at least halves the
    set: step 0 is kept (one more pass costs about the downtime it saves).
    Otherwise the passes after the first shrink the set slowly or not at all,
    and what the first boundary finds is known: ``min(rate x first pass,
    working set)``.  When that fits the ceiling (within ``POSSIBLE_FACTOR``),
    the ceiling from the start lets QEMU stop the guest at that very sync (with
    up to the ceiling's worth of the pass still unsent, so a downtime near the
    ceiling, as the bound's fastest candidate); without the prior the policy
    learns the set at that sync and raises the max downtime a moment later, when
    QEMU is into another pass.  A guest that dirties faster than the link gets the
    ceiling too: pre-copy cannot shrink its set, and the ceiling makes QEMU sync
    sooner (so post-copy or auto-converge's throttle starts sooner).
    """
    if _halving(dirty_rate, bandwidth):
        return False
    first_set = _first_set(memory, dirty_rate, bandwidth, working_set)
    return first_set <= POSSIBLE_FACTOR * ceiling * bandwidth or dirty_rate >= bandwidth


def adaptive_tuning(pred: Prediction) -> AdaptiveTuning:
    """The adaptive policy's prior from a prediction made before the start.

    * The ceiling as its initial max downtime when the passes will not halve the
      dirty set (:func:`starts_at_ceiling`).
    * The guest's rate and working set, for the post-copy decision at the first
      boundaries: QEMU counts a page once per pass, so a guest that rewrites a
      hot working set within a pass reads far slower than it writes.
    * A stall confirmed sooner: without a prior the policy needs a window of
      passes *and* seconds without progress (6 passes and 40 s) before it acts
      (the ceiling, post-copy, auto-converge, or an early end); a guest
      predicted not to converge at the ceiling only needs that confirmed:
      :data:`PRIOR_STALL_PASSES` passes without progress.  A guest predicted to
      converge keeps the window, and so does one that auto-converge is to
      end: its throttle rises a step per sync, and a short window would call
      it exhausted before it had risen.
    """
    w, pre, bandwidth = pred.workload, pred.estimates[PRECOPY], pred.link.bandwidth
    # A floor that covered the whole working set may be any rate above it: at the
    # link's rate or more, what the first boundary finds is the working set.
    rate = pred.fastest_rate
    ceiling = pred.limits.max_downtime
    at_ceiling = starts_at_ceiling(ceiling, w.memory, rate, bandwidth, w.working_set)
    why = [f"dirties {'at least ' if pred.rate_at_least else ''}"
           f"{human_bytes(w.dirty_rate)}/s at a link of {human_bytes(bandwidth)}/s"]
    knobs: dict[str, Any] = {"prior_dirty_rate": w.dirty_rate,
                             "prior_working_set": w.working_set}
    if at_ceiling:
        knobs["initial_downtime_ms"] = max(1, round(ceiling * 1000))
    # auto-converge's throttle rises a step per sync: its stall needs the whole window
    throttled = pred.limits.permit_auto_converge and not pred.limits.permit_post_copy
    if pre.ending != SWITCHOVER and not throttled:
        why.append(pre.reason)
        knobs.update(stall_window_passes=PRIOR_STALL_PASSES, stall_window_seconds=0.0)
    return AdaptiveTuning(prior="predicted before the start: " + "; ".join(why), **knobs)


def refusal(conf: Any, pred: Prediction | None) -> str | None:
    """Why ``live_migration_refuse_predicted_failure`` refuses this migration, or None."""
    if pred is None or not conf.libvirt.live_migration_refuse_predicted_failure:
        return None
    if pred.configured.completes:
        return None
    helps = "; ".join(r.text for r in pred.remedies)
    return (f"predicted not to complete under these options: {pred.summary()}"
            + (f"; what would help: {helps}" if helps else "")
            + " (live_migration_refuse_predicted_failure = True)")
