"""``migrator plan``: the exact ``migrateToURI3`` call a configuration makes, and why."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from migrator import conf as mconf
from migrator import exception, flags
from migrator.cli import common, prediction
from migrator.cli.common import EXIT_OK, UsageError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "plan",
        help="print the migrateToURI3 call (flags, URIs, params) and why",
        description="Print the exact migrateToURI3 call migrator would make, with the reason "
        "for every flag and parameter. Nothing is migrated.",
    )
    common.add_config_arg(p, required=True)
    p.add_argument("--dest", required=True, type=common.checked_text,
                   help="destination host name")
    p.add_argument(
        "--inbound-addr",
        type=common.checked_text,
        help="the destination's live_migration_inbound_addr (split migration network)",
    )
    common.add_block_args(p)
    p.add_argument("--paused", action="store_true", help="the guest is paused")
    p.add_argument("--vfio", action="store_true", help="the guest has a VFIO/mdev device")
    p.add_argument("--libvirt-version", type=common.version, metavar="X.Y.Z")
    p.add_argument("--qemu-version", type=common.version, metavar="X.Y.Z")
    p.add_argument("--connect", type=common.checked_text, metavar="URI",
                   help="read the versions from this libvirt (and measure --domain there)")
    p.add_argument("--domain", type=common.checked_text, metavar="NAME",
                   help="also predict migrating this guest of --connect (measures it)")
    prediction.add_guest_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    conf = common.load_conf(args)
    options, virt_type, _values = mconf.load(conf)
    host, notes = host_facts(args, virt_type)
    migration = flags.MigrationFacts(
        dest=args.dest,
        inbound_addr=args.inbound_addr,
        block_migration=args.block_migration,
        disks=common.check_disks(args),
        paused=args.paused,
        vfio=args.vfio,
    )
    plan = flags.plan(options, host, migration)
    guess = prediction.for_plan(conf, args)
    if args.json:
        doc = plan.to_dict()
        doc["notes"] = notes
        if guess:
            doc["prediction"] = prediction.doc(*guess)
        json.dump(doc, sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
    else:
        print_plan(plan, notes)
        if guess:
            prediction.print_prediction(*guess)
    return EXIT_OK


def _read_versions(uri: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """libvirt's and QEMU's versions from a read-only connection to ``uri``."""
    try:
        conn = common.libvirt_module().openReadOnly(uri)
        try:
            return (flags.version_from_int(conn.getLibVersion()),
                    flags.version_from_int(conn.getVersion()))
        finally:
            conn.close()
    except exception.MigratorError as exc:
        raise UsageError(str(exc)) from None
    except Exception as exc:  # libvirtError without importing libvirt here
        raise UsageError(f"cannot read versions from {uri}: {exc}") from None


def host_facts(args: argparse.Namespace, virt_type: str) -> tuple[flags.HostFacts, list[str]]:
    """The host's facts from ``--connect`` or the version arguments, with notes on where from."""
    if args.connect:
        lib, qemu = _read_versions(args.connect)
        note = (f"versions read from {args.connect}: libvirt {flags.format_version(lib)}, "
                f"QEMU {flags.format_version(qemu)}")
        return flags.HostFacts(virt_type, lib, qemu), [note]
    lib = args.libvirt_version or flags.DEFAULT_LIBVIRT_VERSION
    qemu = args.qemu_version or flags.DEFAULT_QEMU_VERSION
    assumed = [name for name, given in (("libvirt", args.libvirt_version),
                                        ("QEMU", args.qemu_version)) if given is None]
    notes = []
    if assumed:
        notes.append(
            f"assumed {' and '.join(assumed)} version(s) (libvirt {flags.format_version(lib)}, "
            f"QEMU {flags.format_version(qemu)}: Nova's minimums); "
            "pass --connect URI or --libvirt-version/--qemu-version for a real host"
        )
    return flags.HostFacts(virt_type, lib, qemu), notes


def _headline(plan: flags.Plan) -> str:
    migration = plan.migration
    if not migration.block_migration:
        return f"Plan for a live migration to {migration.dest}"
    if not migration.disks:
        return f"Plan for a block migration to {migration.dest} that copies NO disk"
    return (f"Plan for a block migration to {migration.dest} copying "
            f"{', '.join(migration.disks)}")


def print_plan(plan: flags.Plan, notes: list[str]) -> None:
    """The plan for a person: warnings first (each once), then the call, then every decision."""
    out = sys.stdout
    out.write(_headline(plan) + "\n")
    for note in notes:
        out.write(f"  note: {note}\n")
    warnings = [d for d in plan.decisions if d.warning]
    if warnings:
        out.write("Warnings:\n")
        for d in warnings:
            opts = f"  [{', '.join(d.options)}]" if d.options else ""
            out.write(f"  ! {d.item} {d.action}: {d.reason}{opts}\n")
    out.write("migrateToURI3:\n")
    out.write(f"  flags:       {plan.flags} = {' | '.join(plan.flag_names)}\n")
    out.write(f"  uri:         {plan.to_dict()['uri']}\n")
    out.write(f"  migrate_uri: {plan.migrate_uri or '(none: libvirt picks the address)'}\n")
    params = ", ".join(f"{k}={v}" for k, v in plan.display_params().items())
    out.write(f"  params:      {params}\n")
    out.write("Decisions:\n")
    for d in plan.decisions:
        reason = "see the warning above" if d.warning else d.reason
        opts = f"  [{', '.join(d.options)}]" if d.options else ""
        out.write(f" {'!' if d.warning else ' '} {d.action:<10} {d.item}: {reason}{opts}\n")
