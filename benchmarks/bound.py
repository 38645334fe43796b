"""The clairvoyant bound: the best time any policy could reach on a workload.

Memory / bandwidth is a floor no policy reaches (the guest dirties pages
while they are sent).  The bound here is what a policy that *knows* the
workload would get, measured on the same simulator through the same driver
and monitor: the minimum over

* pre-copy with a constant max downtime (:data:`CONSTANT_MS`, up to the
  ceiling), set at the first sample;
* full passes (a 1 ms max downtime), then the ceiling as soon as what is left
  of a pass fits ``bandwidth x ceiling`` (the true link rate): QEMU then
  syncs once and stops the guest when that set fits.  Setting the ceiling
  from the start is not the best pre-copy can do: with fewer bitmap syncs a
  hot page is sent once instead of many times;
* when post-copy is permitted, one pre-copy pass, then post-copy.

Each gives up at the completion timeout like any policy (then it is no
candidate); a pre-copy candidate that the model of :mod:`migrator.predict`,
given the workload itself, says can never end at its max downtime gives up at
once (without auto-converge, which the model leaves out): that only saves the
hours of virtual time a hopeless guest would take to reach the timeout.  The
bound respects the ceiling; its downtime and time in post-copy are reported
beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.peers import Peer
from migrator import predict
from migrator.jobstats import JobSample
from migrator.policy import Action, MonitorSettings, Tunables

CONSTANT_MS = (50, 150, 300, 500)
POLL = 0.5  # the monitor's poll: a pass that fits by the next poll gets the ceiling now


@dataclass(frozen=True)
class Guest:
    """What the clairvoyant candidates know of the workload (bytes, bytes/s)."""

    memory: float
    dirty_rate: float
    bandwidth: float
    working_set: float

    def never_ends(self, max_downtime_ms: float) -> bool:
        """Pre-copy at this max downtime cannot end (per the model)."""
        return math.isinf(predict.precopy_seconds(self.memory, self.dirty_rate, self.bandwidth,
                                                  max_downtime_ms / 1000.0, self.working_set))


class _Bound(Peer):
    """A bound candidate: the completion timeout still ends it (no candidate then)."""

    aim_ms: int | None = None  # the max downtime its pre-copy ends at (None: post-copy)

    def __init__(self, settings: MonitorSettings, guest: Guest) -> None:
        super().__init__(settings)
        self.guest = guest

    def on_sample(self, sample: JobSample, now: float, tunables: Tunables) -> list[Action]:
        if not sample.is_running:
            return []
        actions = self._jobs.on_sample(now, tunables)
        if self.in_post_copy or self._jobs.aborting or actions:
            return actions
        if self.aim_ms is not None and not self.settings.auto_converge_enabled \
                and self.guest.never_ends(self.aim_ms):
            return self.abort("never ends at this max downtime (the workload is known)", now)
        return self.decide(sample, now)


class ConstantDowntime(_Bound):
    def __init__(self, settings: MonitorSettings, guest: Guest, ms: int) -> None:
        super().__init__(settings, guest)
        self.ms = self.aim_ms = min(ms, self.ceiling_ms)
        self.name = f"constant-{self.ms}"

    def decide(self, s: JobSample, now: float) -> list[Action]:
        return self.set_downtime(self.ms, "constant", now)


class CeilingWhenFits(_Bound):
    """Full passes, then the ceiling once what is left of a pass fits the link's threshold."""

    name = "full-passes-then-ceiling"

    def __init__(self, settings: MonitorSettings, guest: Guest) -> None:
        super().__init__(settings, guest)
        self.aim_ms = self.ceiling_ms
        self._fits = False

    def decide(self, s: JobSample, now: float) -> list[Action]:
        bandwidth = self.guest.bandwidth
        threshold = bandwidth * self.ceiling_ms / 1000.0
        if s.memory_iteration > 0 and s.memory_remaining <= threshold + bandwidth * POLL:
            self._fits = True
        if self._fits:
            return self.set_downtime(self.ceiling_ms, "the pass's rest fits the ceiling", now)
        return self.set_downtime(1, "full passes", now)


class PostCopyAfterFirstPass(_Bound):
    name = "one-pass-then-post-copy"

    def __init__(self, settings: MonitorSettings, guest: Guest) -> None:
        super().__init__(settings, guest)
        self._first: int | None = None

    def decide(self, s: JobSample, now: float) -> list[Action]:
        if s.memory_processed <= 0:
            return []  # RAM is not moving yet (setup, or disks first)
        if self._first is None:
            self._first = s.memory_iteration
        if s.memory_iteration > self._first:
            return self.post_copy("the first pass is done", now)
        return []


def candidates(settings: MonitorSettings, guest: Guest) -> dict[str, Callable[[], Peer]]:
    """The bound's candidate policies for one workload (post-copy only when permitted)."""
    out: dict[str, Callable[[], Peer]] = {
        f"constant-{ms}": (lambda ms=ms: ConstantDowntime(settings, guest, ms))
        for ms in CONSTANT_MS if ms <= settings.downtime_ms
    }
    out["full-passes-then-ceiling"] = lambda: CeilingWhenFits(settings, guest)
    if settings.post_copy_enabled:
        out["one-pass-then-post-copy"] = lambda: PostCopyAfterFirstPass(settings, guest)
    return out


BOUND_NAMES = tuple(f"constant-{ms}" for ms in CONSTANT_MS) + (
    "full-passes-then-ceiling", "one-pass-then-post-copy")


def make(name: str, settings: MonitorSettings, guest: Guest) -> Peer | None:
    """The candidate ``name`` for this migration, or None when it does not apply."""
    factory = candidates(settings, guest).get(name)
    return factory() if factory else None

