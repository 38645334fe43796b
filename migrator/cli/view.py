"""What a person or a script sees of a running migration.

One :class:`View` takes the migration's events (every job sample, every
action, the outcome) from the driver's hooks or from ``migrator watch`` and
hands them to its sinks: a bar rewritten in place on a terminal, timestamped
lines at a steady interval for a log, or JSON lines for a script.  The
judgement (percent, ETA, converging or not) is :mod:`migrator.progress`'s;
this module only decides when to show it and how.
"""

from __future__ import annotations

import datetime
import json
import os
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, Protocol, TextIO

from migrator import units
from migrator.jobstats import JobSample
from migrator.progress import SATURATED, WHY_PERCENT, Progress, ProgressTracker

DEFAULT_LOG_INTERVAL = 30.0  # seconds of the migration's clock between two log lines
BAR_REDRAW = 0.1  # seconds of real time between two redraws of the bar


class Sink(Protocol):
    """One way of showing a migration; each method may ignore what it does not show."""

    def sample(self, t: float, sample: JobSample, percent: float) -> None: ...
    def progress(self, report: Progress) -> None: ...
    def action(self, record: Any, report: Progress | None) -> None: ...
    def finish(self, outcome: Any, extra: dict[str, Any]) -> None: ...


class View:
    """Feeds one migration's events to its sinks, computing progress only when one is due.

    ``interval`` is the log cadence on the migration's clock; the bar is
    redrawn at most every :data:`BAR_REDRAW` seconds of real time (a simulated
    migration sends thousands of samples a second).
    """

    def __init__(self, sinks: Sequence[Sink], interval: float = DEFAULT_LOG_INTERVAL,
                 deadline: float | None = None, wall: Callable[[], float] = time.monotonic):
        self.sinks = list(sinks)
        self.interval = interval
        self.max_downtime_ms: int | None = None  # what the actions applied so far
        self.post_copy = False
        self.tracker = ProgressTracker(interval, lambda: self.max_downtime_ms,
                                       lambda: self.post_copy, deadline)
        self._wall = wall
        self._redrawn_at: float | None = None
        self._logged_at: float | None = None
        self.last: Progress | None = None

    def sample(self, t: float, sample: JobSample) -> None:
        running = self.tracker.observe(sample)
        for sink in self.sinks:
            sink.sample(t, sample, self.tracker.percent)
        if not running:
            return
        log_due = self._logged_at is None or t - self._logged_at >= self.interval
        wall = self._wall()
        bar_due = self._redrawn_at is None or wall - self._redrawn_at >= BAR_REDRAW
        if not (log_due or bar_due):
            return
        self.last = report = self.tracker.report(sample, t)
        if log_due:
            self._logged_at = t
        self._redrawn_at = wall
        for sink in self.sinks:
            if log_due or not getattr(sink, "log_cadence", False):
                sink.progress(report)

    def action(self, record: Any) -> None:
        """An action taken (or seen): it changes what the outlook assumes."""
        if record.ok and record.action == "set_max_downtime" and record.value is not None:
            self.max_downtime_ms = int(record.value)
        if record.ok and record.action == "start_post_copy":
            self.post_copy = True
        for sink in self.sinks:
            sink.action(record, self.last)

    def finish(self, outcome: Any, **extra: Any) -> None:
        """The outcome; ``extra`` fields go into the JSON outcome line (e.g. ``interrupted``)."""
        for sink in self.sinks:
            sink.finish(outcome, extra)


# -- a bar for a person at a terminal ---------------------------------------------------------


def _ahead(report: Progress) -> str:
    """ETA only while converging; otherwise, briefly, why not."""
    if report.converging and report.eta_seconds is not None:
        return f"ETA {units.human_seconds(report.eta_seconds)}"
    if report.outlook == "first pass" and report.eta_seconds is not None:
        return f"first pass, ends in {units.human_seconds(report.eta_seconds)}"
    if report.converging is False and report.outlook.startswith("not converging: "):
        dirtied, sent = report.dirty_rate_bytes, report.transfer_rate_bytes
        at_least = ">=" if dirtied >= SATURATED * sent else ""
        return (f"not converging: dirties {at_least}{units.human_bytes(dirtied)}/s, "
                f"link carries {units.human_bytes(sent)}/s")
    return report.outlook.split(" (")[0]


def bar_fields(report: Progress, width: int) -> list[tuple[int, str]]:
    """(priority, text) of each field of the bar; the lowest priorities go first when narrow.

    When the migration does not converge, saying so outranks everything else.
    """
    filled = int(width * report.percent / 100)
    downtime = f"downtime ~{report.expected_downtime_ms} ms"
    if report.max_downtime_ms is not None:
        downtime += f" (max {report.max_downtime_ms} ms)"
    fields = [
        (3, f"[{'#' * filled}{'.' * (width - filled)}]"),
        (9, f"{report.percent:5.1f}%"),
        (7, f"pass {report.iteration}"),
        (6, f"{units.human_bytes(report.data_remaining)} left"),
        (10 if report.converging is False else 8, _ahead(report)),
        # The rates, unless the verdict already names them.
        (5, "" if report.converging is False else
         f"sent {units.human_bytes(report.transfer_rate_bytes)}/s, "
         f"dirtied {units.human_bytes(report.dirty_rate_bytes)}/s"),
        (4, downtime),
        (2, f"throttle {report.throttle}%" if report.throttle else ""),
        (1, f"t {units.human_seconds(report.elapsed)}"),
    ]
    return [(p, text) for p, text in fields if text]


def fit(fields: list[tuple[int, str]], columns: int) -> str:
    """The fields in order, leaving out the least important until the line fits."""
    kept = list(fields)
    while len(kept) > 1 and len("  ".join(t for _, t in kept)) >= columns:
        kept.remove(min(kept, key=lambda f: f[0]))
    return "  ".join(t for _, t in kept)[: max(columns - 1, 1)]


class TerminalBar:
    """One line rewritten in place on a terminal, with a legend printed once above it."""

    def __init__(self, stream: TextIO, columns: int | None = None):
        self.stream = stream
        self._columns = columns
        self._drawn = False
        self._legend_shown = False

    def columns(self) -> int:
        if self._columns is not None:
            return self._columns
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            return 100

    def sample(self, t: float, sample: JobSample, percent: float) -> None:
        pass

    def _line(self, report: Progress) -> str:
        columns = self.columns()
        return fit(bar_fields(report, 20 if columns >= 150 else 10), columns)

    def _legend(self) -> None:
        """Once, before anything else: what the percentage means."""
        if not self._legend_shown:
            legend = textwrap.fill(f"Progress: {WHY_PERCENT}.", width=max(self.columns() - 1, 20))
            self.stream.write(legend + "\n")
            self._legend_shown = True

    def progress(self, report: Progress) -> None:
        self._legend()
        self.stream.write("\r\x1b[K" + self._line(report))
        self.stream.flush()
        self._drawn = True

    def action(self, record: Any, report: Progress | None) -> None:
        """Actions scroll above the bar: the line is cleared, the action printed, the bar kept."""
        self._legend()
        self.stream.write("\r\x1b[K" + action_text(record) + "\n")
        if report is not None and self._drawn:
            self.stream.write(self._line(report))
        self.stream.flush()

    def finish(self, outcome: Any, extra: dict[str, Any]) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def action_text(record: Any) -> str:
    value = "" if record.value is None else f" {record.value}"
    failed = "" if record.ok else f" FAILED ({record.error})"
    return f"at {units.human_seconds(record.at)}: {record.action}{value}{failed}: {record.reason}"


# -- lines for a log --------------------------------------------------------------------------


def wall_stamp(t: float) -> str:  # noqa: ARG001 - same signature as sim_stamp
    """Local time, as oslo.log writes it."""
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def sim_stamp(t: float) -> str:
    """The simulated clock: hours, minutes and seconds since the simulated start."""
    return f"sim+{int(t // 3600):02d}:{int(t % 3600 // 60):02d}:{t % 60:04.1f}"


def progress_line(report: Progress) -> str:
    """In the spirit of Nova's "Migration running for N secs, memory N% remaining" line."""
    total, remaining = report.memory_total, report.memory_remaining
    share = 100 * remaining // total if total else 0
    line = (f"migration running for {report.elapsed:.0f} secs, memory {share}% remaining "
            f"(bytes processed={report.memory_processed}, remaining={remaining}, total={total})")
    if report.disk_total:
        line += (f", disk (bytes processed={report.disk_processed}, "
                 f"remaining={report.disk_remaining}, total={report.disk_total})")
    maximum = "" if report.max_downtime_ms is None else f" (max {report.max_downtime_ms} ms)"
    line += (f"; pass {report.iteration}, sent {units.human_bytes(report.transfer_rate_bytes)}/s, "
             f"dirtied {units.human_bytes(report.dirty_rate_bytes)}/s, expected downtime "
             f"{report.expected_downtime_ms} ms{maximum}, throttle {report.throttle}%; ")
    if report.converging and report.eta_seconds is not None:
        return line + f"converging, ETA {units.human_seconds(report.eta_seconds)}"
    return line + report.outlook


class LogLines:
    """A timestamped line per log interval and per action, for a file or a pipe."""

    log_cadence = True

    def __init__(self, stream: TextIO, stamp: Callable[[float], str] = wall_stamp):
        self.stream = stream
        self.stamp = stamp

    def _write(self, t: float, text: str) -> None:
        self.stream.write(f"{self.stamp(t)} {text}\n")
        self.stream.flush()

    def sample(self, t: float, sample: JobSample, percent: float) -> None:
        pass

    def progress(self, report: Progress) -> None:
        self._write(report.elapsed, progress_line(report))

    def action(self, record: Any, report: Progress | None) -> None:
        self._write(record.at, "action " + action_text(record))

    def finish(self, outcome: Any, extra: dict[str, Any]) -> None:
        mode = f" ({outcome.mode})" if outcome.mode else ""
        self._write(outcome.total_seconds, f"migration {outcome.status}{mode} after "
                    f"{units.human_seconds(outcome.total_seconds)}")


# -- JSON lines for a script ------------------------------------------------------------------


class JsonLines:
    """Every sample, every progress report (log cadence), every action and the outcome."""

    log_cadence = True

    def __init__(self, stream: TextIO):
        self.stream = stream

    def _emit(self, doc: dict[str, Any]) -> None:
        self.stream.write(json.dumps(doc, sort_keys=False) + "\n")
        self.stream.flush()

    def sample(self, t: float, sample: JobSample, percent: float) -> None:
        self._emit({"event": "sample", "t": round(t, 3), "percent": round(percent, 2),
                    **asdict(sample), "dirty_rate_bytes": sample.dirty_rate_bytes})

    def progress(self, report: Progress) -> None:
        self._emit({"event": "progress", **report.to_dict()})

    def action(self, record: Any, report: Progress | None) -> None:
        self._emit({"event": "action", **record.to_dict()})

    def finish(self, outcome: Any, extra: dict[str, Any]) -> None:
        self._emit({"event": "outcome", **outcome.to_dict(), **extra})
