"""The ``migrator`` command: the parser of every subcommand, and error handling.

Every user error (bad config, bad address, refused migration, unreachable
libvirt) ends with one clear message per problem on stderr and exit status 2
(or 1 for a migration that ran and failed); never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import migrator
from migrator import exception
from migrator.cli import common, migrate, plan, predict, simulate, watch
from migrator.cli.common import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError

# One module per subcommand, each with ``register(subparsers)``; the order is the help's.
COMMANDS = (plan, predict, simulate, migrate, watch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="migrator",
        description="Plan, simulate and run libvirt live migrations safely.",
    )
    parser.add_argument("--version", action="version", version=f"migrator {migrator.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    for command_parser in sub.choices.values():
        common.add_logging_args(command_parser)
    return parser


def _report(problems: Sequence[str]) -> None:
    for problem in problems:
        sys.stderr.write(f"migrator: error: {problem}\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with common.restored_logging():
            return int(args.func(args))
    except (UsageError, exception.ConfigError) as exc:
        _report(exc.problems)
    except exception.MigratorError as exc:  # refused migration, bad address, no libvirt...
        _report([str(exc)])
    except KeyboardInterrupt:
        sys.stderr.write("migrator: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `migrator plan --json | head`
        sys.stderr.close()
        return EXIT_OK
    return EXIT_USAGE
