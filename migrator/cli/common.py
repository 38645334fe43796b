"""What every ``migrator`` subcommand shares: exit codes, usage errors, argument types.

A subcommand module imports from here and from the library, never from
another subcommand or from :mod:`migrator.cli.app`, so the package has no
import cycle: ``app`` -> subcommands -> ``common``/``report``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from typing import Any

from oslo_config import cfg

from migrator import conf as mconf
from migrator import flags, units, uri

EXIT_OK = 0  # the command did what was asked (a migration completed)
EXIT_FAILED = 1  # a migration ran and did not complete
EXIT_USAGE = 2  # bad input: nothing was started
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)

MAX_ARG_LEN = 4096
MAX_SECONDS = 10**7


class UsageError(Exception):
    """A problem with the command line or its inputs (exit status 2)."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


# -- configuration -----------------------------------------------------------------------------


def load_conf(config_files: Sequence[str] | None) -> cfg.ConfigOpts:
    """A ConfigOpts with migrator's options, parsed from ``config_files``; UsageError if bad."""
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


def load_options(config_files: Sequence[str] | None) -> tuple[flags.Options, str, dict[str, Any]]:
    """The validated options, the virt type and the raw values (ConfigError lists problems)."""
    return mconf.load(load_conf(config_files))


def check_disks(args: argparse.Namespace) -> tuple[str, ...]:
    """``--disk`` names, refused without ``--block-migration`` (they select disks to copy)."""
    disks = tuple(args.disk or ())
    if disks and not args.block_migration:
        raise UsageError("--disk selects disks to copy and needs --block-migration")
    return disks


# -- argument types (argparse turns their ArgumentTypeError into a usage message, exit 2) -------


def _argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type=`` from a parser that raises ValueError with the explanation."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__.lstrip("_")  # argparse names the type in its messages
    return convert


def _checked_text(text: str) -> str:
    if len(text) > MAX_ARG_LEN:
        raise ValueError(f"argument is {len(text)} characters long; too long")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8 (surrogate escapes)
        raise ValueError("argument is not valid UTF-8 text") from None
    return text


def _seconds(text: str) -> float:
    if not re.fullmatch(r"[0-9]{1,8}(\.[0-9]{1,6})?", text):
        raise ValueError(f"{ascii(text[:40])} is not a number of seconds")
    value = float(text)
    if value > MAX_SECONDS:
        raise ValueError(f"{text!r} must be between 0 and {MAX_SECONDS} seconds")
    return value


def _dirty_rate(text: str) -> float:
    return units.parse_rate(text, zero_ok=True)  # an idle guest dirties nothing


checked_text = _argument_type(_checked_text)
version = _argument_type(flags.parse_version)
size = _argument_type(units.parse_size)
rate = _argument_type(units.parse_rate)
dirty_rate = _argument_type(_dirty_rate)
seconds = _argument_type(_seconds)


def add_config_arg(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument(
        "--config-file",
        action="append",
        type=checked_text,
        required=required,
        metavar="FILE",
        help="nova.conf-style ini file with a [libvirt] section (repeatable; later files win)",
    )


def add_block_args(p: argparse.ArgumentParser) -> None:
    """``--block-migration`` and ``--disk``, the same for every command that takes them."""
    p.add_argument("--block-migration", action="store_true", help="copy local disks too")
    p.add_argument(
        "--disk",
        action="append",
        type=checked_text,
        metavar="NAME",
        help="target device of a disk to copy (e.g. vda); repeatable; with --block-migration",
    )
