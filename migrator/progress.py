"""Progress reports from job samples: what a compute service shows its users.

Pure, like the policy: samples and times in, :class:`Progress` values out.
The percentage is monotonic and stays below 100 until the job has really
completed (as VDSM does): ``data_remaining`` is a saw-tooth, each pre-copy pass
re-sends pages the guest dirtied, and a progress bar that goes backwards or
shows 100 % for a job that can still fail misleads the operator.

Whether the migration converges, and when it ends, comes from the pre-copy
model of :mod:`migrator.predict` at the current max downtime, never from a
straight line through the remaining bytes: a guest that dirties as fast as
the link carries is said not to converge, instead of showing an ETA of days.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from migrator import predict
from migrator.jobstats import JobSample
from migrator.units import human_bytes, human_seconds

# The highest percentage shown before the job has completed.
PERCENT_CAP = 99.9
# QEMU's max downtime until somebody sets one (its downtime-limit default).
QEMU_DEFAULT_MAX_DOWNTIME_MS = 300
# A reported dirty rate this close to the transfer rate is QEMU's cap, not the guest's rate:
# QEMU counts a page once per pass, so a guest that rewrites all it has every pass shows
# (pages of one pass) / (time of one pass) = the transfer rate, whatever it really writes.
SATURATED = 0.98

WHY_PERCENT = (
    "the percentage is the largest share of the data ever sent and not dirtied again: it "
    "never goes down, although each pass re-sends the pages the guest dirtied (the "
    "remaining bytes show the current pass), and it reaches 100 % only when the migration "
    "has completed"
)


@dataclass(frozen=True)
class Progress:
    """One progress report; byte counts in bytes, rates in bytes/s."""

    elapsed: float  # seconds since the monitor started
    percent: float  # monotonic; < 100 until final(completed=True)
    data_total: int
    data_processed: int
    data_remaining: int
    memory_total: int
    memory_processed: int
    memory_remaining: int
    disk_total: int
    disk_processed: int
    disk_remaining: int
    iteration: int
    dirty_rate_bytes: int
    transfer_rate_bytes: int  # memory_bps
    expected_downtime_ms: int  # libvirt's estimate while running; actual in completed stats
    max_downtime_ms: int | None  # the last max downtime applied (None: QEMU's default)
    eta_seconds: float | None
    throttle: int  # auto-converge CPU throttle, %
    final: bool = False
    converging: bool | None = None  # None: cannot tell yet (setup, first pass, disk copy)
    outlook: str = ""  # why: "first pass", "not converging: dirties ...", ...

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Outlook:
    """Whether a running migration converges, and when it ends (seconds from now)."""

    converging: bool | None
    eta_seconds: float | None
    text: str


def _rate(value: float) -> str:
    return human_bytes(value) + "/s"


def _remaining(sample: JobSample) -> int | None:
    if sample.data_total > 0:
        return sample.data_remaining
    if sample.memory_total > 0:
        return sample.memory_remaining
    return None


def outlook(sample: JobSample, max_downtime_ms: int | None = None, *, post_copy: bool = False,
            elapsed: float = 0.0, deadline: float | None = None,
            sent_this_pass: float = 0.0) -> Outlook:
    """Judge one running sample with the pre-copy model at the max downtime in force.

    The model starts from a bitmap sync; mid-pass, the pages dirtied since the
    last one (``sent_this_pass`` bytes ago, at the dirty rate) are still to
    come on top of what remains.  ``deadline`` (seconds since the start, like
    ``elapsed``) is when the completion timeout acts: a migration the model sees
    ending after it does not converge in time.  In the first pass libvirt has
    not measured the dirty rate yet, so only the end of that pass is known.
    """
    remaining, sent, dirtied = _remaining(sample), sample.memory_bps, sample.dirty_rate_bytes
    if remaining is None:
        return Outlook(None, None, "starting")
    if remaining == 0:
        return Outlook(True, 0.0, "switching over")
    if sent <= 0:
        copying = sample.disk_remaining > 0
        return Outlook(None, None, "copying disks" if copying else "starting")
    if post_copy:
        return Outlook(True, predict.postcopy_seconds(remaining, sent),
                       "post-copy: the guest runs on the destination")
    if sample.memory_iteration <= 1:
        return Outlook(None, remaining / sent, "first pass")
    downtime = (max_downtime_ms or QEMU_DEFAULT_MAX_DOWNTIME_MS) / 1000.0
    if dirtied >= SATURATED * sent:  # QEMU's cap (see SATURATED): no finite answer is honest
        return Outlook(False, None, _not_converging(dirtied, sent, downtime))
    unsynced = dirtied * sent_this_pass / sent  # written since the last sync, not yet counted
    if sample.memory_total:
        unsynced = min(unsynced, max(sample.memory_total - remaining, 0))
    eta = predict.precopy_seconds(remaining + unsynced, dirtied, sent, downtime)
    if not math.isfinite(eta):
        return Outlook(False, None, _not_converging(dirtied, sent, downtime))
    if deadline is not None and elapsed + eta > deadline:
        return Outlook(False, None, f"not converging before the completion timeout (in "
                       f"{human_seconds(max(deadline - elapsed, 0))}): needs "
                       f"~{human_seconds(eta)} at {_rate(dirtied)} dirtied, {_rate(sent)} sent")
    return Outlook(True, eta, "converging")


def _not_converging(dirtied: float, sent: float, downtime: float) -> str:
    if dirtied >= SATURATED * sent:
        return (f"not converging: dirties {_rate(dirtied)} or more, link carries {_rate(sent)} "
                "(QEMU counts a page once per pass, so a guest that rewrites everything "
                "every pass shows the link's rate)")
    return (f"not converging: at {_rate(dirtied)} dirtied and {_rate(sent)} sent the dirty set "
            f"never fits the max downtime of {downtime * 1000:.0f} ms")


def raw_percent(sample: JobSample) -> float:
    """Share of the data already sent, from data_* (RAM + disks) or else memory_*.

    Computed from *remaining* bytes: ``*_processed`` counts re-sent pages and
    passes the total in later iterations.  Capped at :data:`PERCENT_CAP`.
    """
    if sample.data_total > 0:
        total, remaining = sample.data_total, sample.data_remaining
    elif sample.memory_total > 0:
        total, remaining = sample.memory_total, sample.memory_remaining
    else:
        return 0.0
    remaining = min(remaining, total)
    return min(100.0 * (total - remaining) / total, PERCENT_CAP)


class ProgressTracker:
    """Turns running samples into reports due every ``monitor_interval`` seconds.

    The callables answer what the policy knows now: ``max_downtime`` the max
    downtime applied (None: QEMU's default), ``post_copy`` whether the job
    switched to post-copy.  ``deadline`` is when the completion timeout acts
    (seconds since the start), if known.
    """

    def __init__(
        self, monitor_interval: float, max_downtime: Callable[[], int | None] | None = None,
        post_copy: Callable[[], bool] | None = None, deadline: float | None = None,
    ) -> None:
        self.monitor_interval = monitor_interval
        self._max_downtime = max_downtime or (lambda: None)
        self._post_copy = post_copy or (lambda: False)
        self.deadline = deadline
        self._sample: JobSample | None = None
        self._pass = (-1, 0)  # (iteration, remaining at its first sample)
        self._percent = 0.0
        self._last_report_at: float | None = None

    @property
    def percent(self) -> float:
        """The highest percentage seen so far (what the next report shows)."""
        return self._percent

    def update(self, sample: JobSample, now: float) -> Progress | None:
        """Take a sample; return a report on the first running one, then once per interval.

        Every running sample raises the watermark, reported or not, so a short
        peak between two reports is not lost.  Samples of a job that is not
        running (setup, ended) are ignored.
        """
        if not self.observe(sample):
            return None
        if self._last_report_at is not None and now - self._last_report_at < self.monitor_interval:
            return None
        self._last_report_at = now
        return self.report(sample, now)

    def observe(self, sample: JobSample) -> bool:
        """Raise the watermark with a running sample; False for any other (ignored).

        Cheap: no outlook is computed (see :meth:`report`).
        """
        if not sample.is_running or (sample.data_total == 0 and sample.memory_total == 0):
            return False  # not running, or still in setup (libvirt reports all counters 0)
        self._sample = sample
        self._percent = max(self._percent, raw_percent(sample))
        if sample.memory_iteration != self._pass[0]:
            self._pass = (sample.memory_iteration, _remaining(sample) or 0)
        return True

    def report(self, sample: JobSample, now: float) -> Progress:
        """A report on ``sample`` now (the percentage is the watermark, not this sample's)."""
        this_pass = max(self._pass[1] - (_remaining(sample) or 0), 0)
        view = outlook(sample, self._max_downtime(), post_copy=self._post_copy(), elapsed=now,
                       deadline=self.deadline, sent_this_pass=this_pass)
        return self._report(sample, now, self._percent, view, final=False)

    def final(self, now: float, completed: bool, sample: JobSample | None = None) -> Progress:
        """The last report: 100 % only when the job completed.

        ``sample`` may carry the completed job's stats (its downtime is then the
        actual one); otherwise the last running sample's figures are used, with
        nothing remaining when the job completed.
        """
        base = sample or self._sample or JobSample()
        if not completed:
            return self._report(base, now, self._percent, Outlook(None, None, "ended"), True)
        report = self._report(base, now, 100.0, Outlook(True, 0.0, "completed"), True)
        return replace(report, data_remaining=0, memory_remaining=0, disk_remaining=0)

    def _report(self, s: JobSample, now: float, percent: float, view: Outlook,
                final: bool) -> Progress:
        max_downtime = self._max_downtime()
        return Progress(
            elapsed=now,
            percent=percent,
            data_total=s.data_total,
            data_processed=s.data_processed,
            data_remaining=s.data_remaining,
            memory_total=s.memory_total,
            memory_processed=s.memory_processed,
            memory_remaining=s.memory_remaining,
            disk_total=s.disk_total,
            disk_processed=s.disk_processed,
            disk_remaining=s.disk_remaining,
            iteration=s.memory_iteration,
            dirty_rate_bytes=s.dirty_rate_bytes,
            transfer_rate_bytes=s.memory_bps,
            expected_downtime_ms=s.downtime_ms,
            max_downtime_ms=max_downtime,
            eta_seconds=view.eta_seconds,
            throttle=s.auto_converge_throttle,
            final=final,
            converging=view.converging,
            outlook=view.text,
        )
