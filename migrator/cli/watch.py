"""``migrator watch``: follow a migration already running on a host, read-only.

It may have been started by Nova, by ``virsh migrate`` or by another process:
the same progress, the actions that show in libvirt's answers, and the same
summary when it ends.  Ctrl-C detaches and leaves the migration as it is.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from migrator import exception
from migrator.cli import common, report, view
from migrator.cli.common import EXIT_INTERRUPTED, UsageError
from migrator.clock import Clock, RealClock


def register(sub: Any) -> None:
    p = sub.add_parser(
        "watch",
        help="follow a migration already running on a host (read-only)",
        description="Attach to the outgoing migration of DOMAIN on the libvirt at --connect, "
        "whoever started it (Nova, virsh, another process), and show its progress, the "
        "actions that show in libvirt's answers (max downtime, bandwidth cap, auto-converge, "
        "post-copy, pause) and how it ended. Read-only: nothing is changed. Ctrl-C detaches; "
        "the migration goes on.",
        epilog=report.OUTPUT_EPILOG,
    )
    p.add_argument("--connect", required=True, type=common.checked_text, metavar="URI",
                   help="libvirt URI of the source host (opened read-only)")
    p.add_argument("domain", type=common.checked_text, metavar="DOMAIN")
    p.add_argument("--dest-connect", type=common.checked_text, metavar="URI",
                   help="libvirt URI of the destination (read-only): establishes that the "
                        "guest arrived and reads the actual downtime")
    p.add_argument("--interval", type=common.seconds, default=0.5, metavar="SECONDS",
                   help="seconds between two looks at the job (default 0.5)")
    p.add_argument("--establish-timeout", type=common.seconds, default=60.0, metavar="SECONDS",
                   help="once the job is over, how long to look for where the guest runs "
                        "before saying 'unknown' (default 60)")
    report.add_output_args(p)
    p.set_defaults(func=run)


def clock() -> Clock:
    """The clock the watcher waits on (tests put the simulator's here)."""
    return RealClock()


def _open(lv: Any, uri: str, name: str) -> tuple[Any, Any]:
    try:
        conn = lv.openReadOnly(uri)
    except lv.libvirtError as exc:
        raise UsageError(f"cannot connect to {uri}: {exc}") from None
    try:
        return conn, conn.lookupByName(name)
    except lv.libvirtError as exc:
        conn.close()
        raise UsageError(f"{name} on {uri}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from migrator import facts, watch

    common.load_conf(args)  # logging; no [libvirt] option applies to a job we did not start
    lv = common.libvirt_module()
    conn, domain = _open(lv, args.connect, args.domain)
    conns: list[Any] = [conn]
    uuid = domain.UUIDString()
    dest = facts.Destination(lv.openReadOnly, args.dest_connect, uuid)
    shown = report.make_view(args, view.wall_stamp)
    how = watch.Watch(clock=clock(), interval=args.interval or 0.5, on_sample=shown.sample,
                      on_action=shown.action, dest=dest.facts,
                      downtime=lambda: _downtime(lv, args.dest_connect, uuid, conns),
                      establish_timeout=args.establish_timeout)
    try:
        with _detach_on_ctrl_c(how.stop):
            outcome = watch.follow(domain, how)
    except exception.MigrationRefused as exc:
        raise UsageError(f"{exc} (on {args.connect})") from None
    finally:
        facts.close_all(conns)
    if outcome is None:
        sys.stderr.write("\nmigrator: detached; the migration goes on, untouched\n")
        return EXIT_INTERRUPTED
    shown.finish(outcome)
    return report.emit(outcome, args, "job time")


def _downtime(lv: Any, uri: str | None, uuid: str, conns: list[Any]) -> int | None:
    """The destination's record of the downtime (it keeps the completed job's stats)."""
    from migrator import watch

    if not uri:
        return None
    try:
        conns.append(lv.openReadOnly(uri))
        return watch.downtime_on(conns[-1].lookupByUUIDString(uuid))
    except lv.libvirtError:
        return None


class _detach_on_ctrl_c:  # noqa: N801 - used as a context manager, like contextlib's
    """SIGINT sets ``stop`` (the loop ends at its next look) instead of raising."""

    def __init__(self, stop: threading.Event):
        self.stop = stop
        self._previous: Any = None

    def __enter__(self) -> None:
        self._previous = signal.signal(signal.SIGINT, lambda signum, frame: self.stop.set())

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)
