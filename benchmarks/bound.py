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
candidate).  The bound respects the ceiling; its downtime and time in
post-copy are reported beside it.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.peers import Peer
from migrator.jobstats import JobSample
from migrator.policy import Action, MonitorSettings, Tunables

CONSTANT_MS = (50, 150, 300, 500)
POLL = 0.5  # the monitor's poll: a pass that fits by the next poll gets the ceiling now


class _Bound(Peer):
    """A bound candidate: the completion timeout still ends it (no candidate then)."""

    def on_sample(self, sample: JobSample, now: float, tunables: Tunables) -> list[Action]:
        if not sample.is_running:
            return []
        actions = self._jobs.on_sample(now, tunables)
        if self.in_post_copy or self._jobs.aborting or actions:
            return actions
        return self.decide(sample, now)


class ConstantDowntime(_Bound):
    def __init__(self, settings: MonitorSettings, ms: int) -> None:
        super().__init__(settings)
        self.ms = min(ms, self.ceiling_ms)
        self.name = f"constant-{self.ms}"

    def decide(self, s: JobSample, now: float) -> list[Action]:
        return self.set_downtime(self.ms, "constant", now)


class CeilingWhenFits(_Bound):
    """Full passes, then the ceiling once what is left of a pass fits the link's threshold."""

    name = "full-passes-then-ceiling"

    def __init__(self, settings: MonitorSettings, bandwidth: float) -> None:
        super().__init__(settings)
        self.bandwidth = bandwidth
        self._fits = False

    def decide(self, s: JobSample, now: float) -> list[Action]:
        threshold = self.bandwidth * self.ceiling_ms / 1000.0
        if s.memory_iteration > 0 and s.memory_remaining <= threshold + self.bandwidth * POLL:
            self._fits = True
        if self._fits:
            return self.set_downtime(self.ceiling_ms, "the pass's rest fits the ceiling", now)
        return self.set_downtime(1, "full passes", now)


class PostCopyAfterFirstPass(_Bound):
    name = "one-pass-then-post-copy"

    def __init__(self, settings: MonitorSettings) -> None:
        super().__init__(settings)
        self._first: int | None = None

    def decide(self, s: JobSample, now: float) -> list[Action]:
        if s.memory_processed <= 0:
            return []  # RAM is not moving yet (setup, or disks first)
        if self._first is None:
            self._first = s.memory_iteration
        if s.memory_iteration > self._first:
            return self.post_copy("the first pass is done", now)
        return []


def candidates(settings: MonitorSettings, bandwidth: float
               ) -> dict[str, Callable[[], Peer]]:
    """The bound's candidate policies for one workload (post-copy only when permitted)."""
    out: dict[str, Callable[[], Peer]] = {
        f"constant-{ms}": (lambda ms=ms: ConstantDowntime(settings, ms)) for ms in CONSTANT_MS
        if ms <= settings.downtime_ms
    }
    out["full-passes-then-ceiling"] = lambda: CeilingWhenFits(settings, bandwidth)
    if settings.post_copy_enabled:
        out["one-pass-then-post-copy"] = lambda: PostCopyAfterFirstPass(settings)
    return out


BOUND_NAMES = tuple(f"constant-{ms}" for ms in CONSTANT_MS) + (
    "full-passes-then-ceiling", "one-pass-then-post-copy")


def make(name: str, settings: MonitorSettings, bandwidth: float) -> Peer | None:
    """The candidate ``name`` for this migration, or None when it does not apply."""
    factory = candidates(settings, bandwidth).get(name)
    return factory() if factory else None

