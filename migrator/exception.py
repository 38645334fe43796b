"""The errors migrator raises.

Everything derives from :class:`MigratorError`, so a caller can catch the
library's failures in one place.  Configuration problems are found at start-up
(``init_host`` / ``migrator plan``); per-migration problems before libvirt is
called; only :class:`MigrationFailed` and its children come from a running job.
"""

from __future__ import annotations


class MigratorError(Exception):
    """Base class of every error raised by migrator."""


class ConfigError(MigratorError):
    """One or more options are invalid or contradict each other.

    ``problems`` holds one message per problem; each names the option(s) and
    the fix, so a CLI can print them one per line.
    """

    def __init__(self, problems: list[str] | str):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class UnsupportedByHost(ConfigError):
    """The options need a libvirt or QEMU feature the host does not have."""


class InvalidAddress(MigratorError, ValueError):
    """A host name or address is not safe to put into a URI."""


class MigrationRefused(MigratorError):
    """This migration cannot be done safely with these facts and options.

    Raised before ``migrateToURI3`` is called; nothing has changed on either
    host.
    """


class InvalidRequest(MigratorError, ValueError):
    """An argument of ``live_migration()`` is wrong; nothing was started."""


class MigrationFailed(MigratorError):
    """The migration job ended without moving the guest."""


class MonitorError(MigrationFailed):
    """The monitor could not follow the job; the job was aborted."""


class AbortFailed(MigratorError):
    """libvirt did not abort the job (e.g. it is already in post-copy)."""


class NoActiveMigration(MigratorError):
    """A control request arrived for a migration that has already ended."""


class MeasurementFailed(MigratorError):
    """A guest could not be measured (not running, migrating, libvirt without the API)."""
