"""What the job stats say at pre-copy pass boundaries: link rate, dirty set, stall.

Within a pass ``data_remaining`` is a saw-tooth (it falls to almost nothing
and jumps back at the next bitmap sync), so comparing it mid-pass gave Nova's
old progress timeout and automatic post-copy their false aborts.  A
:class:`PassObserver` therefore judges only at boundaries (``memory_iteration``
went up): it estimates the dirty set the next switchover has to send and the
link rate (EWMA of ``memory_bps``), and calls a **stall** when the best dirty
set of a window of passes *and* seconds is not a few per cent below the best
before it (KubeVirt's stall detector).  Pure: samples and time in, estimates
out.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from migrator.constants import QEMU_DEFAULT_DOWNTIME_MS
from migrator.jobstats import JobSample
from migrator.policy import Note
from migrator.units import mib_text, secs_text

# EWMA weight of the newest memory_bps sample (KubeVirt's stall detector): at a
# 0.5 s poll the estimate follows a changed link within ~2 s but one odd
# 100 ms bandwidth reading from QEMU moves it by less than half.
RATE_ALPHA = 0.4
# Stall: the best dirty set of the window is not this much below the best
# before the window (KubeVirt: 4 %).
STALL_MARGIN = 0.04
# The window covers at least this many passes *and* this many seconds.  The
# passes protect slow links (one pass of a 64 GiB guest at 1 Gbit/s takes
# ~9 min; 4 % over 6 passes is < 0.7 % per pass, which would need hundreds of
# passes to converge); the seconds protect fast links, where a pass takes a
# fraction of a second and a burst of guest writes must not look like a stall.
STALL_WINDOW_PASSES = 6
STALL_WINDOW_SECONDS = 40.0


@dataclass(frozen=True)
class PassEstimate:
    """What was concluded at one pass boundary (bytes, bytes/s, ms)."""

    at: float  # seconds since the monitor started
    passes: int  # boundaries since the baseline (libvirt's counter minus its first value)
    iteration: int  # libvirt's memory_iteration
    dirty_set: int  # bytes the next switchover would have to send
    rate: float  # EWMA of memory_bps
    need_ms: float | None  # dirty_set / rate; None while the rate is unknown
    dirty_rate: int  # guest dirty rate, bytes/s
    throttle: int  # auto-converge CPU throttle, %
    previous_dirty_set: int | None = None  # the boundary before's (pass 0: all of RAM)
    synced_at: float = 0.0  # when QEMU synced the bitmap (the sample comes up to a poll later)
    pass_seconds: float = 0.0  # from the sync before to this one (0: unknown)

    @property
    def writes(self) -> float:
        """Bytes/s the guest's writes add to the dirty set: the dirty rate the job reports,
        or before QEMU's first measurement (0) how fast the dirty set grew over the pass
        that ended here."""
        if self.dirty_rate > 0:
            return float(self.dirty_rate)
        return self.dirty_set / self.pass_seconds if self.pass_seconds > 0 else 0.0


class PassObserver:
    """Rate, pass boundaries and the stall window of one migration."""

    def __init__(
        self,
        notes: list[Note],
        *,
        rate_alpha: float = RATE_ALPHA,
        stall_margin: float = STALL_MARGIN,
        window_passes: int = STALL_WINDOW_PASSES,
        window_seconds: float = STALL_WINDOW_SECONDS,
    ) -> None:
        self.rate_alpha = rate_alpha
        self.stall_margin = stall_margin
        self.window_passes = window_passes
        self.window_seconds = window_seconds
        self.rate: float | None = None  # EWMA of memory_bps
        self.last: PassEstimate | None = None  # the latest boundary's estimate
        self.stalled = False  # the latest boundary was judged a stall
        self.window: deque[PassEstimate] = deque()
        self.best_before: int | None = None  # best dirty set of the boundaries left behind
        self.left_window: PassEstimate | None = None  # newest boundary that left the window
        self._notes = notes
        self._prev: JobSample | None = None
        self._epoch: int | None = None  # the max downtime the window's passes ran at
        self._baseline: int | None = None
        self._iteration = 0
        self._previous_dirty_set: int | None = None

    @property
    def counting(self) -> bool:
        """The job reports a pass counter (jobStats; not the legacy jobInfo)."""
        return self._baseline is not None

    def window_best(self) -> int:
        """The smallest dirty set in the window (call only after a boundary)."""
        return min(x.dirty_set for x in self.window)

    def observe(self, s: JobSample, now: float, max_downtime_ms: int | None = None
                ) -> PassEstimate | None:
        """Update the rate; at a pass boundary judge the stall and return its estimate.

        ``max_downtime_ms`` is the max downtime in force: when it changes, QEMU
        syncs at another threshold (a larger one: sooner, so each pass finds
        fewer new dirty pages), and the passes before are not compared with
        the passes after; the window starts again.
        """
        prev, self._prev = self._prev, s
        self._update_rate(s)
        if max_downtime_ms != self._epoch:
            self._epoch = max_downtime_ms
            self._forget_window()
        it = s.memory_iteration
        if it <= 0:
            return None
        if self._previous_dirty_set is None and s.memory_total > 0:
            self._previous_dirty_set = s.memory_total  # pass 0 sends all of RAM
        if self._baseline is None or it < self._iteration:
            # libvirt's counter can include a cancelled migration's passes: the
            # first value seen is the baseline, never a boundary.
            if self._baseline is not None:
                self._notes.append(Note(
                    now, f"pass counter went back from {self._iteration} to {it}; new baseline"
                ))
                self._forget_passes()
            self._baseline = it
            self._iteration = it
            return None
        if it == self._iteration:
            return None
        crossed = it - self._iteration
        self._iteration = it
        dirty_set = max(self._dirty_set(s, prev, crossed), self._not_stopped_at(s, max_downtime_ms))
        rate = self.rate or 0.0
        synced_at = now - max(dirty_set - s.memory_remaining, 0) / rate if rate > 0 else now
        if self.last is not None:
            pass_seconds = synced_at - self.last.synced_at
        else:  # pass 0 sent all of RAM
            pass_seconds = (self._previous_dirty_set or 0) / rate if rate > 0 else 0.0
        record = PassEstimate(
            at=now,
            passes=it - self._baseline,
            iteration=it,
            dirty_set=dirty_set,
            rate=rate,
            need_ms=dirty_set / rate * 1000.0 if rate > 0 else None,
            dirty_rate=s.dirty_rate_bytes,
            throttle=s.auto_converge_throttle,
            previous_dirty_set=self._previous_dirty_set,
            synced_at=synced_at,
            pass_seconds=max(pass_seconds, 0.0) / max(crossed, 1),
        )
        self._previous_dirty_set = dirty_set
        self.last = record
        self._judge(record)
        return record

    def stall_facts(self, r: PassEstimate) -> str:
        """The stall in words, for a reason."""
        since = self.left_window
        passes = r.passes - since.passes if since else r.passes
        secs = r.at - since.at if since else r.at
        return (
            f"stalled for {passes} passes / {secs_text(secs)} s: best dirty set "
            f"{mib_text(self.window_best())} MiB, not {self.stall_margin * 100:g} % below the "
            f"{mib_text(self.best_before or 0)} MiB before"
        )

    def _update_rate(self, s: JobSample) -> None:
        ram_started = s.memory_processed > 0 or s.memory_iteration > 0
        if s.memory_bps > 0 or ram_started:
            # A 0 once RAM is moving is a real reading (link down), not a gap.
            bps = float(s.memory_bps)
            a = self.rate_alpha
            self.rate = bps if self.rate is None else a * bps + (1 - a) * self.rate

    def _forget_passes(self) -> None:
        """A new counter: the passes seen cannot be compared with its passes."""
        self._previous_dirty_set = None
        self._forget_window()

    def _forget_window(self) -> None:
        self.window.clear()
        self.best_before = None
        self.left_window = None
        self.stalled = False

    def _not_stopped_at(self, s: JobSample, max_downtime_ms: int | None) -> int:
        """The least a sync found when QEMU did not stop the guest there: more than the
        link's bytes in the max downtime in force (QEMU's switchover rule).

        The sent bytes miss what a pass leaves unsent at its sync (up to that
        threshold: QEMU syncs as soon as the rest fits), so at a large max
        downtime they read a 512 MiB hot working set as 225-374 MiB, a
        switchover that would fit, and the max downtime stayed too low.
        """
        downtime = QEMU_DEFAULT_DOWNTIME_MS if max_downtime_ms is None else max_downtime_ms
        floor = (self.rate or 0.0) * downtime / 1000.0
        return int(min(floor, s.memory_total) if s.memory_total > 0 else floor)

    @staticmethod
    def _dirty_set(s: JobSample, prev: JobSample | None, crossed: int) -> int:
        """Bytes QEMU found dirty at the boundary (the pass's peak of the saw-tooth).

        The sample comes up to a poll interval after the boundary, so part of
        the pass is already sent; ``memory_processed`` says how much: since the
        previous sample the link sent the rest of that pass, ``crossed - 1``
        whole passes and the sent part of this one.  With several passes per
        poll this averages them (exact when they are alike, else on the high
        side: a higher, still capped, max downtime).  Zero pages and
        compression make processed bytes smaller than page bytes, so the
        remaining bytes are a floor.
        """
        remaining = s.memory_remaining
        if prev is None or s.memory_processed <= 0 or s.memory_processed < prev.memory_processed:
            return remaining
        sent = s.memory_processed - prev.memory_processed
        estimate = (sent - prev.memory_remaining + remaining) / crossed
        dirty_set = max(float(remaining), estimate)
        if s.memory_total > 0:
            dirty_set = min(dirty_set, float(max(s.memory_total, remaining)))
        return int(dirty_set)

    def _judge(self, record: PassEstimate) -> None:
        """Slide the window; stalled = its best is not ``stall_margin`` below the best before."""
        window = self.window
        window.append(record)
        while window[0] is not record:
            old = window[0]
            recent_pass = record.passes - old.passes < self.window_passes
            recent_time = record.at - old.at <= self.window_seconds
            if recent_pass or recent_time:
                break
            window.popleft()
            self.left_window = old
            if self.best_before is None or old.dirty_set < self.best_before:
                self.best_before = old.dirty_set
        best = self.window_best()
        self.stalled = (
            self.best_before is not None
            and self.best_before > 0
            and best >= (1 - self.stall_margin) * self.best_before
        )
