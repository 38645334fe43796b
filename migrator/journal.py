"""What one migration's monitor did and noticed: its actions and notes, each logged once.

A problem seen on every poll (an unknown job type, a failing ``jobStats``, a hook
that raises) is logged the first time and counted afterwards; :meth:`summarise`
adds one line per repeated problem when the migration settles.
"""

from __future__ import annotations

import logging as std_logging
from collections.abc import Callable
from dataclasses import dataclass

from oslo_log import log as logging

from migrator.outcome import ActionRecord

LOG = logging.getLogger("migrator.monitor")


@dataclass
class _Repeat:
    count: int
    first: float
    last: float


class Journal:
    def __init__(self, label: str = "",
                 on_action: Callable[[ActionRecord], None] | None = None):
        self.label = label
        self._on_action = on_action  # told of each action as it is recorded
        self.actions: list[ActionRecord] = []
        self.notes: list[str] = []
        self._repeats: dict[str, _Repeat] = {}

    def record(self, kind: str, value: int | float | None, reason: str, ok: bool,
               error: str | None, at: float) -> None:
        record = ActionRecord(at, str(kind), value, reason, ok, error)
        self.actions.append(record)
        if self._on_action is not None:
            self._on_action(record)
        if ok:
            LOG.info("%s%s%s: %s", self.label, kind, "" if value is None else f" {value}",
                     reason)
        else:
            LOG.warning("%s%s failed (%s): %s", self.label, kind, error, reason)

    def note(self, text: str, level: int = std_logging.INFO) -> None:
        self.notes.append(text)
        LOG.log(level, "%s%s", self.label, text)

    def once(self, text: str, at: float, level: int = std_logging.INFO) -> None:
        """Note ``text`` the first time; count it afterwards."""
        seen = self._repeats.get(text)
        if seen is None:
            self._repeats[text] = _Repeat(1, at, at)
            self.note(text, level)
        else:
            seen.count += 1
            seen.last = at

    def summarise(self) -> None:
        """One line per problem that repeated, then forget them."""
        for text, seen in self._repeats.items():
            if seen.count > 1:
                self.note(f"{text} (seen {seen.count} times over "
                          f"{seen.last - seen.first:.1f} s)")
        self._repeats.clear()
