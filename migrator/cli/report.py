"""What a migration shows on the way and at the end: the view's sinks, and the summary.

``simulate``, ``migrate`` and ``watch`` show the same progress on stderr (a bar
on a terminal, timestamped lines otherwise) and end with the same summary on
stdout, or one JSON object (``--json``), or a stream of JSON lines
(``--json-lines``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

from migrator import units
from migrator.cli import common, view
from migrator.cli.common import EXIT_FAILED, EXIT_OK
from migrator.progress import WHY_PERCENT

OUTPUT_EPILOG = (
    "Progress goes to stderr: a bar on a terminal, otherwise a timestamped line every "
    "--progress-interval seconds and one per action. " + WHY_PERCENT[0].upper()
    + WHY_PERCENT[1:] + "."
)


def add_output_args(p: argparse.ArgumentParser) -> None:
    """``--json``, ``--json-lines``, ``--progress-interval``, ``--quiet``."""
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true",
                     help="print one JSON object at the end instead of the summary")
    fmt.add_argument("--json-lines", action="store_true",
                     help="stream every sample, progress report, action and the outcome as "
                          "JSON, one object per line, on stdout")
    p.add_argument("--progress-interval", type=common.seconds, metavar="SECONDS",
                   default=view.DEFAULT_LOG_INTERVAL,
                   help="seconds of the migration's clock between two progress lines when "
                        "stderr is not a terminal, and between two 'progress' JSON lines "
                        f"(default {view.DEFAULT_LOG_INTERVAL:g})")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


def make_view(args: argparse.Namespace, stamp: Callable[[float], str],
              deadline: float | None = None, stderr: TextIO | None = None) -> view.View:
    """The sinks the arguments and the streams ask for.

    stdout carries results only (the summary, ``--json``, ``--json-lines``);
    progress for a person goes to stderr, as a bar when it is a terminal.
    """
    stderr = stderr or sys.stderr
    sinks: list[view.Sink] = []
    if args.json_lines:
        sinks.append(view.JsonLines(sys.stdout))
    if not args.quiet:
        if stderr.isatty():
            sinks.append(view.TerminalBar(stderr))
        elif not (args.json or args.json_lines):
            sinks.append(view.LogLines(stderr, stamp))
    return view.View(sinks, interval=args.progress_interval, deadline=deadline)


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


def emit(outcome: Any, args: argparse.Namespace, clock_word: str,
         extra: dict | None = None) -> int:
    """The summary, or one JSON object, on stdout (nothing more after JSON lines).

    Returns the exit status for the outcome.
    """
    if args.json:
        doc = outcome.to_dict()
        doc.update(extra or {})
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not args.json_lines:
        print_summary(outcome, sys.stdout, clock_word)
    return EXIT_OK if outcome.status == "completed" else EXIT_FAILED
