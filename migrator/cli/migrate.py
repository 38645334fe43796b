"""``migrator migrate``: a real live migration through the driver, Ctrl-C aborts it."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from migrator import conf as mconf
from migrator import exception
from migrator.cli import common, report, view
from migrator.cli.common import EXIT_INTERRUPTED
from migrator.jobstats import data_gb


def register(sub: Any) -> None:
    p = sub.add_parser(
        "migrate",
        help="live-migrate a real guest",
        description="Live-migrate DOMAIN to DEST through libvirt at --connect. Ctrl-C aborts "
        "the migration; the guest stays on the source.",
        epilog=report.OUTPUT_EPILOG,
    )
    common.add_config_arg(p)
    p.add_argument("--connect", required=True, type=common.checked_text, metavar="URI",
                   help="libvirt URI of the source host")
    p.add_argument("domain", type=common.checked_text, metavar="DOMAIN")
    p.add_argument("dest", type=common.checked_text, metavar="DEST",
                   help="destination host name")
    p.add_argument("--inbound-addr", type=common.checked_text,
                   help="the destination's live_migration_inbound_addr")
    common.add_block_args(p)
    report.add_output_args(p)
    p.set_defaults(func=run)


def _open_domain(uri: str, name: str) -> tuple[Any, Any]:
    """(connection, domain) on the source libvirt; MigrationRefused when either is missing."""
    lv = common.libvirt_module()
    try:
        conn = lv.open(uri)
        return conn, conn.lookupByName(name)
    except lv.libvirtError as exc:
        raise exception.MigrationRefused(f"{uri}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from migrator.driver import LiveMigrationDriver

    conf = common.load_conf(args)
    disks = common.check_disks(args)
    conn, domain = _open_domain(args.connect, args.domain)
    driver = LiveMigrationDriver(conf, conn)
    driver.init_host()
    shown = report.make_view(args, view.wall_stamp, _deadline(conf, domain, args))
    handle = driver.live_migration(
        domain,
        args.dest,
        inbound_addr=args.inbound_addr,
        block_migration=args.block_migration,
        disks=disks,
        post_method=lambda outcome: None,
        recover_method=lambda outcome: None,
        on_sample=shown.sample,
        on_action=shown.action,
    )
    interrupted = _wait_aborting_on_ctrl_c(handle)
    conn.close()
    outcome = handle.outcome
    assert outcome is not None
    shown.finish(outcome, interrupted=interrupted)
    code = report.emit(outcome, args, "real time", {"interrupted": interrupted})
    return EXIT_INTERRUPTED if interrupted and not outcome.succeeded else code


def _deadline(conf: Any, domain: Any, args: argparse.Namespace) -> float | None:
    """When the completion timeout acts, as the driver scales it (disk sizes unknown here)."""
    per_gib = int(mconf.read_values(conf)["live_migration_completion_timeout"])
    return per_gib * data_gb(int(domain.info()[1]) * 1024, []) if per_gib else None


def _wait_aborting_on_ctrl_c(handle: Any) -> bool:
    """Wait for the outcome; Ctrl-C aborts the job (the guest stays). True if interrupted."""
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
    return bool(interrupted)
