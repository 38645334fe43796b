"""What a migration shows on the way and at the end: the progress bar and the summary.

``simulate`` and ``migrate`` (and any later command that follows a migration)
print the same bar on stderr and the same summary, or one JSON object, on
stdout.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from migrator import units
from migrator.cli.common import EXIT_FAILED, EXIT_OK
from migrator.progress import Progress


class ProgressBar:
    """One line rewritten in place on a terminal; sparse plain lines otherwise."""

    WIDTH = 30

    def __init__(self, stream: TextIO, enabled: bool = True):
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self._last_percent = -100.0
        self._drawn = False

    def update(self, p: Progress) -> None:
        if not self.enabled:
            return
        if not self.tty and p.percent - self._last_percent < 10 and not p.final:
            return  # a log file gets a line per 10 %, not one per poll
        self._last_percent = p.percent
        filled = int(self.WIDTH * p.percent / 100)
        eta = "?" if p.eta_seconds is None else units.human_seconds(p.eta_seconds)
        downtime = "-" if p.max_downtime_ms is None else f"{p.max_downtime_ms} ms"
        line = (
            f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {p.percent:5.1f}% "
            f"pass {p.iteration} remaining {units.human_bytes(p.data_remaining)} "
            f"max downtime {downtime} ETA {eta} (t={units.human_seconds(p.elapsed)})"
        )
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def print_summary(outcome: Any, stream: TextIO, clock_word: str) -> None:
    mode = f" ({outcome.mode})" if outcome.mode else ""
    downtime = "n/a" if outcome.downtime_ms is None else f"{outcome.downtime_ms} ms"
    passes = f"{outcome.passes} pass{'' if outcome.passes == 1 else 'es'}"
    stream.write(
        f"Outcome: {outcome.status}{mode} after {units.human_seconds(outcome.total_seconds)} "
        f"({clock_word}), downtime {downtime}, {passes}\n"
    )
    if outcome.error:
        stream.write(f"Error: {outcome.error}\n")
    if outcome.actions:
        stream.write("Actions:\n")
        for a in outcome.actions:
            value = "" if a.value is None else f" {a.value}"
            failed = "" if a.ok else f" FAILED: {a.error}"
            stream.write(f"  {a.at:9.1f} s  {a.action}{value}: {a.reason}{failed}\n")
    for note in outcome.notes:
        stream.write(f"Note: {note}\n")
    if getattr(outcome, "callback_error", None):
        stream.write(f"Callback error: {outcome.callback_error}\n")


def emit(outcome: Any, as_json: bool, clock_word: str, extra: dict | None = None) -> int:
    """The summary (or one JSON object) on stdout; the exit status for the outcome."""
    if as_json:
        doc = outcome.to_dict()
        doc.update(extra or {})
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_summary(outcome, sys.stdout, clock_word)
    return EXIT_OK if outcome.status == "completed" else EXIT_FAILED


def progress_bar(as_json: bool) -> ProgressBar:
    """The bar on stderr; with ``--json`` only when stderr is a terminal (a person watches)."""
    return ProgressBar(sys.stderr, enabled=not as_json or sys.stderr.isatty())
