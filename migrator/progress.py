"""Progress reports from job samples: what a compute service shows its users.

Pure, like the policy: samples and times in, :class:`Progress` values out.
The percentage is monotonic and stays below 100 until the job has really
completed (as VDSM does): ``data_remaining`` is a saw-tooth, each pre-copy pass
re-sends pages the guest dirtied, and a progress bar that goes backwards or
shows 100 % for a job that can still fail misleads the operator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from migrator.jobstats import JobSample

# The highest percentage shown before the job has completed.
PERCENT_CAP = 99.9


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def estimate_eta(sample: JobSample) -> float | None:
    """Seconds until the remaining data is sent at the current net rate, or None.

    Net rate = transfer rate - dirty rate; when the guest dirties memory as fast
    as it is sent, pre-copy does not converge and no estimate is honest.  In
    the first iteration libvirt reports no dirty rate, so the estimate is then
    a lower bound.  During a block migration's disk copy ``memory_bps`` is 0 and
    there is no estimate.
    """
    if sample.data_total > 0:
        remaining = sample.data_remaining
    elif sample.memory_total > 0:
        remaining = sample.memory_remaining
    else:
        return None
    if remaining == 0:
        return 0.0
    net = sample.memory_bps - sample.dirty_rate_bytes
    if sample.memory_bps <= 0 or net <= 0:
        return None
    return remaining / net


class ProgressTracker:
    """Turns running samples into reports due every ``monitor_interval`` seconds.

    ``max_downtime`` answers the max downtime applied now (the policy keeps it);
    without it reports carry None (QEMU's default).
    """

    def __init__(
        self, monitor_interval: int, max_downtime: Callable[[], int | None] | None = None
    ) -> None:
        self.monitor_interval = monitor_interval
        self._max_downtime = max_downtime or (lambda: None)
        self._sample: JobSample | None = None
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
        if not sample.is_running or (sample.data_total == 0 and sample.memory_total == 0):
            return None  # not running, or still in setup (libvirt reports all counters 0)
        self._sample = sample
        self._percent = max(self._percent, raw_percent(sample))
        if self._last_report_at is not None and now - self._last_report_at < self.monitor_interval:
            return None
        self._last_report_at = now
        return self._report(sample, now, self._percent, estimate_eta(sample), final=False)

    def final(self, now: float, completed: bool, sample: JobSample | None = None) -> Progress:
        """The last report: 100 % only when the job completed.

        ``sample`` may carry the completed job's stats (its downtime is then the
        actual one); otherwise the last running sample's figures are used, with
        nothing remaining when the job completed.
        """
        base = sample or self._sample or JobSample()
        if not completed:
            return self._report(base, now, self._percent, None, final=True)
        report = self._report(base, now, 100.0, 0.0, final=True)
        return replace(report, data_remaining=0, memory_remaining=0, disk_remaining=0)

    def _report(
        self, s: JobSample, now: float, percent: float, eta: float | None, final: bool
    ) -> Progress:
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
            max_downtime_ms=self._max_downtime(),
            eta_seconds=eta,
            throttle=s.auto_converge_throttle,
            final=final,
        )
