"""What a monitor policy is: job samples and time in, actions out.

A policy is a pure state machine.  The monitor loop (``migrator.monitor``)
reads the job, passes each running sample and the time since the monitor
started to :meth:`Policy.on_sample`, executes the returned actions in order,
and reports each result through :meth:`Policy.action_result` (which may
return follow-up actions to execute at once).  Nothing here calls libvirt,
reads a clock, sleeps or logs, so every decision is testable with plain data
and a simulator can run thousands of migrations in virtual time.

This module holds the contract and Nova's formulas (the ramp, the timeout).
The policies are built from shared parts (:mod:`migrator.basepolicy`):
:mod:`migrator.maxdowntime` (the one owner of the job's max downtime) and
:mod:`migrator.jobcontrol` (Nova's force-complete, completion timeout and
abort); :class:`migrator.steps.StepsPolicy` is Nova's ramp on top of them,
:class:`migrator.adaptive.AdaptivePolicy` steers by the job stats instead.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from migrator.jobstats import JobSample

TIMEOUT_ACTION_ABORT = "abort"
TIMEOUT_ACTION_FORCE_COMPLETE = "force_complete"


class ActionKind(enum.StrEnum):
    """What the loop must do; a str so it logs and serialises as its value."""

    SET_MAX_DOWNTIME = "set_max_downtime"
    START_POST_COPY = "start_post_copy"
    SUSPEND = "suspend"
    ABORT = "abort"
    SET_MAX_SPEED = "set_max_speed"


@dataclass(frozen=True)
class Action:
    """One thing the loop must do to the job, with the numbers behind it."""

    kind: ActionKind
    value: int | float | None  # ms for SET_MAX_DOWNTIME, MiB/s for SET_MAX_SPEED, else None
    reason: str
    at: float  # seconds since the monitor started (the `now` passed in)
    timeout: bool = False  # the completion-timeout abort: outcome 'timed_out', not 'cancelled'


@dataclass(frozen=True)
class Note:
    """A decision *not* to act, worth one log line (e.g. force-complete in post-copy)."""

    at: float
    text: str


@dataclass(frozen=True)
class MonitorSettings:
    """Fixed for one migration (from options and this migration's facts)."""

    data_gb: float
    downtime_ms: int  # live_migration_downtime: the ceiling, reached at the last step
    downtime_steps: int
    downtime_delay: int  # s per GiB between steps
    post_copy_enabled: bool  # POSTCOPY in this migration's flags (after per-migration drops)
    auto_converge_enabled: bool
    monitor_interval: int  # s between progress reports


@dataclass(frozen=True)
class Tunables:
    """Options the loop re-reads on every pass, so an operator can change them mid-job."""

    completion_timeout: int  # s per GiB; 0 = off
    timeout_action: str  # 'abort' | 'force_complete'


class Policy(Protocol):
    """Everything the monitor asks of a policy (and nothing else)."""

    name: str

    @property
    def in_post_copy(self) -> bool:
        """The job runs in post-copy: nothing may abort it any more."""

    @property
    def guest_suspended(self) -> bool:
        """A suspend succeeded: if the job then fails, the loop resumes the guest."""

    @property
    def applied_downtime_ms(self) -> int | None:
        """The max downtime libvirt last accepted (None: QEMU's default still applies)."""

    def on_sample(self, sample: JobSample, now: float, tunables: Tunables) -> list[Action]:
        """Decide on one running (UNBOUNDED) sample."""

    def request_force_complete(self, now: float) -> list[Action]:
        """The user asked to force completion (at any time, also before the job runs)."""

    def action_result(
        self, action: Action, ok: bool, error: str | None, now: float
    ) -> list[Action]:
        """How executing ``action`` went; returns follow-up actions to run at once."""

    def post_copy_started(self, now: float) -> None:
        """The job switched to post-copy (e.g. the SUSPENDED/POSTCOPY event)."""

    def pop_notes(self) -> list[Note]:
        """Decisions not to act since the last call, each to be logged once."""

    def next_sample_in(self, now: float) -> float | None:
        """Seconds until the policy next has something to decide, when it knows (the
        monitor then looks sooner than its poll interval); None: at the next poll."""


def downtime_steps(
    data_gb: float, downtime: int, steps: int, delay: int
) -> Iterator[tuple[int, int]]:
    """Nova's linear downtime ramp: ``(seconds, max downtime ms)`` for steps 0..steps.

    The wait between steps scales with the data size (``delay`` s per GiB).
    Unlike Nova, the last step is exactly ``downtime``: Nova's int truncation
    could stop one millisecond short of the configured ceiling (103 ms in 10
    steps ended at 102).
    """
    if steps < 1:
        raise ValueError(f"downtime steps must be >= 1, got {steps}")
    delay_s = int(delay * data_gb)
    base = downtime / steps
    offset = (downtime - base) / steps
    for i in range(steps):
        yield int(delay_s * i), int(base + offset * i)
    yield int(delay_s * steps), downtime


def completion_timeout(per_gib: int, data_gb: float) -> int:
    """Seconds the job may run before the timeout action (0: never)."""
    if per_gib <= 0:
        return 0
    return int(per_gib * data_gb)


def timeout_expired(elapsed: float, timeout: int, in_post_copy: bool) -> bool:
    """Nova's ``should_trigger_timeout_action``: strictly past a non-zero timeout.

    Never in post-copy: the guest already runs on the destination and the job
    cannot be aborted without losing it.
    """
    return bool(timeout) and not in_post_copy and elapsed > timeout
