"""Nova's tasks that end a pre-copy other than by converging, shared by every policy.

A policy decides *when* a migration should be forced or given up; this part
decides *how*, makes sure each happens once, retries what may be retried, and
knows the job's mode (in post-copy, guest suspended):

* **force-complete** (a user's request, the completion timeout's
  ``force_complete`` action, or a policy): post-copy when it is enabled, else
  suspend the guest; a failed post-copy switch falls back to a suspend at once,
  a failed suspend is retried once on the next pass.  Requested before the job
  runs, it waits for the first running sample.
* **the completion timeout** (``live_migration_completion_timeout`` s per GiB,
  re-read every pass) and its action; never enforced in post-copy.
* **one abort**, the completion timeout's or a policy's, retried once per
  monitor interval when libvirt refuses it.

Differences from Nova, each a fix of a known problem: the timeout's
force-complete runs in the same pass and only once (Nova queued it for the
next pass and again every 0.5 s after the deadline); the timeout abort is
emitted once and flagged ``timeout=True`` (Nova called abortJob on every pass
and reported 'cancelled'); force-complete runs once, and falls back to a
suspend when the post-copy switch fails; no timeout abort while a
force-complete is pending.
"""

from __future__ import annotations

import enum

from migrator.policy import (
    TIMEOUT_ACTION_FORCE_COMPLETE,
    Action,
    ActionKind,
    MonitorSettings,
    Note,
    Tunables,
    completion_timeout,
    timeout_expired,
)
from migrator.units import gib_text, secs_text

# A failed suspend (force-complete without post-copy) is retried once.
MAX_SUSPEND_ATTEMPTS = 2


class Stage(enum.Enum):
    """Where the force-complete, or the abort, is."""

    IDLE = "idle"  # never asked for, or the last attempt failed for good
    QUEUED = "queued"  # force-complete asked for before the job was running
    PENDING = "pending"  # emitted, result not reported yet
    RETRY = "retry"  # failed; tried again later
    DONE = "done"


class JobControl:
    """Force-complete, the completion timeout and the abort of one migration."""

    def __init__(self, settings: MonitorSettings, notes: list[Note]) -> None:
        """``notes`` is the owning policy's list: decisions not to act go there."""
        self.settings = settings
        self.in_post_copy = False
        # True once a SUSPEND succeeded: if the job then fails or is cancelled,
        # the loop must resume the guest on the source.
        self.guest_suspended = False
        self._notes = notes
        self._started = False
        # the force-complete (one)
        self._fc = Stage.IDLE
        self._fc_action: Action | None = None
        self._fc_requested_at = 0.0
        self._fc_error: str | None = None
        self._suspend_attempts = 0
        self._suspended_for: str | None = None  # why a policy suspended the guest itself
        self._timeout_fc_fired = False
        self._timeout_noted = False
        # the abort (one: the completion timeout's or a policy's)
        self._abort = Stage.IDLE
        self._abort_action: Action | None = None  # the latest abort emitted
        self._abort_by_timeout = False
        self._abort_cause = ""
        self._abort_failed_at = 0.0

    # -- what the policies read --------------------------------------------------

    def completion_timeout(self, tunables: Tunables) -> int:
        """This migration's completion timeout in s under ``tunables`` (0: off)."""
        return completion_timeout(tunables.completion_timeout, self.settings.data_gb)

    @property
    def switching_to_post_copy(self) -> bool:
        """A force-complete's post-copy switch is under way (no downtime change now)."""
        return (
            self._fc is Stage.PENDING
            and self._fc_action is not None
            and self._fc_action.kind is ActionKind.START_POST_COPY
        )

    @property
    def aborting(self) -> bool:
        """An abort was sent and not refused (pending or done)."""
        return self._abort in (Stage.PENDING, Stage.DONE)

    @property
    def abort_requested(self) -> bool:
        """Anyone asked for an abort, whatever became of it."""
        return self._abort is not Stage.IDLE

    @property
    def abort_by_timeout(self) -> bool:
        """The completion timeout asked for the abort: the policy has nothing left to try."""
        return self._abort_by_timeout

    # -- the loop's calls, through the policy ---------------------------------------

    def on_sample(self, now: float, tunables: Tunables) -> list[Action]:
        """A running sample: a queued or retried force-complete, then the timeout.

        Then a policy's failed abort, once its retry is due and nothing else
        was emitted.  In post-copy only a note that the timeout is not enforced.
        """
        self._started = True
        if self.in_post_copy:
            self._note_timeout_in_post_copy(now, tunables)
            return []
        actions = self._run_force_complete_tasks(now)
        actions += self._check_timeout(now, tunables)
        if not actions:
            actions = self._retry_policy_abort(now)
        return actions

    def request_force_complete(self, now: float) -> list[Action]:
        """Force completion once: post-copy if enabled, else suspend the guest.

        A request before the job runs is queued for the first running sample.
        """
        if self.in_post_copy:
            self._note(now, "force-complete ignored: the migration is already in post-copy")
            return []
        if self.aborting:
            self._note(now, f"force-complete ignored: the job is being aborted "
                            f"({self._abort_cause})")
            return []
        if self.guest_suspended and self._suspended_for is not None:
            self._note(now, f"force-complete ignored: the guest is already suspended "
                            f"({self._suspended_for})")
            return []
        if self._fc is not Stage.IDLE:
            self._note(now, f"force-complete ignored: already requested ({self._fc.value})")
            return []
        if not self._started:
            self._fc = Stage.QUEUED
            self._fc_requested_at = now
            self._note(now, "force-complete queued until the migration job is running")
            return []
        return self._begin_force_complete(now, "force-complete requested")

    def action_result(
        self, action: Action, ok: bool, error: str | None, now: float
    ) -> list[Action]:
        """Record how an action went; a failed force-complete switch falls back to SUSPEND.

        Only actions emitted here count: the user's own abort, say, is the loop's.
        """
        if action.kind is ActionKind.START_POST_COPY:
            return self._post_copy_result(action, ok, error, now)
        if action.kind is ActionKind.SUSPEND:
            self._suspend_result(ok, error, now)
        elif action.kind is ActionKind.ABORT and action == self._abort_action:
            if ok:
                self._abort = Stage.DONE
            else:
                self._abort = Stage.RETRY
                self._abort_failed_at = now
        return []

    def post_copy_started(self, now: float) -> None:
        """The job is in post-copy (our switch, or the event says so)."""
        self.in_post_copy = True
        if self.switching_to_post_copy:
            self._fc = Stage.DONE

    # -- what a policy may force on its own ------------------------------------------
    # (A policy's own START_POST_COPY needs nothing here: when it fails there is no
    # suspend fallback, the policy decides whether to try again.)

    def suspend(self, now: float, why: str, cause: str) -> list[Action]:
        """A policy's own force-complete by suspending the guest (retried once like Nova's).

        ``cause`` says, in a later note, why the guest is already suspended.
        """
        self._suspend_attempts = 1
        self._suspended_for = cause
        action = Action(ActionKind.SUSPEND, None, why, now)
        self._fc = Stage.PENDING
        self._fc_action = action
        return [action]

    def abort(self, now: float, why: str) -> list[Action]:
        """A policy gives up: abort the job (not the timeout's: outcome 'stalled')."""
        self._abort_cause = why
        return [self._emit_abort(now, why, timeout=False)]

    # -- force-complete ------------------------------------------------------------

    def _begin_force_complete(self, now: float, why: str) -> list[Action]:
        self._suspended_for = None
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
        self._fc = Stage.PENDING
        self._fc_action = action
        return [action]

    def _run_force_complete_tasks(self, now: float) -> list[Action]:
        if self._fc is Stage.QUEUED:
            return self._begin_force_complete(
                now,
                f"force-complete requested at {secs_text(self._fc_requested_at)} s, "
                "before the job was running",
            )
        if self._fc is Stage.RETRY:
            self._suspend_attempts += 1
            action = Action(
                ActionKind.SUSPEND,
                None,
                f"suspend failed ({self._fc_error}); attempt {self._suspend_attempts}/"
                f"{MAX_SUSPEND_ATTEMPTS}",
                now,
            )
            self._fc = Stage.PENDING
            self._fc_action = action
            return [action]
        return []

    def _post_copy_result(
        self, action: Action, ok: bool, error: str | None, now: float
    ) -> list[Action]:
        if ok:
            self.post_copy_started(now)
            return []
        if self.in_post_copy or action != self._fc_action or self._fc is not Stage.PENDING:
            return []  # a late report, or a policy's own switch: no suspend
        self._suspend_attempts = 1
        suspend = Action(
            ActionKind.SUSPEND,
            None,
            f"post-copy switch failed ({error}); suspend the guest instead until the copy finishes",
            now,
        )
        self._fc_action = suspend
        return [suspend]

    def _suspend_result(self, ok: bool, error: str | None, now: float) -> None:
        if ok:
            self.guest_suspended = True
            if self._fc is Stage.PENDING:
                self._fc = Stage.DONE
            return
        if self._fc is not Stage.PENDING:
            return
        self._fc_error = error
        if self._suspend_attempts < MAX_SUSPEND_ATTEMPTS:
            self._fc = Stage.RETRY
        else:
            self._fc = Stage.IDLE
            self._note(now, f"suspend failed {self._suspend_attempts} times ({error}); given up")

    # -- completion timeout and abort ---------------------------------------------------

    def _timeout_reason(self, now: float, tunables: Tunables, timeout: int) -> str:
        return (
            f"not completed after {secs_text(now)} s; completion timeout {timeout} s = "
            f"{tunables.completion_timeout} s/GiB x {gib_text(self.settings.data_gb)} GiB"
        )

    def _check_timeout(self, now: float, tunables: Tunables) -> list[Action]:
        timeout = self.completion_timeout(tunables)
        if not timeout_expired(now, timeout, self.in_post_copy):
            return []
        why = self._timeout_reason(now, tunables, timeout)
        if tunables.timeout_action == TIMEOUT_ACTION_FORCE_COMPLETE:
            return self._timeout_force_complete(now, why)
        # Any other value is treated as 'abort', the safe default: the guest stays put.
        if self._fc is Stage.PENDING:
            return []
        if self.abort_requested and not self._abort_by_timeout:
            if self.aborting:  # a policy's abort is under way: say so once
                if not self._timeout_noted:
                    self._timeout_noted = True
                    self._note(now, f"{why}: the job is already being aborted "
                                    f"({self._abort_cause})")
                return []
            # A policy's abort was refused: the timeout's own takes over at once.
        elif self.aborting:
            return []
        elif self._abort is Stage.RETRY:
            if now < self._abort_failed_at + max(self.settings.monitor_interval, 1):
                return []
            why += "; retrying the abort after it failed"
        self._abort_cause = "completion timeout"
        return [self._emit_abort(now, why, timeout=True)]

    def _timeout_force_complete(self, now: float, why: str) -> list[Action]:
        if self._timeout_fc_fired:
            return []
        self._timeout_fc_fired = True
        if self.guest_suspended and self._suspended_for is not None:
            self._note(now, f"{why}; the guest is already suspended ({self._suspended_for})")
            return []
        if self._fc is not Stage.IDLE:
            self._note(now, f"{why}; force-complete already {self._fc.value}")
            return []
        return self._begin_force_complete(now, f"{why}; timeout action force_complete")

    def _retry_policy_abort(self, now: float) -> list[Action]:
        """A policy's refused abort, again once per monitor interval."""
        if self._abort is not Stage.RETRY or self._abort_by_timeout:
            return []
        if now < self._abort_failed_at + max(self.settings.monitor_interval, 1):
            return []
        return [self._emit_abort(now, f"{self._abort_cause}; retrying the abort after it failed",
                                 timeout=False)]

    def _emit_abort(self, now: float, why: str, *, timeout: bool) -> Action:
        self._abort = Stage.PENDING
        self._abort_by_timeout = timeout
        self._abort_action = Action(ActionKind.ABORT, None, why, now, timeout=timeout)
        return self._abort_action

    def _note_timeout_in_post_copy(self, now: float, tunables: Tunables) -> None:
        timeout = self.completion_timeout(tunables)
        if self._timeout_noted or not timeout or now <= timeout:
            return
        self._timeout_noted = True
        self._note(
            now,
            f"{self._timeout_reason(now, tunables, timeout)}; not enforced in post-copy "
            "(the guest already runs on the destination)",
        )

    def _note(self, now: float, text: str) -> None:
        self._notes.append(Note(now, text))
