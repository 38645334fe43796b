"""The ``migrator`` command: plan, simulate and run live migrations from a shell.

Every user error (bad config, bad address, refused migration, unreachable
libvirt) ends with one clear message per problem on stderr and exit status 2
(or 1 for a migration that ran and failed); never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from oslo_config import cfg

from migrator import conf as mconf
from migrator import exception, flags, uri

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
MAX_ARG_LEN = 4096


class UsageError(Exception):
    """A problem with the command line or its inputs (exit status 2)."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


def _load_conf(config_files: Sequence[str]) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    mconf.register_opts(conf)
    args: list[str] = []
    for path in config_files or ():
        args += ["--config-file", path]
    try:
        conf(args=args, project="migrator", default_config_files=[], validate_default_values=True)
    except cfg.ConfigFilesNotFoundError as exc:
        raise UsageError(
            f"cannot read config file(s) {', '.join(exc.config_files)}: check the path "
            "and permissions"
        ) from None
    except cfg.ConfigFileParseError as exc:  # never quote the line: it may be a password
        raise UsageError(mconf.describe_parse_error(exc)) from None
    except (cfg.Error, ValueError) as exc:
        raise UsageError(f"invalid configuration: {uri.mask_text(str(exc))}") from None
    return conf


def load_options(config_files: Sequence[str]) -> tuple[flags.Options, str, dict[str, Any]]:
    conf = _load_conf(config_files)
    return mconf.load(conf)


def _version_arg(text: str) -> tuple[int, int, int]:
    try:
        return flags.parse_version(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _checked_text(text: str) -> str:
    if len(text) > MAX_ARG_LEN:
        raise argparse.ArgumentTypeError(f"argument is {len(text)} characters long; too long")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8 (surrogate escapes)
        raise argparse.ArgumentTypeError("argument is not valid UTF-8 text") from None
    return text


def _host_facts(args: argparse.Namespace, virt_type: str) -> tuple[flags.HostFacts, list[str]]:
    notes: list[str] = []
    if args.connect:
        from migrator import _libvirt

        try:
            lv = _libvirt.module()
            conn = lv.openReadOnly(args.connect)
            try:
                lib = flags.version_from_int(conn.getLibVersion())
                qemu = flags.version_from_int(conn.getVersion())
            finally:
                conn.close()
        except exception.MigratorError as exc:
            raise UsageError(str(exc)) from None
        except Exception as exc:  # libvirtError without importing libvirt here
            raise UsageError(f"cannot read versions from {args.connect}: {exc}") from None
        notes.append(
            f"versions read from {args.connect}: libvirt {'.'.join(map(str, lib))}, "
            f"QEMU {'.'.join(map(str, qemu))}"
        )
    else:
        lib = args.libvirt_version or flags.DEFAULT_LIBVIRT_VERSION
        qemu = args.qemu_version or flags.DEFAULT_QEMU_VERSION
        assumed = [
            name
            for name, given in (("libvirt", args.libvirt_version), ("QEMU", args.qemu_version))
            if given is None
        ]
        if assumed:
            notes.append(
                f"assumed {' and '.join(assumed)} version(s) (libvirt "
                f"{'.'.join(map(str, lib))}, QEMU {'.'.join(map(str, qemu))}: Nova's minimums); "
                "pass --connect URI or --libvirt-version/--qemu-version for a real host"
            )
    return flags.HostFacts(virt_type, lib, qemu), notes


def _print_plan(plan: flags.Plan, notes: list[str]) -> None:
    out = sys.stdout
    kind = "block migration" if plan.migration.block_migration else "live migration"
    out.write(f"Plan for a {kind} to {plan.migration.dest}\n")
    for note in notes:
        out.write(f"  note: {note}\n")
    out.write(f"  flags:       {plan.flags} = {' | '.join(plan.flag_names)}\n")
    out.write(f"  uri:         {plan.to_dict()['uri']}\n")
    out.write(f"  migrate_uri: {plan.migrate_uri or '(none: libvirt picks the address)'}\n")
    params = ", ".join(f"{k}={v}" for k, v in plan.display_params().items())
    out.write(f"  params:      {params}\n")
    out.write("Decisions:\n")
    for d in plan.decisions:
        mark = "!" if d.warning else " "
        opts = f"  [{', '.join(d.options)}]" if d.options else ""
        out.write(f" {mark} {d.action:<10} {d.item}: {d.reason}{opts}\n")
    if plan.warnings:
        out.write("Warnings:\n")
        for w in plan.warnings:
            out.write(f"  {w}\n")


def cmd_plan(args: argparse.Namespace) -> int:
    options, virt_type, _values = load_options(args.config_file)
    host, notes = _host_facts(args, virt_type)
    migration = flags.MigrationFacts(
        dest=args.dest,
        inbound_addr=args.inbound_addr,
        block_migration=args.block_migration,
        disks=tuple(args.disk or ()),
        paused=args.paused,
        vfio=args.vfio,
    )
    if migration.disks and not migration.block_migration:
        raise UsageError("--disk selects disks to copy and needs --block-migration")
    plan = flags.plan(options, host, migration)
    if args.json:
        doc = plan.to_dict()
        doc["notes"] = notes
        json.dump(doc, sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
    else:
        _print_plan(plan, notes)
    return EXIT_OK


def _add_config_arg(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument(
        "--config-file",
        action="append",
        type=_checked_text,
        required=required,
        metavar="FILE",
        help="nova.conf-style ini file with a [libvirt] section (repeatable; later files win)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="migrator",
        description="Plan, simulate and run libvirt live migrations safely.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "plan",
        help="print the migrateToURI3 call (flags, URIs, params) and why",
        description="Print the exact migrateToURI3 call migrator would make, with the reason "
        "for every flag and parameter. Nothing is migrated.",
    )
    _add_config_arg(p, required=True)
    p.add_argument("--dest", required=True, type=_checked_text, help="destination host name")
    p.add_argument(
        "--inbound-addr",
        type=_checked_text,
        help="the destination's live_migration_inbound_addr (split migration network)",
    )
    p.add_argument("--block-migration", action="store_true", help="copy local disks too")
    p.add_argument(
        "--disk",
        action="append",
        type=_checked_text,
        metavar="NAME",
        help="target device of a disk to copy (e.g. vda); repeatable; with --block-migration",
    )
    p.add_argument("--paused", action="store_true", help="the guest is paused")
    p.add_argument("--vfio", action="store_true", help="the guest has a VFIO/mdev device")
    p.add_argument("--libvirt-version", type=_version_arg, metavar="X.Y.Z")
    p.add_argument("--qemu-version", type=_version_arg, metavar="X.Y.Z")
    p.add_argument(
        "--connect", type=_checked_text, metavar="URI", help="read the versions from this libvirt"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_plan)

    _register_more(sub)
    return parser


def _register_more(sub: Any) -> None:
    """Subcommands defined in their own modules (they need the driver)."""
    from migrator import cli_run

    cli_run.register(sub, _add_config_arg, _checked_text)


def _report(problems: Sequence[str]) -> None:
    for problem in problems:
        sys.stderr.write(f"migrator: error: {problem}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        _report(exc.problems)
    except exception.ConfigError as exc:
        _report(exc.problems)
    except exception.MigratorError as exc:  # refused migration, bad address, no libvirt...
        _report([str(exc)])
    except KeyboardInterrupt:
        sys.stderr.write("migrator: interrupted\n")
        return 130
    except BrokenPipeError:  # e.g. `migrator plan --json | head`
        sys.stderr.close()
        return EXIT_OK
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    # `python -m migrator.cli` runs this file as __main__; use the importable module so
    # that its exception classes are the ones the subcommands raise.
    from migrator.cli import main as _main

    sys.exit(_main())
