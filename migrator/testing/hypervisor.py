"""The physics of one live migration, on a virtual clock, with no libvirt in it.

:class:`Transfer` moves a guest's memory (and optionally its disks) over a
link while the guest keeps dirtying memory.  It knows nothing about
connections, domains or errors; :mod:`migrator.testing.migration` drives it
and turns what happens into libvirt states and events.

The model (QEMU 7.2 as libvirt 9.0 drives it):

* **Disks first.**  With block migration libvirt mirrors the disks (NBD) and
  starts the RAM migration once the mirrors are in sync, so disk bytes are
  copied before memory, at the migration bandwidth.  Guest writes during the
  copy are not modelled.
* **Pre-copy passes and QEMU's switchover rule.**  Pass 0 sends all memory.
  QEMU's migration thread compares the bytes still to send with
  ``threshold = bandwidth * downtime_limit`` once per rate-limit window
  (``CHECK_SECONDS``, 100 ms) and whenever it runs out of dirty pages.  When
  they are below the threshold it syncs the dirty bitmap (a new iteration:
  the unsent pages plus every page written since the last sync; at most the
  guest's writable working set ``W`` can be dirty again, writes land in
  ``W`` only), and if that set is still within the threshold it stops the
  guest; otherwise the migration goes on with the synced set.  So a pass
  ends as soon as what is left of it fits in the threshold, not when it is
  empty: with a large threshold the real job counts many short iterations
  (the fidelity benchmark measured this on real QEMU 7.2), and the guest is
  stopped soon after the stop-copy set crosses the threshold.  With a small
  threshold and a constant dirty rate this tends to the classic geometric
  model (pass *i* sends ``V * lambda**i``).  A changed threshold
  (``migrateSetMaxDowntime``, ``migrateSetMaxSpeed``) is compared at once,
  as QEMU does at its next check (libvirt's README: raising max downtime
  "completes in the same iteration").
* **Stop-and-copy** runs at the full link speed: QEMU lifts the rate limit
  for the final phase (libvirt's README measured 47-84 ms downtime after a
  20 MiB/s migration), so the actual downtime is ``remaining / link``; with
  an unlimited ``bandwidth`` that is ``remaining / bandwidth``.
* **Auto-converge** follows ``migration_trigger_throttle``: dirty-rate
  statistics are refreshed at a sync at most once a second; when the bytes
  dirtied in that period exceed 50 % of the bytes sent, a counter goes up,
  and every second time the CPU throttle starts at ``initial`` % or rises by
  ``increment`` % (max 99).  A throttle of p % scales the dirty rate by
  ``1 - p/100``.
* **Post-copy**: the switch syncs the bitmap once more, the guest runs on
  the destination, and the remaining pages are pushed at the post-copy
  bandwidth (unlimited by default).  Every write of the guest to a page not
  yet there is a page request: requests grow at
  ``dirty_rate / page_size * remaining / memory``.

Dirty rates may be numbers or callables of virtual time.  A plain callable is
sampled and held for ``sample_seconds``; a :class:`Piecewise` rate tells the
stepper where it changes, so it is followed exactly.  Everything else is
stepped analytically from one event to the next, so hours of simulated time
cost a handful of steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from migrator.testing.physics import (
    CHECK_SECONDS,
    PAGE_SIZE,
    RATE_PERIOD_SECONDS,
    THROTTLE_INCREMENT,
    THROTTLE_INITIAL,
    THROTTLE_MAX,
    THROTTLE_TRIGGER_PERCENT,
    AutoConverge,
    Completed,
    DirtyRate,
    Happening,
    Iteration,
    Phase,
    Piecewise,
    Snapshot,
    Switchover,
    ThrottleChanged,
    rate_at,
)

_EPS_BYTES = 1e-3

# The physics' vocabulary lives in migrator.testing.physics; importable from here too.
__all__ = [
    "PAGE_SIZE",
    "THROTTLE_INITIAL",
    "THROTTLE_INCREMENT",
    "THROTTLE_MAX",
    "THROTTLE_TRIGGER_PERCENT",
    "RATE_PERIOD_SECONDS",
    "CHECK_SECONDS",
    "DirtyRate",
    "Piecewise",
    "Phase",
    "Iteration",
    "ThrottleChanged",
    "Switchover",
    "Completed",
    "Happening",
    "AutoConverge",
    "Snapshot",
    "rate_at",
    "Transfer",
]

@dataclass
class _Period:
    """Bookkeeping of QEMU's once-a-second dirty-rate statistics."""

    start: float
    processed: float
    dirtied: float = 0.0
    high_count: int = 0



@dataclass
class Transfer:
    """One migration's data movement.  Times are virtual seconds, sizes bytes.

    The owner calls :meth:`advance` with increasing times and reads
    :meth:`snapshot`; the setters change the environment at the current time.
    """

    start: float
    memory: float
    working_set: float
    dirty_rate: DirtyRate
    bandwidth: float  # pre-copy rate limit, bytes/s (already capped at the link)
    link_rate: float  # bytes/s; the stop-and-copy phase runs at this rate
    downtime_limit: float  # seconds
    disk_bytes: float = 0.0
    postcopy_bandwidth: float = 0.0  # bytes/s, 0 = link speed
    auto_converge: AutoConverge | None = None
    page_size: int = PAGE_SIZE
    sample_seconds: float = 0.5
    switchover_overhead: float = 0.0  # seconds added to every downtime

    t: float = field(init=False)
    phase: Phase = field(init=False)
    guest_running: bool = field(init=False, default=True)
    postcopy_paused: bool = field(init=False, default=False)
    iteration: int = field(init=False, default=0)
    throttle: int = field(init=False, default=0)
    dirty_pages_rate: float = field(init=False, default=0.0)
    processed: float = field(init=False, default=0.0)
    disk_remaining: float = field(init=False)
    pending: float = field(init=False, default=0.0)
    dirty: float = field(init=False, default=0.0)
    postcopy_requests: float = field(init=False, default=0.0)
    downtime: float | None = field(init=False, default=None)
    # bytes each pre-copy pass sent; the stop-copy set is appended last
    passes: list[float] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if self.memory <= 0 or self.bandwidth <= 0 or self.link_rate <= 0:
            raise ValueError("memory, bandwidth and link_rate must be positive")
        self.working_set = min(max(self.working_set, 0.0), self.memory)
        self.t = self.start
        self.disk_remaining = float(self.disk_bytes)
        self._hot = 1.0  # fraction of the pending pages inside the working set
        self._pass_sent = 0.0
        self._period: _Period | None = None
        self._threshold_changed = False
        self._next_check = self.t
        self._postcopy_requested = False
        self._stop_bytes = 0.0
        self._stop_start = 0.0
        self._stop_end = 0.0
        # happenings at the start time, handed out by the first advance()
        self._queued: list[Happening] = []
        if self.disk_remaining > 0:
            self.phase = Phase.DISK
        else:
            self.phase = Phase.PRECOPY
            self._begin_precopy(self._queued)

    # -- environment changes (at the current time) -------------------------

    def set_bandwidth(self, bandwidth: float) -> None:
        self.bandwidth = bandwidth
        self._threshold_changed = True

    def set_downtime_limit(self, seconds: float) -> None:
        self.downtime_limit = seconds
        self._threshold_changed = True

    def set_postcopy_bandwidth(self, bandwidth: float) -> None:
        self.postcopy_bandwidth = bandwidth

    def set_guest_running(self, running: bool) -> None:
        self.guest_running = running

    def request_postcopy(self) -> None:
        """migrate-start-postcopy: switch at the next check (immediately)."""
        self._postcopy_requested = True

    def pause_postcopy(self) -> None:
        """The post-copy stream broke (link failure or migrate-pause)."""
        self.postcopy_paused = True

    def resume_postcopy(self) -> None:
        self.postcopy_paused = False

    # -- derived values ----------------------------------------------------

    @property
    def threshold(self) -> float:
        return self.bandwidth * self.downtime_limit

    @property
    def finished(self) -> bool:
        return self.phase is Phase.DONE

    def _dirty_rate(self, t: float) -> float:
        """Bytes/s the guest writes on the source (0 while paused, throttled)."""
        if not self.guest_running:
            return 0.0
        return rate_at(self.dirty_rate, t) * (1.0 - self.throttle / 100.0)

    def _hold_until(self, t: float) -> float:
        """How long the current dirty-rate sample may be held constant."""
        rate = self.dirty_rate
        if not callable(rate):
            return math.inf
        nxt = getattr(rate, "next_change", None)
        if nxt is not None:
            return nxt(t)
        return t + self.sample_seconds

    def _stopcopy_parts(self) -> tuple[float, float]:
        """(cold, hot) bytes a bitmap sync would find now: unsent pages U pages dirtied since.

        Cold pages are unsent pages of pass 0 outside the working set; hot ones
        are inside it, where new writes land (so at most ``W`` of them)."""
        cold = self.pending * (1.0 - self._hot)
        hot = min(self.working_set, self.pending * self._hot + self.dirty)
        return cold, hot

    def _stopcopy_set(self) -> float:
        """Bytes a bitmap sync would leave to send right now (pending U dirty)."""
        return sum(self._stopcopy_parts())

    def _postcopy_rate(self) -> float:
        if self.postcopy_bandwidth > 0:
            return min(self.postcopy_bandwidth, self.link_rate)
        return self.link_rate

    # -- stepping ------------------------------------------------------------

    def advance(self, to: float) -> list[Happening]:
        """Run the transfer up to virtual time ``to``; returns what happened, in order.

        It stops early, right after a :class:`Switchover`, so the owner can
        react (pause the source, arm post-copy faults) before time goes on;
        call again to continue.
        """
        out, self._queued = self._queued, []
        guard = 0
        while self.phase is not Phase.DONE:
            guard += 1
            if guard > 1_000_000:  # pragma: no cover - a modelling bug, not a user error
                raise RuntimeError("hypervisor model made no progress")
            if out and isinstance(out[-1], Switchover):
                return out
            if self.phase is Phase.PRECOPY and self._pending_decision(out):
                continue
            if self.t >= to:
                break
            if self.phase is Phase.DISK:
                self._step_disk(to, out)
            elif self.phase is Phase.PRECOPY:
                self._step_precopy(to, out)
            elif self.phase is Phase.STOPCOPY:
                self._step_stopcopy(to, out)
            elif self.phase is Phase.POSTCOPY:
                self._step_postcopy(to, out)
        if self.t < to:
            self.t = to
        return out

    def _pending_decision(self, out: list[Happening]) -> bool:
        """Act on a post-copy request or a changed threshold; True if the phase changed."""
        if self._postcopy_requested:
            self._postcopy_requested = False
            self._switch_to_postcopy(out)
            return True
        if self._threshold_changed:
            self._threshold_changed = False
            if self.pending <= self.threshold:
                self._check(out)
                return self.phase is not Phase.PRECOPY
        return False

    def _step_disk(self, to: float, out: list[Happening]) -> None:
        dt = min(to - self.t, self.disk_remaining / self.bandwidth)
        self.disk_remaining -= self.bandwidth * dt
        self.t += dt
        if self.disk_remaining <= _EPS_BYTES:
            self.disk_remaining = 0.0
            self.phase = Phase.PRECOPY
            self._begin_precopy(out)

    def _begin_precopy(self, out: list[Happening]) -> None:
        # ram_init_bitmaps: every page is dirty, first sync (iteration 1).
        self.pending = self.memory
        self._hot = self.working_set / self.memory
        self.dirty = 0.0
        self._pass_sent = 0.0
        # A limit changed during the disk copy is simply in force from pass 0 on.
        self._threshold_changed = False
        self._next_check = self.t + CHECK_SECONDS
        self.iteration = 1
        self._period = _Period(start=self.t, processed=self.processed)
        out.append(Iteration(self.t, 1))

    def _step_precopy(self, to: float, out: list[Happening]) -> None:
        rate = self.bandwidth
        dirty_rate = self._dirty_rate(self.t)
        check_at = self._next_relevant_check()
        dt = min(to - self.t, self.pending / rate, self._hold_until(self.t) - self.t,
                 check_at - self.t)
        dt = max(dt, 0.0)
        sent = rate * dt
        self.pending -= sent
        self.processed += sent
        self._pass_sent += sent
        self.dirty = min(self.working_set, self.dirty + dirty_rate * dt)
        self.t += dt
        if self.pending <= _EPS_BYTES:
            self.pending = 0.0
            self._check(out)  # out of dirty pages: QEMU checks at once
        elif self.t >= check_at - 1e-12:
            self._check(out)

    def _next_relevant_check(self) -> float:
        """The first check (on the 100 ms grid, not before now) at which pending can be
        within the threshold.

        Pending only falls between syncs (at the bandwidth), so the checks
        before it reaches the threshold change nothing and are skipped: a
        long pass costs one step, not one per 100 ms."""
        grid = self._next_check
        if grid < self.t - 1e-12:
            grid += math.ceil((self.t - grid) / CHECK_SECONDS - 1e-9) * CHECK_SECONDS
        if self.pending <= self.threshold:
            return grid
        reach = self.t + (self.pending - self.threshold) / self.bandwidth
        if reach <= grid:
            return grid
        return grid + math.ceil((reach - grid) / CHECK_SECONDS - 1e-9) * CHECK_SECONDS

    def _check(self, out: list[Happening]) -> None:
        """QEMU's pending-vs-threshold check: sync when pending fits, then switch or go on.

        The checks keep their 100 ms grid (QEMU's rate-limit windows run on the
        migration thread's clock): a step cut short by an observer (a jobStats
        call) or windows skipped as irrelevant must not shift it.
        """
        if self.t >= self._next_check - 1e-12:
            behind = math.floor((self.t - self._next_check) / CHECK_SECONDS + 1e-9)
            self._next_check += (behind + 1) * CHECK_SECONDS
        if self.pending > self.threshold:
            return
        self._sync(out)

    def _sync(self, out: list[Happening]) -> None:
        """A dirty-bitmap sync: switch if the synced set fits the threshold, else go on."""
        before_hot = self.pending * self._hot
        cold, hot = self._stopcopy_parts()
        size = cold + hot
        self.passes.append(self._pass_sent)
        self._pass_sent = 0.0
        self.iteration += 1
        out.append(Iteration(self.t, self.iteration))
        self._account_period(out, max(hot - before_hot, 0.0))  # newly dirtied pages
        if size <= self.threshold:
            self._start_stopcopy(out, size)
            return
        self.pending = size
        self._hot = hot / size
        self.dirty = 0.0

    def _account_period(self, out: list[Happening], dirtied: float) -> None:
        period = self._period
        if period is None:  # pragma: no cover - set when pre-copy starts
            return
        period.dirtied += dirtied
        elapsed = self.t - period.start
        if elapsed < RATE_PERIOD_SECONDS:
            return
        self.dirty_pages_rate = period.dirtied / self.page_size / elapsed
        sent = self.processed - period.processed
        ac = self.auto_converge
        high = period.high_count
        if ac is not None and period.dirtied > sent * THROTTLE_TRIGGER_PERCENT / 100:
            high += 1
            if high >= 2:
                high = 0
                before = self.throttle
                if self.throttle == 0:
                    self.throttle = min(ac.initial, ac.maximum)
                else:
                    self.throttle = min(self.throttle + ac.increment, ac.maximum)
                if self.throttle != before:
                    out.append(ThrottleChanged(self.t, self.throttle))
        self._period = _Period(start=self.t, processed=self.processed, high_count=high)

    def _start_stopcopy(self, out: list[Happening], size: float) -> None:
        self.passes.append(size)
        # ram_save_complete syncs the bitmap once more with the guest stopped: libvirt's
        # completed stats count it (memory_iteration); nothing new is dirty by then.
        self.iteration += 1
        out.append(Iteration(self.t, self.iteration))
        self.phase = Phase.STOPCOPY
        self.pending = size
        self.dirty = 0.0
        self._stop_bytes = size
        self._stop_start = self.t
        self.downtime = size / self.link_rate + self.switchover_overhead
        self._stop_end = self.t + self.downtime
        out.append(Switchover(self.t, size, postcopy=False))

    def _step_stopcopy(self, to: float, out: list[Happening]) -> None:
        end = min(to, self._stop_end)
        sent = min(self.pending, self.link_rate * (end - self.t))
        self.pending -= sent
        self.processed += sent
        self.t = end
        if self.t >= self._stop_end:
            self.processed += self.pending
            self.pending = 0.0
            self.phase = Phase.DONE
            out.append(Completed(self.t, self.downtime or 0.0))

    def _switch_to_postcopy(self, out: list[Happening]) -> None:
        size = self._stopcopy_set()
        self.passes.append(self._pass_sent)
        self._pass_sent = 0.0
        self.iteration += 1  # postcopy_start syncs the bitmap once more
        out.append(Iteration(self.t, self.iteration))
        self.phase = Phase.POSTCOPY
        self.pending = size
        self.dirty = 0.0
        self.throttle = 0  # the guest now runs, unthrottled, on the destination
        self.downtime = self.switchover_overhead
        out.append(Switchover(self.t, size, postcopy=True))

    def _step_postcopy(self, to: float, out: list[Happening]) -> None:
        if self.postcopy_paused:
            self.t = to
            return
        rate = self._postcopy_rate()
        writes = rate_at(self.dirty_rate, self.t) / self.page_size
        dt = min(to - self.t, self.pending / rate, self._hold_until(self.t) - self.t)
        # requests' = writes * remaining(t) / memory, remaining falls linearly.
        self.postcopy_requests += writes / self.memory * (self.pending * dt - rate * dt * dt / 2)
        sent = rate * dt
        self.pending -= sent
        self.processed += sent
        self.t += dt
        if self.pending <= _EPS_BYTES:
            self.processed += self.pending
            self.pending = 0.0
            self.phase = Phase.DONE
            out.append(Completed(self.t, self.downtime or 0.0))

    # -- reporting -----------------------------------------------------------

    def current_rate(self) -> float:
        if self.phase in (Phase.DISK, Phase.PRECOPY):
            return self.bandwidth
        if self.phase is Phase.STOPCOPY:
            return self.link_rate
        if self.phase is Phase.POSTCOPY and not self.postcopy_paused:
            return self._postcopy_rate()
        return 0.0

    def snapshot(self) -> Snapshot:
        ps = self.page_size
        if self.phase is Phase.PRECOPY and self.dirty_pages_rate > 0:
            expected = self.pending / self.bandwidth * 1000.0
        elif self.phase is Phase.POSTCOPY or self.phase is Phase.DONE:
            expected = (self.downtime or 0.0) * 1000.0
        else:
            expected = self.downtime_limit * 1000.0
        remaining = self.memory if self.phase is Phase.DISK else self.pending
        return Snapshot(
            phase=self.phase,
            memory_total=int(self.memory),
            memory_processed=int(self.processed),
            memory_remaining=int(math.ceil(remaining - 1e-6)) if remaining > 0 else 0,
            disk_total=int(self.disk_bytes),
            disk_processed=int(self.disk_bytes - self.disk_remaining),
            disk_remaining=int(math.ceil(self.disk_remaining - 1e-6))
            if self.disk_remaining > 0
            else 0,
            bps=int(self.current_rate()),
            dirty_pages_rate=int(self.dirty_pages_rate),
            iteration=self.iteration,
            expected_downtime_ms=int(round(expected)),
            throttle=self.throttle,
            postcopy_requests=int(self.postcopy_requests),
            page_size=ps,
        )
