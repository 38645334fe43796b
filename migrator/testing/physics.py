"""The vocabulary of the migration physics: what :class:`~migrator.testing.hypervisor.Transfer`
takes and what it reports.

QEMU's constants, dirty rates (a number, a callable of virtual time or a
:class:`Piecewise`), the transfer's phases, what happened (:data:`Happening`)
and :class:`Snapshot`, QEMU's ``query-migrate`` view.  No stepping here.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PAGE_SIZE = 4096
# QEMU's auto-converge defaults (cpu-throttle-initial/-increment, max) and
# its trigger: dirtied > 50 % of sent, twice.
THROTTLE_INITIAL = 20
THROTTLE_INCREMENT = 10
THROTTLE_MAX = 99
THROTTLE_TRIGGER_PERCENT = 50
# QEMU refreshes dirty-rate statistics at most once per second of syncs.
RATE_PERIOD_SECONDS = 1.0
# QEMU's migration thread compares pending bytes with the threshold once per
# rate-limit window (BUFFER_DELAY in migration.c).
CHECK_SECONDS = 0.1

DirtyRate = float | Callable[[float], float]



class Piecewise:
    """A dirty rate that changes at known times: ``[(from_time, bytes_per_s), ...]``.

    Before the first point the rate is the first point's rate.
    """

    def __init__(self, points: Sequence[tuple[float, float]]):
        if not points:
            raise ValueError("Piecewise needs at least one (time, rate) point")
        pts = sorted((float(t), float(r)) for t, r in points)
        self._times = [t for t, _ in pts]
        self._rates = [r for _, r in pts]

    def __call__(self, t: float) -> float:
        i = bisect.bisect_right(self._times, t) - 1
        return self._rates[max(i, 0)]

    def next_change(self, t: float) -> float:
        """The first time after ``t`` at which the rate changes (inf: never)."""
        i = bisect.bisect_right(self._times, t)
        return self._times[i] if i < len(self._times) else math.inf


class Phase(enum.Enum):
    DISK = "disk"
    PRECOPY = "precopy"
    STOPCOPY = "stopcopy"
    POSTCOPY = "postcopy"
    DONE = "done"


# What happened, with the virtual time it happened at.
@dataclass(frozen=True)
class Iteration:
    time: float
    number: int


@dataclass(frozen=True)
class ThrottleChanged:
    time: float
    percent: int


@dataclass(frozen=True)
class Switchover:
    """The guest stopped on the source (``postcopy``: and runs on the destination)."""

    time: float
    remaining: float
    postcopy: bool


@dataclass(frozen=True)
class Completed:
    time: float
    downtime: float  # seconds the guest did not run (stop-copy or post-copy switch)


Happening = Iteration | ThrottleChanged | Switchover | Completed


@dataclass
class AutoConverge:
    initial: int = THROTTLE_INITIAL
    increment: int = THROTTLE_INCREMENT
    maximum: int = THROTTLE_MAX


@dataclass
class Snapshot:
    """What QEMU's query-migrate would say right now (bytes, bytes/s, pages/s)."""

    phase: Phase
    memory_total: int
    memory_processed: int
    memory_remaining: int
    disk_total: int
    disk_processed: int
    disk_remaining: int
    bps: int
    dirty_pages_rate: int
    iteration: int
    expected_downtime_ms: int
    throttle: int
    postcopy_requests: int
    page_size: int


def rate_at(rate: DirtyRate, t: float) -> float:
    return float(rate(t)) if callable(rate) else float(rate)
