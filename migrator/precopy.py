"""QEMU's pre-copy, one dirty-bitmap sync at a time: the model behind :mod:`migrator.predict`.

The rules are QEMU 7.2's as the simulator (:mod:`migrator.testing.hypervisor`)
follows them and the fidelity benchmark checked them on real QEMU: the bytes
still to send are compared with ``bandwidth x max downtime`` every 100 ms and
the bitmap is synced as soon as they fit; the synced set (unsent pages plus
pages written since the last sync, never more than the working set) is the
next pass, and when it fits the threshold itself the guest stops.
Auto-converge raises the CPU throttle when the guest dirtied more than half of
what was sent in two periods of a second.  Pure: no clock, no libvirt.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

# QEMU: the migration thread compares pending bytes with the threshold once per
# rate-limit window; dirty-rate statistics (auto-converge) once a second.
CHECK_SECONDS = 0.1
RATE_PERIOD_SECONDS = 1.0
THROTTLE_TRIGGER = 0.5
THROTTLE_MAX = 99
# A safety net for the pass loop (the linear and geometric stretches are jumped,
# so real inputs need hundreds of steps at most).
_MAX_STEPS = 200_000
_EPS = 1e-6


@dataclass(frozen=True)
class Run:
    """Where one run of :class:`_Flow` ended (model time: seconds since RAM started moving)."""

    seconds: float
    syncs: int  # dirty-bitmap syncs (libvirt counts each as an iteration)
    final_set: float  # bytes of the stop-copy set, or that a sync would find at the end
    throttle: int
    ended: str  # "switch" | "first-sync" | "deadline" | "stuck"
    stalled: bool = False  # at a fixed point when it ended: no progress without a change


class PreCopy:
    """Pre-copy from one state (start, or a pass boundary), one bitmap sync at a time.

    ``cold`` are unsent pages outside the working set, ``hot`` unsent ones
    inside it, ``dirty`` pages written since the last sync (never more than the
    working set).  Linear stretches (one sync per 100 ms, the set changing by
    ``(bandwidth - dirty rate) x 100 ms``) and fixed points are jumped, so a
    run costs tens of steps, not one per 100 ms.
    """

    def __init__(self, remaining: float, dirty_rate: float, bandwidth: float,
                 max_downtime: Callable[[float], float] | float,
                 working_set: float | None = None, *,
                 next_change: Callable[[float], float] = lambda t: math.inf,
                 deadline: float = math.inf, throttle_steps: tuple[int, int] | None = None,
                 throttle: int = 0):
        self.w = remaining if working_set is None else max(working_set, _EPS)
        self.cold = max(remaining - self.w, 0.0)
        self.hot = remaining - self.cold
        self.dirty = 0.0
        self.d, self.b = dirty_rate, bandwidth
        self.downtime_at = max_downtime if callable(max_downtime) else lambda t: max_downtime
        self.next_change, self.deadline = next_change, deadline
        self.steps, self.throttle = throttle_steps, throttle
        self.t, self.syncs, self.sent = 0.0, 0, 0.0
        self.next_check = CHECK_SECONDS
        self.period_start, self.period_sent, self.period_dirtied, self.high = 0.0, 0.0, 0.0, 0
        self.stalled = False

    @property
    def rate(self) -> float:
        return self.d * (1.0 - self.throttle / 100.0)

    def threshold(self) -> float:
        return self.b * self.downtime_at(self.t)

    def _next_event(self) -> float:
        return min(self.next_change(self.t), self.deadline)

    def _throttle_fixed(self) -> bool:
        return (self.steps is None or self.throttle >= THROTTLE_MAX
                or self.rate <= THROTTLE_TRIGGER * self.b)

    def _next_sync(self, pending: float, threshold: float) -> float:
        """QEMU syncs at the first 100 ms check with pending <= threshold, or when out of pages."""
        reach = self.t + max(pending - threshold, 0.0) / self.b
        check = self.next_check
        if reach > check:
            check += math.ceil((reach - check) / CHECK_SECONDS - 1e-9) * CHECK_SECONDS
        return min(check, self.t + pending / self.b)

    def _advance(self, dt: float) -> None:
        pending = self.cold + self.hot
        sent = min(self.b * dt, pending)
        hot_share = self.hot / pending if pending > 0 else 0.0
        self.cold = max(self.cold - sent * (1 - hot_share), 0.0)
        self.hot = max(self.hot - sent * hot_share, 0.0)
        self.dirty = min(self.w, self.dirty + self.rate * dt)
        self.sent += sent
        self.t += dt

    def _sync(self) -> float:
        """A bitmap sync: the next pass is the unsent pages plus the newly dirty ones."""
        hot = min(self.w, self.hot + self.dirty)
        self.period_dirtied += max(hot - self.hot, 0.0)
        self.hot, self.dirty = hot, 0.0
        self.syncs += 1
        if self.t >= self.next_check - 1e-12:
            self.next_check = self.t + CHECK_SECONDS
        if self.t - self.period_start >= RATE_PERIOD_SECONDS:
            self._end_period()
        return self.cold + self.hot

    def _end_period(self) -> None:
        """QEMU's auto-converge trigger: dirtied > half of sent, twice: throttle up."""
        if self.steps and self.period_dirtied > THROTTLE_TRIGGER * (self.sent - self.period_sent):
            self.high += 1
            if self.high >= 2:
                self.high = 0
                initial, increment = self.steps
                self.throttle = min(self.throttle + (increment if self.throttle else initial),
                                    THROTTLE_MAX)
        self.period_start, self.period_sent, self.period_dirtied = self.t, self.sent, 0.0

    def _jump_linear(self, pending: float, threshold: float, until: float) -> bool:
        """Skip syncs 100 ms apart while the set changes by a constant step each time."""
        window = self.b * CHECK_SECONDS
        if (self.cold > _EPS or self.dirty > 0 or not self._throttle_fixed()
                or abs(self.next_check - self.t - CHECK_SECONDS) > 1e-9
                or not window < pending <= threshold + window):
            return False
        step = (self.b - self.rate) * CHECK_SECONDS  # the set shrinks by this per sync
        if step > _EPS:
            n = min(math.ceil((pending - threshold) / step) - 1,
                    math.floor((pending - window) / step) - 1)
        elif step < -_EPS:
            n = min(math.floor((threshold + window - pending) / -step),
                    math.ceil((self.w - pending) / -step) - 1)
        else:
            return False
        if until < math.inf:
            n = min(n, math.floor((until - self.t) / CHECK_SECONDS) - 1)
        if n < 1:
            return False
        self.t += n * CHECK_SECONDS
        self.hot = pending - n * step
        self.syncs += n
        self.sent += n * window
        self.next_check = self.t + CHECK_SECONDS
        self.period_start, self.period_sent, self.period_dirtied = self.t, self.sent, 0.0
        return True

    def _jump_geometric(self, pending: float, threshold: float, until: float) -> bool:
        """Skip passes while the set's excess over where a sync finds pending shrinks by
        the ratio dirty rate / bandwidth per pass (a geometric series, summed in closed
        form), up to one pass before the set fits.

        Only for ratios near 1, where the passes are many.  A sync finds pending half
        a 100 ms window below the threshold on average, or, with a threshold below one
        window, mostly empty (``threshold**2 / (2 window)``).
        """
        window = self.b * CHECK_SECONDS
        ratio = self.rate / self.b
        if (self.cold > _EPS or self.dirty > 0 or not self._throttle_fixed()
                or not 0.9 <= ratio < 1):
            return False
        settle = threshold - window / 2 if threshold >= window else \
            threshold * threshold / (2 * window)
        # land where the set is still above the threshold but the next pass brings it in
        # (or, above one window, where the linear stretch begins)
        target = threshold + max(window if threshold >= window else 0.0,
                                 (threshold - settle) * (1 - ratio) / (2 * ratio)) - settle
        excess = pending - settle
        n = math.floor(math.log(target / excess) / math.log(ratio)) if excess > target else 0
        while n >= 3:
            left = excess * ratio**n
            seconds = (excess - left) / (self.b - self.rate)
            if self.t + seconds < until - CHECK_SECONDS:
                self.t += seconds
                self.hot = settle + left
                self.syncs += n
                self.sent += seconds * self.b
                self.next_check = self.t + CHECK_SECONDS
                self.period_start, self.period_sent, self.period_dirtied = self.t, self.sent, 0.0
                return True
            n //= 2
        return False

    def _jump_fixed_point(self, since: float, syncs: int, until: float) -> bool:
        """No progress for a while and nothing will change it: skip to the next event."""
        if until == math.inf:
            return False
        length = (self.t - since) / max(syncs, 1)
        n = math.floor((until - self.t) / length) - 1 if length > 0 else 0
        if n >= 1:
            self.t += n * length
            self.next_check += n * length
            self.syncs += n
            self.period_start = self.t
        return True

    def _end(self, ended: str, size: float | None = None) -> Run:
        if size is None:
            size = self.cold + min(self.w, self.hot + self.dirty)
        return Run(self.t, self.syncs, size, self.throttle, ended,
                   stalled=ended == "stuck" or self.stalled)

    def run(self, first_only: bool = False) -> Run:
        """Until the switchover (or the first sync), the deadline, or a state that never ends."""
        best, best_at, best_syncs = math.inf, self.t, self.syncs
        for _ in range(_MAX_STEPS):
            pending, threshold = self.cold + self.hot, self.threshold()
            event = self._next_event()
            at = self._next_sync(pending, threshold)
            if event < at:
                self._advance(event - self.t)
                if self.t >= self.deadline - _EPS:
                    return self._end("deadline")
                if self.cold + self.hot > self.threshold():
                    continue  # a raised max downtime is compared at once, as QEMU does
            elif not first_only and (self._jump_linear(pending, threshold, event)
                                     or self._jump_geometric(pending, threshold, event)):
                continue
            else:
                self._advance(at - self.t)
            size = self._sync()
            if size <= self.threshold():
                return self._end("switch", size)
            if first_only:
                return self._end("first-sync", size)
            if size < best * (1 - 1e-9) - 1 or self.cold > _EPS or not self._throttle_fixed():
                best, best_at, best_syncs = min(best, size), self.t, self.syncs
                self.stalled = False
            elif self.syncs - best_syncs >= 50:
                self.stalled = True
                if not self._jump_fixed_point(best_at, self.syncs - best_syncs, event):
                    return self._end("stuck", size)
                best, best_at, best_syncs = size, self.t, self.syncs
        return self._end("stuck")  # pragma: no cover - the jumps keep real inputs far below
