"""The policies users would pick instead of migrator's, as policies of migrator's monitor.

Each peer is written here from its documented algorithm (the peer study,
``../shared/reference/peers-and-libvirt.md`` §1-3, §9), not shipped as an
option: it runs on the same driver, monitor and simulated hypervisor as
migrator's own policies, so the comparison is of the decisions alone.  What
the peers decide differently from their home is said where it happens:

* they see the job every 0.5 s (migrator's monitor poll) and act at most
  then; where a peer looks less often (VDSM every 10 s, Proxmox every 1 s)
  it skips the samples in between;
* the options (post-copy, auto-converge permitted) are the option set's, the
  same for every policy: Engine's policies turn auto-converge and (the
  post-copy policy) post-copy on themselves; here an Engine post-copy switch
  without post-copy permitted fails, and the schedule goes on to its next
  action, as VDSM does after a failed switch;
* the ceiling they aim at is ``live_migration_downtime`` (VDSM's
  ``migration_downtime`` and KubeVirt's ``maxDowntimeMs`` take it; Proxmox
  has none and doubles past it);
* KubeVirt's "workload disruption" is allowed exactly when post-copy is
  (``allowWorkloadDisruption`` defaults to ``allowPostCopy``);
* a peer still running at Nova's completion timeout (the budget migrator's
  policies have) is ended there: Proxmox has no timeout at all, and on the
  simulator's perfectly regular passes its 1 s polls can see ``remaining``
  at the same phase of every pass, never "grow", and never double.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from migrator import constants
from migrator.basepolicy import BasePolicy
from migrator.jobstats import JobSample
from migrator.passes import PassEstimate, PassObserver
from migrator.policy import Action, ActionKind, MonitorSettings, Tunables
from migrator.units import GiB

# Peers keep their own timers: Nova's completion timeout is not theirs.
NO_NOVA_TIMEOUT = Tunables(completion_timeout=0, timeout_action="abort")


class Peer(BasePolicy):
    """A peer's decisions on migrator's monitor: the actions, once each, in its words."""

    def __init__(self, settings: MonitorSettings) -> None:
        super().__init__(settings)
        self.ceiling_ms = min(int(settings.downtime_ms), constants.QEMU_MAX_DOWNTIME_MS)
        self._switched = False  # a post-copy switch was asked for

    def on_sample(self, sample: JobSample, now: float, tunables: Tunables) -> list[Action]:
        if not sample.is_running:
            return []
        actions = self._jobs.on_sample(now, NO_NOVA_TIMEOUT)  # retries of its own actions
        if self.in_post_copy or self.guest_suspended or self._jobs.aborting or actions:
            return actions
        cap = self._jobs.completion_timeout(tunables)
        if cap and now > cap:  # a peer without an end of its own (Proxmox) ends here
            return self.abort(f"benchmark cap: still running at the {cap} s completion "
                              "timeout the other policies have", now)
        return self.decide(sample, now)

    def decide(self, sample: JobSample, now: float) -> list[Action]:
        raise NotImplementedError

    def set_downtime(self, ms: float, why: str, now: float) -> list[Action]:
        ms = max(1, min(int(ms), constants.QEMU_MAX_DOWNTIME_MS))
        return self._downtime.set(ms, f"{self.name}: {why}", now)

    def post_copy(self, why: str, now: float) -> list[Action]:
        if self._switched or not self.settings.post_copy_enabled:
            return []
        self._switched = True
        return [Action(ActionKind.START_POST_COPY, None, f"{self.name}: {why}", now)]

    def abort(self, why: str, now: float) -> list[Action]:
        if self._jobs.abort_requested:
            return []
        return self._jobs.abort(now, f"{self.name}: {why}")

    @property
    def downtime_ms(self) -> int:
        return self.applied_downtime_ms or constants.QEMU_DEFAULT_DOWNTIME_MS


# -- oVirt: VDSM executes Engine's convergence schedule -------------------------------


@dataclass(frozen=True)
class Step:
    """One stalling item: act once more than ``limit`` iterations ran (-1: at the next)."""

    limit: int
    action: str  # 'downtime' | 'postcopy' | 'abort'
    value: int | None = None


def exponential_downtime(maximum: int, steps: int) -> list[int]:
    """VDSM's legacy ramp: ``offset + base**i`` reaching ``maximum`` in ``steps``."""
    offset = maximum / steps
    base = (maximum - offset) ** (1.0 / (steps - 1))
    return [int(offset + base**i) for i in range(steps)]


class VdsmSchedule(Peer):
    """VDSM's MonitorThread: every 10 s, one schedule item per new iteration at most.

    ``init`` is applied at once; ``stalling`` items fire when the iterations
    since the first one seen exceed their limit ("stalling" is an iteration
    count, not a lack of progress).
    """

    interval = 10.0  # migration_monitor_interval

    def __init__(self, settings: MonitorSettings, name: str, init: int,
                 stalling: list[Step]) -> None:
        super().__init__(settings)
        self.name = name
        self._init = init
        self._stalling = list(stalling)
        self._next_tick: float | None = None
        self._first_iteration: int | None = None
        self._last_iteration = 0

    def decide(self, s: JobSample, now: float) -> list[Action]:
        if self._next_tick is None:
            self._next_tick = now + self.interval
            return self.set_downtime(self._init, f"init: max downtime {self._init} ms", now)
        if now < self._next_tick:
            return []
        self._next_tick = now + self.interval
        if self._first_iteration is None:
            self._first_iteration = self._last_iteration = s.memory_iteration
            return []
        if s.memory_iteration <= self._last_iteration:
            return []
        self._last_iteration = s.memory_iteration
        return self._next_action(s.memory_iteration - self._first_iteration, now)

    def _next_action(self, count: int, now: float) -> list[Action]:
        while self._stalling and self._stalling[0].limit < count:
            step = self._stalling.pop(0)
            why = f"iteration {count} > {step.limit}: {step.action}"
            if step.action == "downtime":
                return self.set_downtime(step.value or 0, f"{why} {step.value} ms", now)
            if step.action == "abort":
                return self.abort(why, now)
            actions = self.post_copy(why, now)
            if actions:
                return actions
            # post-copy not permitted: the switch fails and VDSM goes on to the next item
        return []


def vdsm_legacy(settings: MonitorSettings) -> VdsmSchedule:
    """No Engine schedule: VDSM's exponential ramp to migration_downtime in 5 steps."""
    ramp = exponential_downtime(min(settings.downtime_ms, constants.QEMU_MAX_DOWNTIME_MS), 5)
    stalling = [Step(i, "downtime", v) for i, v in enumerate(ramp[1:], start=1)]
    stalling += [Step(42, "downtime", ramp[-1]), Step(-1, "abort")]
    return VdsmSchedule(settings, "ovirt-legacy", ramp[0], stalling)


def engine_minimal_downtime(settings: MonitorSettings) -> VdsmSchedule:
    """Engine's "Minimal downtime": 100 ms, then 150 ... 500 ms by iteration, then abort."""
    stalling = [Step(1, "downtime", 150), Step(2, "downtime", 200), Step(3, "downtime", 300),
                Step(4, "downtime", 400), Step(6, "downtime", 500), Step(-1, "abort")]
    return VdsmSchedule(settings, "ovirt-minimal", 100, stalling)


def engine_post_copy(settings: MonitorSettings) -> VdsmSchedule:
    """Engine's "Post-copy migration": 100, 150, 200 ms, then post-copy, then abort."""
    stalling = [Step(1, "downtime", 150), Step(2, "downtime", 200), Step(-1, "postcopy"),
                Step(-1, "abort")]
    return VdsmSchedule(settings, "ovirt-postcopy", 100, stalling)


# -- KubeVirt ------------------------------------------------------------------------------

COMPLETION_PER_GIB = 150  # completionTimeoutPerGiB
PROGRESS_TIMEOUT = 150.0  # progressTimeout: s without data_remaining going down


class KubevirtTimers:
    """KubeVirt's completion timeout (150 s/GiB of memory) and progress timeout (150 s
    without remaining going below the previous sample's: a weak watermark)."""

    def __init__(self) -> None:
        self.acceptable: float | None = None
        self._last_remaining: int | None = None
        self._progress_at = 0.0

    def check(self, s: JobSample, now: float, disruption: bool) -> tuple[str, str] | None:
        """('postcopy' | 'abort', why), first match wins, or None."""
        if self.acceptable is None:
            if s.memory_total <= 0:
                return None  # still setting up: the guest's size is not known yet
            self.acceptable = now + COMPLETION_PER_GIB * s.memory_total / GiB
            self._progress_at = now
        if self._last_remaining is None or s.data_remaining < self._last_remaining:
            self._progress_at = now
        self._last_remaining = s.data_remaining
        late = now > self.acceptable
        if late and disruption:
            return "postcopy", f"past the acceptable completion time ({self.acceptable:.0f} s)"
        if now - self._progress_at > PROGRESS_TIMEOUT:
            return "abort", f"no progress for {PROGRESS_TIMEOUT:.0f} s"
        if late:
            return "abort", f"not completed in {self.acceptable:.0f} s"
        return None


class KubevirtLegacy(Peer):
    """KubeVirt's legacy monitor: its timers (post-copy past the completion time when
    disruption is allowed, else abort); the max downtime is never set (QEMU's 300 ms)."""

    name = "kubevirt-legacy"

    def __init__(self, settings: MonitorSettings) -> None:
        super().__init__(settings)
        self._timers = KubevirtTimers()

    def decide(self, s: JobSample, now: float) -> list[Action]:
        verdict = self._timers.check(s, now, self.settings.post_copy_enabled)
        if verdict is None:
            return []
        kind, why = verdict
        return self.post_copy(why, now) if kind == "postcopy" else self.abort(why, now)


class KubevirtStall(Peer):
    """KubeVirt 2026: VEP 248's stall detector with VEP 291's downtime tuning.

    Tuning: 150 ms at the start, then from iteration 3 at most every 10 s one
    of 7 steps up to ``maxDowntimeMs`` (the ceiling).  At iteration
    boundaries: a stall is no 4 % gain of the best remaining over 40 s; on a
    stall it waits for a local minimum, then post-copy (disruption allowed),
    or sets the ceiling when the estimate is within 1.5x of it (a "soft"
    stop-and-copy, aborted if the switch does not come in 60 s), or aborts;
    never when the switch would not fit twice the completion time.  Past the
    completion time with no decision, and with the legacy progress timeout:
    :class:`KubevirtTimers`.
    """

    name = "kubevirt-stall"
    initial_ms = 150
    steps = 7
    start_after_iteration = 3
    cooldown = 10.0
    switchover_timeout = 60.0
    possible_factor = 1.5
    local_min_margin = 0.04

    def __init__(self, settings: MonitorSettings) -> None:
        super().__init__(settings)
        self._timers = KubevirtTimers()
        self._passes = PassObserver(self._notes, rate_alpha=0.4, stall_margin=0.04,
                                    window_passes=1, window_seconds=40.0)
        self._tuned_at: float | None = None
        self._waited = 0
        self._soft_at: float | None = None

    def decide(self, s: JobSample, now: float) -> list[Action]:
        record = self._passes.observe(s, now)
        verdict = self._timers.check(s, now, self.settings.post_copy_enabled)
        if verdict is not None:
            kind, why = verdict
            return self.post_copy(why, now) if kind == "postcopy" else self.abort(why, now)
        if self._soft_at is not None and now - self._soft_at > self.switchover_timeout:
            return self.abort(f"no switchover {self.switchover_timeout:.0f} s after the "
                              "soft stop-and-copy", now)
        if record is not None and self._passes.stalled and self._soft_at is None:
            actions = self._on_stall(record, now)
            if actions:
                return actions
        elif record is not None:
            self._waited = 0
        return self._tune(now)

    def _tune(self, now: float) -> list[Action]:
        ceiling = self.ceiling_ms
        if self._tuned_at is None:
            self._tuned_at = now
            return self.set_downtime(min(self.initial_ms, ceiling), "initial max downtime", now)
        passes = self._passes.last.passes if self._passes.last else 0
        current = self.downtime_ms
        if passes < self.start_after_iteration or now - self._tuned_at < self.cooldown \
                or current >= ceiling:
            return []
        self._tuned_at = now
        step = (ceiling - min(self.initial_ms, ceiling)) / self.steps
        return self.set_downtime(min(ceiling, math.ceil(current + step)), "tuning step", now)

    def _on_stall(self, r: PassEstimate, now: float) -> list[Action]:
        best = self._passes.window_best()
        if r.dirty_set > best * (1 + self.local_min_margin * 2**self._waited):
            self._waited += 1  # wait for a local minimum, the target relaxing
            return []
        rate = max(r.rate, 1.0)
        estimate = r.dirty_set / rate
        budget = 2 * (self._timers.acceptable or 0.0) - now
        if estimate > budget:
            return []  # the switch would not finish in time: a network problem, wait
        if self.settings.post_copy_enabled:
            return self.post_copy("stalled: post-copy at a local minimum", now)
        if estimate * 1000 <= self.possible_factor * self.ceiling_ms:
            self._soft_at = now
            return self.set_downtime(self.ceiling_ms, "stalled: soft stop-and-copy", now)
        return self.abort(f"stalled: the switchover needs ~{estimate * 1000:.0f} ms", now)


# -- Proxmox -------------------------------------------------------------------------------


class ProxmoxDoubling(Peer):
    """qemu-server: 100 ms, doubled after more than 5 polls that saw remaining grow
    (or at 0) while bytes moved; up to QEMU's 2,000 s; no timeout, no abort."""

    name = "proxmox"
    interval = 1.0  # query-migrate every second
    initial_ms = 100

    def __init__(self, settings: MonitorSettings) -> None:
        super().__init__(settings)
        self._next_poll: float | None = None
        self._last: JobSample | None = None
        self._counter = 0

    def decide(self, s: JobSample, now: float) -> list[Action]:
        if self._next_poll is None:
            self._next_poll = now + self.interval
            self._last = s
            return self.set_downtime(self.initial_ms, "migrate_downtime 0.1 s", now)
        if now < self._next_poll:
            return []
        self._next_poll = now + self.interval
        last, self._last = self._last, s
        if last is None or s.memory_processed <= last.memory_processed:
            return []  # no bytes moved: not counted
        if s.memory_remaining > last.memory_remaining or s.memory_remaining == 0:
            self._counter += 1
        if self._counter <= 5:
            return []
        self._counter = 0
        doubled = min(2 * self.downtime_ms, constants.QEMU_MAX_DOWNTIME_MS)
        return self.set_downtime(doubled, "remaining grew on 6 polls: doubled", now)


PEERS: dict[str, Callable[[MonitorSettings], Peer]] = {
    "ovirt-legacy": vdsm_legacy,
    "ovirt-minimal": engine_minimal_downtime,
    "ovirt-postcopy": engine_post_copy,
    "kubevirt-legacy": KubevirtLegacy,
    "kubevirt-stall": KubevirtStall,
    "proxmox": ProxmoxDoubling,
}
