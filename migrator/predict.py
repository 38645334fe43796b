"""Predict a live migration before (or while) it runs: pure, data in and data out.

The model is QEMU's, pass by pass (the simulator in :mod:`migrator.testing`
is checked against real QEMU by the fidelity benchmark, and this model against
the simulator by the unit tests):

* pass 0 sends all of memory at the pre-copy ``bandwidth``; the guest writes
  ``dirty_rate`` bytes/s meanwhile, into its ``working_set`` (all of memory
  when not known), so at most the working set is dirty again;
* QEMU compares the bytes still to send with ``threshold = bandwidth x max
  downtime`` every 100 ms and syncs the dirty bitmap as soon as they fit: the
  synced set (unsent pages plus pages written since the last sync) is the next
  pass; when it fits the threshold itself the guest stops and the set is sent
  at the line rate (the downtime);
* so the bytes left to send fall at ``bandwidth - dirty_rate`` and pre-copy
  ends once they fit the threshold: ``(memory - threshold) / (bandwidth -
  dirty_rate)`` (with a small threshold, the classic geometric series
  ``sum(memory * ratio**i / bandwidth)``); a guest that dirties as fast as the
  link carries, or whose working set does not fit the threshold, never ends;
* auto-converge throttles the guest's CPU by 20 %, then 10 % more, each time
  it dirtied more than half of what was sent in two periods of one second;
* post-copy switches after the first pass: the guest then runs on the
  destination while the pages still on the source are pushed at the line rate.

:func:`predict` gives the three strategies (pre-copy at the configured max
downtime, with auto-converge, with post-copy) for a guest and what would make
it complete.  :func:`precopy_seconds` and :func:`postcopy_seconds` answer from
the state of a running migration (what is left, the dirty rate and the link
rate at a pass boundary), for a policy or a progress ETA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from migrator.precopy import PreCopy, Run
from migrator.units import human_bytes, human_seconds

PRECOPY = "pre-copy"
AUTO_CONVERGE = "auto-converge"
POST_COPY = "post-copy"
STRATEGIES = (PRECOPY, AUTO_CONVERGE, POST_COPY)

# How a strategy ends.
SWITCHOVER = "switchover"  # pre-copy stopped the guest and copied the rest
POST_COPY_DONE = "post-copy"  # the guest ran on the destination while pages were pushed
TIMEOUT_ABORT = "timeout-abort"  # the completion timeout aborted it
TIMEOUT_PAUSE = "timeout-pause"  # the timeout paused the guest to finish (force_complete)
TIMEOUT_POST_COPY = "timeout-post-copy"  # the timeout switched to post-copy (force_complete)
NEVER = "never"  # does not finish without a change (no timeout to end it)

PAGE_SIZE = 4096


@dataclass(frozen=True)
class Workload:
    """The guest: bytes of memory to send, bytes/s it writes, where the writes land."""

    memory: float
    dirty_rate: float
    working_set: float | None = None  # bytes; None: anywhere in memory
    disk: float = 0.0  # bytes of disks copied first (block migration)

    def __post_init__(self) -> None:
        _check("memory", self.memory, positive=True)
        _check("dirty rate", self.dirty_rate)
        _check("disk", self.disk)
        if self.working_set is not None:
            _check("working set", self.working_set, positive=True)
            if self.working_set > self.memory:
                raise ValueError(f"the working set ({human_bytes(self.working_set)}) cannot be "
                                 f"larger than memory ({human_bytes(self.memory)})")

    @property
    def hot(self) -> float:
        return self.memory if self.working_set is None else self.working_set


@dataclass(frozen=True)
class Link:
    """Rates in bytes/s: pre-copy's (the cap, or the link) and the wire's."""

    bandwidth: float
    line_rate: float | None = None  # stop-and-copy and post-copy; None: ``bandwidth``
    postcopy_bandwidth: float = 0.0  # post-copy cap; 0: the line rate

    def __post_init__(self) -> None:
        _check("bandwidth", self.bandwidth, positive=True)
        if self.line_rate is not None:
            _check("line rate", self.line_rate, positive=True)
        _check("post-copy bandwidth", self.postcopy_bandwidth)

    @property
    def line(self) -> float:
        return self.line_rate or self.bandwidth

    @property
    def postcopy(self) -> float:
        return min(self.postcopy_bandwidth or self.line, self.line)


@dataclass(frozen=True)
class Limits:
    """The options that shape a migration, in seconds (Nova's ``[libvirt]`` meaning).

    ``schedule`` is the max downtime over time, ``(seconds since the start,
    seconds)`` pairs (Nova's ramp, :func:`migrator.policy.downtime_steps`);
    empty means ``max_downtime`` from the start (what the adaptive policy aims
    at).  ``start_seconds`` / ``finish_seconds`` are the fixed costs before RAM
    moves and after the switchover.
    """

    max_downtime: float = 0.5
    schedule: tuple[tuple[float, float], ...] = ()
    completion_timeout: float = 0.0  # 0: none
    timeout_action: str = "abort"  # or "force_complete"
    permit_post_copy: bool = False
    permit_auto_converge: bool = False
    # The policy switches to post-copy as soon as pre-copy cannot finish (adaptive);
    # Nova's steps only at the completion timeout with timeout_action force_complete.
    post_copy_early: bool = True
    throttle_initial: int = 20
    throttle_increment: int = 10
    start_seconds: float = 1.1
    finish_seconds: float = 0.5
    switchover_seconds: float = 0.0  # added to every downtime (device state)

    def __post_init__(self) -> None:
        _check("max downtime", self.max_downtime, positive=True)
        _check("completion timeout", self.completion_timeout)
        if self.timeout_action not in ("abort", "force_complete"):
            raise ValueError(f"timeout action must be 'abort' or 'force_complete', "
                             f"not {self.timeout_action!r}")
        object.__setattr__(self, "schedule", tuple(sorted(
            (float(at), float(value)) for at, value in self.schedule)))

    def downtime_at(self, at: float) -> float:
        """The max downtime in force ``at`` seconds after the start."""
        value = self.schedule[0][1] if self.schedule else self.max_downtime
        for when, v in self.schedule:
            if when <= at:
                value = v
        return value

    def next_change(self, at: float) -> float:
        """The first time after ``at`` at which the max downtime changes (inf: never)."""
        return next((when for when, _ in self.schedule if when > at + 1e-9), math.inf)

    def deadline(self) -> float:
        """Seconds after the start at which the completion timeout acts (inf: never)."""
        return self.completion_timeout or math.inf


def _check(what: str, value: float, positive: bool = False) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0 or (
            positive and value == 0):
        raise ValueError(f"{what} must be a finite number {'above' if positive else 'of at least'}"
                         f" 0, not {value!r}")


@dataclass(frozen=True)
class Estimate:
    """What one strategy would do: times in seconds from the start, bytes, percent."""

    strategy: str
    permitted: bool  # the options allow it (pre-copy always)
    completes: bool
    ending: str  # SWITCHOVER, POST_COPY_DONE, TIMEOUT_*, NEVER
    total_seconds: float  # to the end, or to the timeout; inf: never
    passes: int  # libvirt's memory_iteration at the end
    downtime_seconds: float | None  # the guest paused (None: it does not complete)
    precopy_seconds: float  # RAM pre-copy, up to the switchover or the end
    postcopy_seconds: float = 0.0  # the guest runs on the destination, pages still arriving
    postcopy_page_requests: int = 0  # guest writes that wait for a page from the source
    throttle: int = 0  # auto-converge's CPU throttle at the end, %
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        if not math.isfinite(self.total_seconds):
            out["total_seconds"] = None
        return out


@dataclass(frozen=True)
class Remedy:
    """An option that would make a migration complete, and how it would then go."""

    option: str
    value: Any
    text: str
    total_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"option": self.option, "value": self.value, "text": self.text,
                "total_seconds": self.total_seconds}


@dataclass(frozen=True)
class Prediction:
    """Every strategy for one guest, the one the options choose, and what would help."""

    workload: Workload
    link: Link
    limits: Limits
    estimates: dict[str, Estimate]
    remedies: tuple[Remedy, ...] = field(default=())
    caveat: str = ""  # what the inputs leave open (e.g. a dirty rate known only from below)
    # The measured rate is a floor: the writes covered the whole working set in a window.
    rate_at_least: bool = False

    @property
    def fastest_rate(self) -> float:
        """The fastest the guest may write (bytes/s): the measured rate, or, when that is
        a floor that covered the whole working set, at least the link's rate (any rate
        above it rewrites the same working set between two syncs)."""
        rate = self.workload.dirty_rate
        return max(rate, self.link.bandwidth) if self.rate_at_least else rate

    @property
    def configured(self) -> Estimate:
        """What the options do.  As the flag rules decide: post-copy wins over auto-converge;
        auto-converge, when on, throttles from the start; post-copy is switched to when
        pre-copy cannot finish and the policy does so early."""
        lim, pre = self.limits, self.estimates[PRECOPY]
        if lim.permit_auto_converge and not lim.permit_post_copy:
            return self.estimates[AUTO_CONVERGE]
        if pre.ending == SWITCHOVER or not (lim.permit_post_copy and lim.post_copy_early):
            return pre
        return self.estimates[POST_COPY]

    def summary(self) -> str:
        """One line an operator reads: the verdict and the way out."""
        pre, conf = self.estimates[PRECOPY], self.configured
        text = pre.reason
        if conf is not pre:
            text += f"; with {conf.strategy} (permitted) it " + (
                f"completes in ~{human_seconds(conf.total_seconds)}" if conf.completes
                else "does not complete either")
        elif not pre.completes:
            ways = [f"{e.strategy} would take ~{human_seconds(e.total_seconds)}"
                    for e in self.estimates.values() if e.completes and e is not pre]
            text += "; " + ("; ".join(ways) if ways else "no strategy would finish it")
        return f"{text} ({self.caveat})" if self.caveat else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": _fields(self.workload), "link": _fields(self.link),
            "limits": _fields(self.limits), "configured": self.configured.strategy,
            "summary": self.summary(), "caveat": self.caveat,
            "estimates": {k: e.to_dict() for k, e in self.estimates.items()},
            "remedies": [r.to_dict() for r in self.remedies],
        }


def _fields(obj: Any) -> dict[str, Any]:
    out = {k: getattr(obj, k) for k in obj.__dataclass_fields__}
    return {k: list(map(list, v)) if k == "schedule" else v for k, v in out.items()}


# -- from the state of a running migration ---------------------------------------------


def precopy_seconds(remaining: float, dirty_rate: float, bandwidth: float,
                    max_downtime: float, working_set: float | None = None) -> float:
    """Seconds from a pass boundary to the switchover at ``max_downtime`` (s); inf: never.

    ``remaining`` is what the next pass must send (the dirty set), the rates are
    bytes/s as the job stats report them (``memory_dirty_rate`` x page size,
    ``memory_bps``).
    """
    if remaining <= 0:
        return 0.0
    run = PreCopy(remaining, dirty_rate, bandwidth, max_downtime, working_set).run()
    return run.seconds if run.ended == "switch" else math.inf


def postcopy_seconds(remaining: float, bandwidth: float) -> float:
    """Seconds to push ``remaining`` bytes after a switch to post-copy (the guest then runs
    on the destination; each page it touches first is fetched on demand)."""
    if bandwidth <= 0:
        raise ValueError("post-copy needs a bandwidth above 0")
    return max(remaining, 0.0) / bandwidth


# -- the three strategies --------------------------------------------------------------


def _precopy(w: Workload, link: Link, limits: Limits, offset: float,
             auto_converge: bool = False) -> PreCopy:
    """The pass model for ``w`` from the moment RAM starts moving (``offset`` s in)."""
    return PreCopy(
        w.memory, w.dirty_rate, link.bandwidth, lambda t: limits.downtime_at(offset + t),
        w.working_set, next_change=lambda t: limits.next_change(offset + t) - offset,
        deadline=limits.deadline() - offset,
        throttle_steps=(limits.throttle_initial, limits.throttle_increment)
        if auto_converge else None)


def _rate(value: float) -> str:
    return human_bytes(value) + "/s"


def _page_requests(w: Workload, pushed: float, rate: float) -> int:
    """Guest writes that find their page still on the source: writes x remaining / memory,
    integrated while the remaining set falls linearly to 0."""
    return int(w.dirty_rate / PAGE_SIZE * pushed * pushed / (2 * rate * w.memory))


def _precopy_estimate(name: str, w: Workload, link: Link, limits: Limits,
                      permitted: bool) -> Estimate:
    offset = limits.start_seconds + w.disk / link.bandwidth
    flow = _precopy(w, link, limits, offset, name == AUTO_CONVERGE)
    run = flow.run()
    base = dict(strategy=name, permitted=permitted, precopy_seconds=run.seconds,
                throttle=run.throttle)
    if run.ended == "switch":
        downtime = run.final_set / link.line + limits.switchover_seconds
        total = offset + run.seconds + downtime + limits.finish_seconds
        return Estimate(**base, completes=True, ending=SWITCHOVER, total_seconds=total,
                        passes=run.syncs + 2, downtime_seconds=downtime,
                        reason=_done_text(name, total, run.syncs + 2, downtime, run.throttle))
    why = _stuck_text(w, link, limits, run, flow)
    if run.ended == "stuck" or not limits.completion_timeout:
        return Estimate(**base, completes=False, ending=NEVER, total_seconds=math.inf,
                        passes=run.syncs + 1, downtime_seconds=None, reason=why)
    return _at_timeout(base, w, link, limits, run, why)


def _at_timeout(base: dict[str, Any], w: Workload, link: Link, limits: Limits, run: Run,
                why: str) -> Estimate:
    """Nova's completion timeout ends it: abort, or force it through (post-copy or pause)."""
    timeout = limits.completion_timeout
    left = run.final_set
    cut = f"{why}; the completion timeout ({human_seconds(timeout)}) "
    if limits.timeout_action == "abort":
        return Estimate(**base, completes=False, ending=TIMEOUT_ABORT, total_seconds=timeout,
                        passes=run.syncs + 1, downtime_seconds=None, reason=cut + "aborts it")
    if limits.permit_post_copy:
        push = left / link.postcopy
        return Estimate(**base, completes=True, ending=TIMEOUT_POST_COPY,
                        total_seconds=timeout + push + limits.finish_seconds,
                        passes=run.syncs + 2, downtime_seconds=limits.switchover_seconds,
                        postcopy_seconds=push,
                        postcopy_page_requests=_page_requests(w, left, link.postcopy),
                        reason=cut + f"switches it to post-copy, {human_seconds(push)} more")
    # Paused: QEMU goes on at the pre-copy bandwidth until the set fits, then the final copy.
    threshold = link.bandwidth * limits.downtime_at(timeout)
    paused = max(left - threshold, 0.0) / link.bandwidth + min(left, threshold) / link.line
    paused += limits.switchover_seconds
    return Estimate(**base, completes=True, ending=TIMEOUT_PAUSE,
                    total_seconds=timeout + paused + limits.finish_seconds,
                    passes=run.syncs + 2, downtime_seconds=paused,
                    reason=cut + f"pauses the guest for ~{human_seconds(paused)} to finish it")


def _done_text(name: str, total: float, passes: int, downtime: float, throttle: int) -> str:
    text = (f"{name} completes in ~{human_seconds(total)}: {passes} passes, the guest pauses "
            f"~{downtime * 1000:.0f} ms at the switchover")
    if name == AUTO_CONVERGE and throttle:
        text += f", its CPU throttled to {throttle} % by then"
    return text


def _stuck_text(w: Workload, link: Link, limits: Limits, run: Run, flow: PreCopy) -> str:
    """Why pre-copy does not finish, in the numbers that decide it."""
    dirties = f"it dirties {_rate(flow.rate)}"
    if run.throttle:
        dirties += f" with its CPU throttled to {run.throttle} %"
    carries = f"the link carries {_rate(link.bandwidth)}"
    if not run.stalled and flow.rate < link.bandwidth:
        return (f"{dirties}, {carries}: pre-copy still has {human_bytes(run.final_set)} to "
                f"send after {human_seconds(run.seconds)}")
    parts = [f"{dirties}, {carries}"] if flow.rate >= link.bandwidth else []
    fits = (f"{run.final_set / link.bandwidth * 1000:.0f} ms at {_rate(link.bandwidth)}, more "
            f"than the {flow.threshold() / link.bandwidth * 1000:.0f} ms max downtime")
    if w.working_set and run.final_set >= w.working_set * 0.99:
        parts.append(f"its working set of {human_bytes(w.working_set)} is dirty again after "
                     f"every pass ({fits})")
    elif not parts:
        parts.append(f"{dirties}; each pass leaves ~{human_bytes(run.final_set)} ({fits})")
    return "; ".join(parts) + ": pre-copy cannot finish"


def _postcopy_estimate(w: Workload, link: Link, limits: Limits) -> Estimate:
    """One pre-copy pass, then post-copy (what a policy that switches early does)."""
    offset = limits.start_seconds + w.disk / link.bandwidth
    run = _precopy(w, link, limits, offset).run(first_only=True)
    base = dict(strategy=POST_COPY, permitted=limits.permit_post_copy,
                precopy_seconds=run.seconds)
    if run.ended == "switch":  # the first pass already fits: no post-copy needed
        downtime = run.final_set / link.line + limits.switchover_seconds
        total = offset + run.seconds + downtime + limits.finish_seconds
        return Estimate(**base, completes=True, ending=SWITCHOVER, total_seconds=total,
                        passes=run.syncs + 2, downtime_seconds=downtime,
                        reason=_done_text(PRECOPY, total, run.syncs + 2, downtime, 0))
    push = postcopy_seconds(run.final_set, link.postcopy)
    total = offset + run.seconds + push + limits.finish_seconds
    requests = _page_requests(w, run.final_set, link.postcopy)
    return Estimate(**base, completes=True, ending=POST_COPY_DONE, total_seconds=total,
                    passes=run.syncs + 2, downtime_seconds=limits.switchover_seconds,
                    postcopy_seconds=push, postcopy_page_requests=requests,
                    reason=(f"post-copy completes in ~{human_seconds(total)}: one pass of "
                            f"{human_seconds(run.seconds)}, then {human_seconds(push)} in "
                            f"post-copy pushing {human_bytes(run.final_set)} (the guest runs "
                            f"on the destination; ~{requests} of its writes wait for a page)"))


def estimate(strategy: str, workload: Workload, link: Link, limits: Limits) -> Estimate:
    """One strategy's :class:`Estimate` (``strategy`` one of :data:`STRATEGIES`)."""
    if strategy == PRECOPY:
        return _precopy_estimate(PRECOPY, workload, link, limits, True)
    if strategy == AUTO_CONVERGE:
        return _precopy_estimate(AUTO_CONVERGE, workload, link, limits,
                                 limits.permit_auto_converge)
    if strategy == POST_COPY:
        return _postcopy_estimate(workload, link, limits)
    raise ValueError(f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}")


def predict(workload: Workload, link: Link, limits: Limits | None = None,
            remedies: bool = True) -> Prediction:
    """Every strategy for ``workload`` on ``link`` under ``limits``, and (``remedies``)
    what would make pre-copy complete when it does not."""
    limits = limits or Limits()
    estimates = {name: estimate(name, workload, link, limits) for name in STRATEGIES}
    helps = () if not remedies or estimates[PRECOPY].ending == SWITCHOVER else tuple(
        _remedies(workload, link, limits, estimates))
    return Prediction(workload, link, limits, estimates, helps)


# -- what would help -------------------------------------------------------------------


def _converges(w: Workload, link: Link, limits: Limits) -> bool:
    return _precopy_estimate(PRECOPY, w, link, limits, True).ending == SWITCHOVER


def least(ok: Any, low: float, high: float, rounds: int = 40) -> float | None:
    """The smallest value in [low, high] for which ``ok`` holds (monotone), or None."""
    if not ok(high):
        return None
    for _ in range(rounds):
        mid = math.sqrt(low * high)
        low, high = (low, mid) if ok(mid) else (mid, high)
        if high / low < 1.01:
            break
    return high


def _remedies(w: Workload, link: Link, limits: Limits,
              estimates: dict[str, Estimate]) -> list[Remedy]:
    out = []
    for name, option in ((POST_COPY, "live_migration_permit_post_copy"),
                         (AUTO_CONVERGE, "live_migration_permit_auto_converge")):
        est = estimates[name]
        if not est.permitted and est.completes:
            out.append(Remedy(option, True, f"{option} = True: {est.reason}", est.total_seconds))
    bandwidth = least(lambda b: _converges(w, replace(link, bandwidth=b,
                                                       line_rate=max(link.line, b)), limits),
                       link.bandwidth, link.bandwidth * 1000)
    if bandwidth is not None:
        mib = math.ceil(bandwidth / 1024**2)
        where = ("live_migration_bandwidth" if bandwidth <= link.line
                 else "a faster migration network")
        out.append(Remedy("live_migration_bandwidth", mib,
                          f"{where}: pre-copy completes at {mib} MiB/s or more"))
    downtime = least(lambda d: _converges(w, link, replace(limits, max_downtime=d, schedule=())),
                      limits.max_downtime, 2000.0)
    if downtime is not None:
        ms = math.ceil(downtime * 1000)
        out.append(Remedy("live_migration_downtime", ms,
                          f"live_migration_downtime = {ms}: pre-copy completes with the guest "
                          f"paused up to {ms} ms at the switchover"))
    return out
