"""The job's max downtime: what libvirt accepted, what is on its way, what keeps failing.

One :class:`MaxDowntime` per migration is the only record of the value QEMU
works with; the policies decide *which* value they want and ask it for the
action, the monitor's progress reports read :attr:`MaxDowntime.applied`.
"""

from __future__ import annotations

from migrator.policy import Action, ActionKind, Note

# A failed migrateSetMaxDowntime is retried on the next pass, but one value is
# tried at most this many times so a persistent error cannot repeat every poll.
MAX_DOWNTIME_ATTEMPTS = 3


class MaxDowntime:
    """Bookkeeping of migrateSetMaxDowntime: one value in flight, bounded retries."""

    def __init__(self, notes: list[Note]) -> None:
        """``notes`` is the owning policy's list; a value given up on is noted there."""
        self.applied: int | None = None  # the last value libvirt accepted
        self._pending: int | None = None
        self._failures: dict[int, int] = {}
        self._notes = notes

    def wanted(self, value: int) -> bool:
        """Whether asking for ``value`` now would emit an action (not applied, not pending,
        not given up on)."""
        if value in (self.applied, self._pending):
            return False
        return not self.given_up(value)

    def given_up(self, value: int) -> bool:
        """``value`` failed :data:`MAX_DOWNTIME_ATTEMPTS` times and is not tried again."""
        return self._failures.get(value, 0) >= MAX_DOWNTIME_ATTEMPTS

    def set(self, value: int, reason: str, now: float) -> list[Action]:
        """The SET_MAX_DOWNTIME action for ``value``, or nothing when not :meth:`wanted`."""
        if not self.wanted(value):
            return []
        failures = self._failures.get(value, 0)
        if failures:
            reason += f"; attempt {failures + 1}/{MAX_DOWNTIME_ATTEMPTS} after a failure"
        self._pending = value
        return [Action(ActionKind.SET_MAX_DOWNTIME, value, reason, now)]

    def result(self, action: Action, ok: bool, now: float) -> None:
        """How a SET_MAX_DOWNTIME went."""
        value = int(action.value or 0)
        if self._pending == value:
            self._pending = None
        if ok:
            self.applied = value
            self._failures.pop(value, None)
            return
        failures = self._failures.get(value, 0) + 1
        self._failures[value] = failures
        if failures >= MAX_DOWNTIME_ATTEMPTS:
            self._notes.append(
                Note(now, f"max downtime {value} ms failed {failures} times; not retried")
            )
