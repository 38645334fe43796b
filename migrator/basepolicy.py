"""What every policy is made of: Nova's job control, the max downtime's bookkeeping, notes.

A policy subclasses :class:`BasePolicy` and adds only how it chooses the max
downtime and when it forces or gives up; the parts below answer everything
else the monitor asks (:class:`~migrator.policy.Policy`), the same way for
every policy.
"""

from __future__ import annotations

from migrator.jobcontrol import JobControl
from migrator.maxdowntime import MaxDowntime
from migrator.policy import Action, ActionKind, MonitorSettings, Note, Tunables


class BasePolicy:
    """The shared parts of a policy; subclasses implement ``on_sample``."""

    name = "base"

    def __init__(self, settings: MonitorSettings) -> None:
        self.settings = settings
        self._notes: list[Note] = []
        self._downtime = MaxDowntime(self._notes)
        self._jobs = JobControl(settings, self._notes)

    @property
    def in_post_copy(self) -> bool:
        """True once the job is in post-copy: nothing more is decided."""
        return self._jobs.in_post_copy

    @property
    def guest_suspended(self) -> bool:
        """True once a suspend succeeded: the loop resumes the guest if the job fails."""
        return self._jobs.guest_suspended

    @property
    def applied_downtime_ms(self) -> int | None:
        """The last max downtime the loop reported as applied (None: not yet)."""
        return self._downtime.applied

    def completion_timeout(self, tunables: Tunables) -> int:
        """This migration's completion timeout in s under ``tunables`` (0: off)."""
        return self._jobs.completion_timeout(tunables)

    def pop_notes(self) -> list[Note]:
        notes = list(self._notes)
        self._notes.clear()
        return notes

    def request_force_complete(self, now: float) -> list[Action]:
        return self._jobs.request_force_complete(now)

    def next_sample_in(self, now: float) -> float | None:
        """A clock-driven policy decides at any poll: None (the poll interval)."""
        return None

    def action_result(
        self, action: Action, ok: bool, error: str | None, now: float
    ) -> list[Action]:
        """Downtime results to the bookkeeping, the rest to Nova's tasks (a failed
        force-complete switch falls back to SUSPEND)."""
        if action.kind is ActionKind.SET_MAX_DOWNTIME:
            self._downtime.result(action, ok, now)
            return []
        return self._jobs.action_result(action, ok, error, now)

    def post_copy_started(self, now: float) -> None:
        self._jobs.post_copy_started(now)

    def _note(self, now: float, text: str) -> None:
        self._notes.append(Note(now, text))
