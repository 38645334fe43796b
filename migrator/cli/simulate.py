"""``migrator simulate``: one migration through the real driver on the simulated hypervisor.

Virtual time: a two-hour migration takes well under a second.  Same progress
bar, summary and ``--json`` object as ``migrate``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from migrator import conf as mconf
from migrator import units
from migrator.cli import common, report, view
from migrator.cli.common import UsageError
from migrator.jobstats import data_gb


def register(sub: Any) -> None:
    p = sub.add_parser(
        "simulate",
        help="run a migration through the driver against the simulated hypervisor",
        description="Run one migration through migrator's real driver and monitor against "
        "the built-in simulated hypervisor (virtual time: hours take well under a second).",
        epilog=report.OUTPUT_EPILOG,
    )
    common.add_config_arg(p)
    p.add_argument("--memory", type=common.size, default=units.parse_size("8GiB"),
                   help="guest memory (default 8GiB)")
    p.add_argument("--working-set", type=common.size,
                   help="memory the guest keeps rewriting (default: all of it)")
    p.add_argument("--dirty-rate", type=common.dirty_rate, default=units.parse_rate("400MiB/s"),
                   help="rate at which the guest dirties memory (default 400MiB/s; 0: idle)")
    p.add_argument("--bandwidth", type=common.rate, default=units.parse_rate("10Gbit/s"),
                   help="link speed (default 10Gbit/s); live_migration_bandwidth still caps it")
    p.add_argument("--block-disk", type=common.size, metavar="SIZE",
                   help="also block-migrate a local disk of this size")
    p.add_argument("--paused", action="store_true", help="the guest is paused")
    p.add_argument("--force-complete-at", type=common.seconds, metavar="SECONDS")
    p.add_argument("--abort-at", type=common.seconds, metavar="SECONDS")
    report.add_output_args(p)
    p.add_argument("--plot", type=common.checked_text, metavar="FILE.png",
                   help="write a PNG of remaining bytes, max downtime and actions over time")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from migrator import simulate

    conf = common.load_conf(args)
    if args.working_set is not None and args.working_set > args.memory:
        raise UsageError(f"--working-set {units.human_bytes(args.working_set)} is larger than "
                         f"--memory {units.human_bytes(args.memory)}: a guest rewrites only "
                         "memory it has")
    if args.plot:
        _check_plot_target(args.plot)  # before a long run, not after it
    shown = report.make_view(args, view.sim_stamp, _deadline(conf, args))
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
        on_sample=shown.sample,
        on_action=shown.action,
    )
    shown.finish(result.outcome)
    if args.plot:
        simulate.plot(result, args.plot)
    return report.emit(result.outcome, args, "simulated")


def _deadline(conf: Any, args: argparse.Namespace) -> float | None:
    """When the completion timeout acts (s), scaled like the driver's (RAM and disk, >= 2 GiB)."""
    per_gib = int(mconf.read_values(conf)["live_migration_completion_timeout"])
    disks = [args.block_disk] if args.block_disk else []
    return per_gib * data_gb(args.memory, disks) if per_gib else None


def _check_plot_target(path: str) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'migrator[plot]'") from None
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise UsageError(f"--plot {path}: cannot write in {folder}")
