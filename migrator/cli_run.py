"""``migrator simulate`` and ``migrator migrate``: one migration through the real driver.

Both show the same live progress bar and end with the same summary (or one
JSON object with ``--json``).  ``simulate`` runs against the built-in
simulated hypervisor on a virtual clock; ``migrate`` against real libvirt,
where Ctrl-C aborts the job and leaves the guest on the source.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from collections.abc import Callable
from typing import Any, TextIO

from migrator import exception, units
from migrator.progress import Progress

EXIT_OK = 0
EXIT_FAILED = 1


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


def _size(text: str) -> int:
    try:
        return units.parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rate(text: str) -> float:
    try:
        return units.parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _dirty_rate(text: str) -> float:
    try:
        return units.parse_rate(text, zero_ok=True)  # an idle guest dirties nothing
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    if not re.fullmatch(r"[0-9]{1,8}(\.[0-9]{1,6})?", text):
        raise argparse.ArgumentTypeError(f"{ascii(text[:40])} is not a number of seconds")
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{ascii(text[:40])} is not a number of seconds") from None
    if value < 0 or value != value or value > 10**7:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 10000000 seconds")
    return value


def register(sub: Any, add_config_arg: Callable[..., None], checked_text: Any) -> None:
    """Add ``simulate`` and ``migrate`` to the ``migrator`` parser."""
    p = sub.add_parser(
        "simulate",
        help="run a migration through the driver against the simulated hypervisor",
        description="Run one migration through migrator's real driver and monitor against "
        "the built-in simulated hypervisor (virtual time: hours take well under a second).",
    )
    add_config_arg(p)
    p.add_argument("--memory", type=_size, default=units.parse_size("8GiB"),
                   help="guest memory (default 8GiB)")
    p.add_argument("--working-set", type=_size,
                   help="memory the guest keeps rewriting (default: all of it)")
    p.add_argument("--dirty-rate", type=_dirty_rate, default=units.parse_rate("400MiB/s"),
                   help="rate at which the guest dirties memory (default 400MiB/s; 0: idle)")
    p.add_argument("--bandwidth", type=_rate, default=units.parse_rate("10Gbit/s"),
                   help="link speed (default 10Gbit/s); live_migration_bandwidth still caps it")
    p.add_argument("--block-disk", type=_size, metavar="SIZE",
                   help="also block-migrate a local disk of this size")
    p.add_argument("--paused", action="store_true", help="the guest is paused")
    p.add_argument("--force-complete-at", type=_seconds, metavar="SECONDS")
    p.add_argument("--abort-at", type=_seconds, metavar="SECONDS")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", type=checked_text, metavar="FILE.png",
                   help="write a PNG of remaining bytes, max downtime and actions over time")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "migrate",
        help="live-migrate a real guest",
        description="Live-migrate DOMAIN to DEST through libvirt at --connect. Ctrl-C aborts "
        "the migration; the guest stays on the source.",
    )
    add_config_arg(p)
    p.add_argument("--connect", required=True, type=checked_text, metavar="URI",
                   help="libvirt URI of the source host")
    p.add_argument("domain", type=checked_text, metavar="DOMAIN")
    p.add_argument("dest", type=checked_text, metavar="DEST", help="destination host name")
    p.add_argument("--inbound-addr", type=checked_text,
                   help="the destination's live_migration_inbound_addr")
    p.add_argument("--block-migration", action="store_true")
    p.add_argument("--disk", action="append", type=checked_text, metavar="NAME")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_migrate)


def _driver_conf(config_files: list[str] | None):
    from migrator.cli import _load_conf

    return _load_conf(config_files or [])


def _emit(outcome: Any, as_json: bool, clock_word: str, extra: dict | None = None) -> int:
    if as_json:
        doc = outcome.to_dict()
        doc.update(extra or {})
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_summary(outcome, sys.stdout, clock_word)
    return EXIT_OK if outcome.status == "completed" else EXIT_FAILED


def cmd_simulate(args: argparse.Namespace) -> int:
    from migrator import simulate

    conf = _driver_conf(args.config_file)
    if args.plot:
        _check_plot_target(args.plot)  # before a long run, not after it
    bar = ProgressBar(sys.stderr, enabled=not args.json or sys.stderr.isatty())
    try:
        result = simulate.run(
            conf,
            memory=args.memory,
            working_set=args.working_set,
            dirty_rate=args.dirty_rate,
            bandwidth=args.bandwidth,
            block_disk=args.block_disk,
            paused=args.paused,
            force_complete_at=args.force_complete_at,
            abort_at=args.abort_at,
            on_progress=bar.update,
        )
    finally:
        bar.close()
    if args.plot:
        simulate.plot(result, args.plot)
    return _emit(result.outcome, args.json, "simulated")


def _check_plot_target(path: str) -> None:
    from migrator.cli import UsageError

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'migrator[plot]'") from None
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise UsageError(f"--plot {path}: cannot write in {folder}")


def cmd_migrate(args: argparse.Namespace) -> int:
    from migrator import _libvirt
    from migrator.driver import LiveMigrationDriver

    conf = _driver_conf(args.config_file)
    if args.disk and not args.block_migration:
        raise exception.MigrationRefused("--disk selects disks to copy and needs "
                                         "--block-migration")
    lv = _libvirt.module()
    try:
        conn = lv.open(args.connect)
        domain = conn.lookupByName(args.domain)
    except lv.libvirtError as exc:
        raise exception.MigrationRefused(f"{args.connect}: {exc}") from None
    driver = LiveMigrationDriver(conf, conn)
    driver.init_host()
    bar = ProgressBar(sys.stderr, enabled=not args.json or sys.stderr.isatty())
    handle = driver.live_migration(
        domain,
        args.dest,
        inbound_addr=args.inbound_addr,
        block_migration=args.block_migration,
        disks=tuple(args.disk or ()),
        post_method=lambda outcome: None,
        recover_method=lambda outcome: None,
        on_progress=bar.update,
    )
    interrupted = []

    def on_sigint(signum, frame):  # noqa: ARG001 - signal handler signature
        interrupted.append(True)
        sys.stderr.write("\nmigrator: interrupted, aborting the migration...\n")
        handle.abort()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        while handle.wait(0.2) is None:
            pass
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
        conn.close()
    outcome = handle.outcome
    assert outcome is not None
    code = _emit(outcome, args.json, "real time", {"interrupted": bool(interrupted)})
    return 130 if interrupted and not outcome.succeeded else code
