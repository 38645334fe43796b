"""What every ``migrator`` subcommand shares: exit codes, usage errors, argument types.

A subcommand module imports from here and from the library, never from
another subcommand or from :mod:`migrator.cli.app`, so the package has no
import cycle: ``app`` -> subcommands -> ``common``/``report``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

from oslo_config import cfg
from oslo_log import log as oslo_logging

import migrator
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


def load_conf(args: argparse.Namespace) -> cfg.ConfigOpts:
    """A ConfigOpts with migrator's and oslo.log's options, parsed from the command's
    ``--config-file`` and logging arguments; logging is set up from it.  UsageError if bad."""
    conf = cfg.ConfigOpts()
    mconf.register_opts(conf)
    oslo_logging.register_options(conf)
    argv: list[str] = []
    for path in getattr(args, "config_file", None) or ():
        argv += ["--config-file", path]
    argv += _logging_argv(args)
    try:
        conf(args=argv, project="migrator", default_config_files=[], validate_default_values=True)
    except cfg.ConfigFilesNotFoundError as exc:
        raise UsageError(
            f"cannot read config file(s) {', '.join(exc.config_files)}: check the path "
            "and permissions"
        ) from None
    except cfg.ConfigFileParseError as exc:  # never quote the line: it may be a password
        raise UsageError(mconf.describe_parse_error(exc)) from None
    except (cfg.Error, ValueError) as exc:
        raise UsageError(f"invalid configuration: {uri.mask_text(str(exc))}") from None
    setup_logging(conf)
    return conf


# -- logging like an OpenStack service (oslo.log's own options) ---------------------------------

# (flags, dest, metavar, help) of oslo.log's command line options, forwarded to oslo.config.
_LOG_ARGS = (
    (("-d", "--debug"), "debug", None, "log at DEBUG level (default: warnings on stderr, "
     "INFO in a log file)"),
    (("--log-config-append", "--log-config", "--log_config"), "log_config_append", "PATH",
     "a Python logging configuration file; the other logging options are then ignored"),
    (("--log-date-format",), "log_date_format", "FORMAT", "time.strftime format of %%(asctime)s"),
    (("--log-file", "--logfile"), "log_file", "PATH", "log to this file (default: stderr)"),
    (("--log-dir", "--logdir"), "log_dir", "DIR", "directory of --log-file (default name: "
     "migrator.log)"),
    (("--use-syslog",), "use_syslog", None, "log to syslog"),
    (("--use-journal",), "use_journal", None, "log to the systemd journal"),
    (("--syslog-log-facility",), "syslog_log_facility", "FACILITY", "syslog facility"),
    (("--use-json",), "use_json", None, "log records as JSON"),
)


def add_logging_args(p: argparse.ArgumentParser) -> None:
    """oslo.log's standard options (``--debug``, ``--log-file``, ...), as every OpenStack
    service has them; they may also be set in ``[DEFAULT]`` of a ``--config-file``."""
    group = p.add_argument_group("logging (oslo.log; also read from [DEFAULT])")
    for names, dest, metavar, text in _LOG_ARGS:
        if metavar is None:
            group.add_argument(*names, dest=dest, action="store_true", default=None, help=text)
        else:
            group.add_argument(*names, dest=dest, type=checked_text, metavar=metavar,
                               help=text)


def _logging_argv(args: argparse.Namespace) -> list[str]:
    argv: list[str] = []
    for names, dest, metavar, _ in _LOG_ARGS:
        value = getattr(args, dest, None)
        if value is None or value is False:
            continue
        long_name = next(n for n in names if n.startswith("--"))
        argv += [long_name] if metavar is None else [f"{long_name}={value}"]
    return argv


def setup_logging(conf: cfg.ConfigOpts) -> None:
    """oslo.log from ``conf``, with a command's defaults.

    Without a log file, journal or syslog, records go to stderr (oslo.log would
    use stdout, where the results go), and only warnings from migrator, since
    the progress already shows each action (and none of oslo.config's
    deprecation notes: migrator's own warning says what to write instead);
    ``--debug`` shows everything.
    """
    if conf.log_dir and not conf.log_file:
        conf.set_default("log_file", "migrator.log")
    console = not (conf.log_file or conf.log_config_append or conf.use_journal
                   or conf.use_syslog)
    if console:
        conf.set_default("use_stderr", True)
        if not conf.debug:  # oslo.config's deprecation notes: migrator's own say what to write
            conf.set_default("default_log_levels",
                             [*conf.default_log_levels, "migrator=WARNING", "oslo_config=ERROR"])
    try:
        oslo_logging.setup(conf, "migrator", version=migrator.__version__)
    except OSError as exc:
        target = conf.log_config_append or conf.log_file or conf.log_dir
        raise UsageError(f"cannot set up logging to {target}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - a bad --log-config-append file, say
        raise UsageError(f"cannot set up logging: {exc}") from None


@contextlib.contextmanager
def restored_logging() -> Iterator[None]:
    """Undo what setting up logging changed (handlers, levels, the excepthook) at the end
    of a command, so that calling :func:`migrator.cli.main` leaves its caller as it was."""
    root = logging.getLogger()
    handlers, level, hook = list(root.handlers), root.level, sys.excepthook
    levels = {name: lg.level for name, lg in logging.Logger.manager.loggerDict.items()
              if isinstance(lg, logging.Logger)}
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
        for name, lg in logging.Logger.manager.loggerDict.items():
            if isinstance(lg, logging.Logger):
                lg.setLevel(levels.get(name, logging.NOTSET))
        sys.excepthook = hook


def libvirt_module() -> Any:
    """libvirt-python, with its default error handler silenced: libvirt prints every error
    on stderr itself, before migrator reports it with what to do."""
    from migrator import _libvirt

    lv = _libvirt.module()
    lv.registerErrorHandler(_ignore_libvirt_error, None)
    return lv


def _ignore_libvirt_error(ctx: Any, err: Any) -> None:  # noqa: ARG001 - libvirt's signature
    """The error is raised as a libvirtError and reported once, by the command."""


def load_options(args: argparse.Namespace) -> tuple[flags.Options, str, dict[str, Any]]:
    """The validated options, the virt type and the raw values (ConfigError lists problems)."""
    return mconf.load(load_conf(args))


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
