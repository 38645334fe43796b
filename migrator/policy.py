"""Monitor policies: job samples and time in, actions out.

A policy is a pure state machine.  The monitor loop (``migrator.monitor``)
reads the job, passes each running sample and the time since the monitor
started to :meth:`Policy.on_sample`, executes the returned actions in order,
and reports each result through :meth:`Policy.action_result` (which may
return follow-up actions to execute at once).  Nothing here calls libvirt,
reads a clock, sleeps or logs, so every decision is testable with plain data
and a simulator can run thousands of migrations in virtual time.

:class:`StepsPolicy` is Nova's monitor (linear downtime ramp, completion
timeout scaled by data size, force-complete through post-copy or pause) with
Nova's known quirks fixed; see each method for which.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from migrator import constants
from migrator.jobstats import JobSample

TIMEOUT_ACTION_ABORT = "abort"
TIMEOUT_ACTION_FORCE_COMPLETE = "force_complete"

# A failed migrateSetMaxDowntime is retried on the next pass, but one value is
# tried at most this many times so a persistent error cannot repeat every poll.
MAX_DOWNTIME_ATTEMPTS = 3
# A failed suspend (force-complete without post-copy) is retried once.
MAX_SUSPEND_ATTEMPTS = 2


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
    name: str
    in_post_copy: bool

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


def _secs(value: float) -> str:
    """Seconds for a reason: '3201', '3200.5' (no float noise)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _gib(value: float) -> str:
    """GiB for a reason: '4.0', '14.25'."""
    text = f"{value:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


class _FC(enum.Enum):
    """Where the (single) force-complete is."""

    IDLE = "idle"  # never requested, or the last attempt failed for good
    QUEUED = "queued"  # requested before the job was running
    PENDING = "pending"  # START_POST_COPY or SUSPEND emitted, result not reported yet
    RETRY = "retry"  # SUSPEND failed; try again on the next pass
    DONE = "done"


class _Abort(enum.Enum):
    IDLE = "idle"
    PENDING = "pending"
    FAILED = "failed"
    DONE = "done"


class StepsPolicy:
    """Nova's monitor policy, quirks fixed.

    Differences from Nova, each a fix of a known problem:

    * step 0 of the ramp applies on the first running sample even at ``now == 0``;
      the last step is exactly the configured downtime;
    * a failed downtime change is retried on the next pass (Nova kept the new
      value as if applied), at most :data:`MAX_DOWNTIME_ATTEMPTS` times per value;
    * the timeout's ``force_complete`` runs in the same pass and only once (Nova
      queued it for the next pass and again every 0.5 s after the deadline);
    * the timeout abort is emitted once and flagged ``timeout=True`` (Nova called
      abortJob on every pass and reported 'cancelled'); if the loop reports it
      failed, it is retried at most once per ``monitor_interval``;
    * force-complete runs once; if the post-copy switch fails the guest is
      suspended instead; a failed suspend is retried once on the next pass;
    * no downtime change while a post-copy switch is pending or together with
      an abort, and no timeout abort while a force-complete is pending.

    A decision not to act (force-complete in post-copy or repeated, retries
    given up, timeout reached in post-copy) is recorded as a :class:`Note`;
    the loop drains them with :meth:`pop_notes` and logs each once.
    """

    name = "steps"

    def __init__(
        self,
        settings: MonitorSettings,
        *,
        steps: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        """``steps`` overrides the ramp computed from ``settings`` (an empty ramp
        never touches the downtime); values are capped at QEMU's maximum."""
        self.settings = settings
        self._custom_ramp = steps is not None
        if steps is None:
            steps = list(
                downtime_steps(
                    settings.data_gb,
                    settings.downtime_ms,
                    settings.downtime_steps,
                    settings.downtime_delay,
                )
            )
        self._steps = [(int(t), min(int(v), constants.QEMU_MAX_DOWNTIME_MS)) for t, v in steps]
        self.in_post_copy = False
        # True once a SUSPEND succeeded: if the job then fails or is cancelled,
        # the loop must resume the guest on the source.
        self.guest_suspended = False
        self._started = False
        self._applied_downtime: int | None = None
        self._pending_downtime: int | None = None
        self._downtime_failures: dict[int, int] = {}
        self._fc = _FC.IDLE
        self._fc_action: Action | None = None
        self._fc_requested_at = 0.0
        self._fc_error: str | None = None
        self._suspend_attempts = 0
        self._timeout_fc_fired = False
        self._abort = _Abort.IDLE
        self._abort_failed_at = 0.0
        self._timeout_noted_in_post_copy = False
        self._notes: list[Note] = []

    # -- read-only views for the loop, the CLI and tests -------------------

    @property
    def steps(self) -> list[tuple[int, int]]:
        """The downtime ramp as ``(seconds, ms)`` pairs."""
        return list(self._steps)

    @property
    def applied_downtime_ms(self) -> int | None:
        """The last max downtime the loop reported as applied (None: not yet)."""
        return self._applied_downtime

    def completion_timeout(self, tunables: Tunables) -> int:
        """This migration's completion timeout in s under ``tunables`` (0: off)."""
        return completion_timeout(tunables.completion_timeout, self.settings.data_gb)

    def pop_notes(self) -> list[Note]:
        notes, self._notes = self._notes, []
        return notes

    # -- the Policy interface ----------------------------------------------

    def on_sample(self, sample: JobSample, now: float, tunables: Tunables) -> list[Action]:
        """Decide on one sample; only UNBOUNDED (running) samples lead to actions.

        Order as in Nova: pending force-complete first, then the timeout, then
        the downtime ramp.
        """
        if not sample.is_running:
            return []
        self._started = True
        if self.in_post_copy:
            self._note_timeout_in_post_copy(now, tunables)
            return []
        actions = self._run_force_complete_tasks(now)
        actions += self._check_timeout(now, tunables)
        switching = (
            self._fc is _FC.PENDING
            and self._fc_action is not None
            and (self._fc_action.kind is ActionKind.START_POST_COPY)
        )
        aborting = any(a.kind is ActionKind.ABORT for a in actions)
        if not (switching or aborting):
            actions += self._update_downtime(now)
        return actions

    def request_force_complete(self, now: float) -> list[Action]:
        """Force completion once: post-copy if enabled, else suspend the guest.

        A request before the job runs is queued for the first running sample.
        """
        if self.in_post_copy:
            self._note(now, "force-complete ignored: the migration is already in post-copy")
            return []
        if self._abort in (_Abort.PENDING, _Abort.DONE):
            self._note(now, "force-complete ignored: the job is being aborted (completion timeout)")
            return []
        if self._fc is not _FC.IDLE:
            self._note(now, f"force-complete ignored: already requested ({self._fc.value})")
            return []
        if not self._started:
            self._fc = _FC.QUEUED
            self._fc_requested_at = now
            self._note(now, "force-complete queued until the migration job is running")
            return []
        return self._begin_force_complete(now, "force-complete requested")

    def action_result(
        self, action: Action, ok: bool, error: str | None, now: float
    ) -> list[Action]:
        """Record how an action went; a failed post-copy switch falls back to SUSPEND."""
        if action.kind is ActionKind.SET_MAX_DOWNTIME:
            self._downtime_result(action, ok, now)
        elif action.kind is ActionKind.START_POST_COPY:
            return self._post_copy_result(action, ok, error, now)
        elif action.kind is ActionKind.SUSPEND:
            self._suspend_result(action, ok, error, now)
        elif action.kind is ActionKind.ABORT and action.timeout:
            if ok:
                self._abort = _Abort.DONE
            else:
                self._abort = _Abort.FAILED
                self._abort_failed_at = now
        return []

    def post_copy_started(self, now: float) -> None:
        self.in_post_copy = True
        if self._fc is _FC.PENDING and self._fc_action is not None:
            if self._fc_action.kind is ActionKind.START_POST_COPY:
                self._fc = _FC.DONE

    # -- downtime ramp ----------------------------------------------------

    def _update_downtime(self, now: float) -> list[Action]:
        # The last step whose time has strictly passed; a step at 0 s is due
        # from the first running sample (Nova's elapsed > 0 held on the first
        # pass only because time had passed since the monitor started).
        index = None
        for i, (at, _) in enumerate(self._steps):
            if now > at or at <= 0:
                index = i
        if index is None:
            return []
        at, value = self._steps[index]
        if value in (self._applied_downtime, self._pending_downtime):
            return []
        failures = self._downtime_failures.get(value, 0)
        if failures >= MAX_DOWNTIME_ATTEMPTS:
            return []
        if self._custom_ramp:
            why = "custom ramp"
        else:
            s = self.settings
            why = f"delay {s.downtime_delay} s/GiB x {_gib(s.data_gb)} GiB"
        reason = f"downtime step {index}/{len(self._steps) - 1}: {value} ms after {at} s ({why})"
        if failures:
            reason += f"; attempt {failures + 1}/{MAX_DOWNTIME_ATTEMPTS} after a failure"
        self._pending_downtime = value
        return [Action(ActionKind.SET_MAX_DOWNTIME, value, reason, now)]

    def _downtime_result(self, action: Action, ok: bool, now: float) -> None:
        value = int(action.value or 0)
        if self._pending_downtime == value:
            self._pending_downtime = None
        if ok:
            self._applied_downtime = value
            self._downtime_failures.pop(value, None)
            return
        failures = self._downtime_failures.get(value, 0) + 1
        self._downtime_failures[value] = failures
        if failures >= MAX_DOWNTIME_ATTEMPTS:
            self._note(
                now,
                f"max downtime {value} ms failed {failures} times; not retried",
            )

    # -- completion timeout -----------------------------------------------

    def _timeout_reason(self, now: float, tunables: Tunables, timeout: int) -> str:
        return (
            f"not completed after {_secs(now)} s; completion timeout {timeout} s = "
            f"{tunables.completion_timeout} s/GiB x {_gib(self.settings.data_gb)} GiB"
        )

    def _check_timeout(self, now: float, tunables: Tunables) -> list[Action]:
        timeout = self.completion_timeout(tunables)
        if not timeout_expired(now, timeout, self.in_post_copy):
            return []
        why = self._timeout_reason(now, tunables, timeout)
        if tunables.timeout_action == TIMEOUT_ACTION_FORCE_COMPLETE:
            if self._timeout_fc_fired:
                return []
            self._timeout_fc_fired = True
            if self._fc is not _FC.IDLE:
                self._note(now, f"{why}; force-complete already {self._fc.value}")
                return []
            return self._begin_force_complete(now, f"{why}; timeout action force_complete")
        # Any other value is treated as 'abort', the safe default: the guest stays put.
        if self._fc is _FC.PENDING or self._abort in (_Abort.PENDING, _Abort.DONE):
            return []
        if self._abort is _Abort.FAILED:
            if now < self._abort_failed_at + max(self.settings.monitor_interval, 1):
                return []
            why += "; retrying the abort after it failed"
        self._abort = _Abort.PENDING
        return [Action(ActionKind.ABORT, None, why, now, timeout=True)]

    def _note_timeout_in_post_copy(self, now: float, tunables: Tunables) -> None:
        timeout = self.completion_timeout(tunables)
        if self._timeout_noted_in_post_copy or not timeout or now <= timeout:
            return
        self._timeout_noted_in_post_copy = True
        self._note(
            now,
            f"{self._timeout_reason(now, tunables, timeout)}; not enforced in post-copy "
            "(the guest already runs on the destination)",
        )

    # -- force-complete ---------------------------------------------------

    def _begin_force_complete(self, now: float, why: str) -> list[Action]:
        if self.settings.post_copy_enabled:
            action = Action(ActionKind.START_POST_COPY, None, f"{why}: switch to post-copy", now)
        else:
            self._suspend_attempts = 1
            action = Action(
                ActionKind.SUSPEND,
                None,
                f"{why}: suspend the guest until the copy finishes (post-copy not enabled)",
                now,
            )
        self._fc = _FC.PENDING
        self._fc_action = action
        return [action]

    def _run_force_complete_tasks(self, now: float) -> list[Action]:
        if self._fc is _FC.QUEUED:
            return self._begin_force_complete(
                now,
                f"force-complete requested at {_secs(self._fc_requested_at)} s, "
                "before the job was running",
            )
        if self._fc is _FC.RETRY:
            self._suspend_attempts += 1
            action = Action(
                ActionKind.SUSPEND,
                None,
                f"suspend failed ({self._fc_error}); attempt {self._suspend_attempts}/"
                f"{MAX_SUSPEND_ATTEMPTS}",
                now,
            )
            self._fc = _FC.PENDING
            self._fc_action = action
            return [action]
        return []

    def _post_copy_result(
        self, action: Action, ok: bool, error: str | None, now: float
    ) -> list[Action]:
        if ok:
            self.in_post_copy = True
            self._fc = _FC.DONE
            return []
        if self.in_post_copy or self._fc is not _FC.PENDING:
            return []
        self._suspend_attempts = 1
        suspend = Action(
            ActionKind.SUSPEND,
            None,
            f"post-copy switch failed ({error}); suspend the guest instead until the copy finishes",
            now,
        )
        self._fc_action = suspend
        return [suspend]

    def _suspend_result(self, action: Action, ok: bool, error: str | None, now: float) -> None:
        if ok:
            self.guest_suspended = True
            if self._fc is _FC.PENDING:
                self._fc = _FC.DONE
            return
        if self._fc is not _FC.PENDING:
            return
        self._fc_error = error
        if self._suspend_attempts < MAX_SUSPEND_ATTEMPTS:
            self._fc = _FC.RETRY
        else:
            self._fc = _FC.IDLE
            self._note(
                now,
                f"suspend failed {self._suspend_attempts} times ({error}); force-complete given up",
            )

    def _note(self, now: float, text: str) -> None:
        self._notes.append(Note(now, text))
