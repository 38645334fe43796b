"""The plan: options + host facts + one migration's facts -> the migrateToURI3 call, and why.

Pure: no libvirt, no I/O.  :func:`check_options` runs at start-up
(``init_host``) and raises every contradiction at once (the table of
:data:`STARTUP_RULES`); :func:`plan` builds the exact
``migrateToURI3(uri, params, flags)`` call for one migration through the
:data:`STAGES` pipeline and records a :class:`Decision` for every flag and
parameter added, dropped, omitted or refused.  Before returning, the plan is
checked against libvirt's own rules (:data:`LIBVIRT_RULES`): a plan libvirt
would reject is a bug here, never something to discover mid-migration.

Modules: ``model`` (the data), ``legacy`` (flag names and the deprecated flag
lists), ``startup`` (start-up rules), ``stages`` (the pipeline),
``libvirt_rules`` (libvirt's rules).
"""

from migrator.flags.legacy import EXTRA_FLAGS, OWNED_FLAGS, normalize_flag_name
from migrator.flags.libvirt_rules import (
    LIBVIRT_RULES,
    LibvirtRule,
    broken_libvirt_rules,
    libvirt_rule_violations,
)
from migrator.flags.model import (
    DEFAULT_LIBVIRT_VERSION,
    DEFAULT_QEMU_VERSION,
    Decision,
    HostFacts,
    MigrationFacts,
    Options,
    Plan,
    format_version,
    parse_version,
    version_from_int,
)
from migrator.flags.stages import STAGES, plan
from migrator.flags.startup import (
    BASE_FLAGS,
    MIN_LIBVIRT_MIGRATE_TO_URI3,
    MIN_QEMU_MULTIFD_WITH_POSTCOPY,
    STARTUP_RULES,
    SUPPORTED_VIRT_TYPES,
    StartupRule,
    check_options,
    startup_problems,
)

__all__ = [
    "BASE_FLAGS",
    "DEFAULT_LIBVIRT_VERSION",
    "DEFAULT_QEMU_VERSION",
    "EXTRA_FLAGS",
    "LIBVIRT_RULES",
    "MIN_LIBVIRT_MIGRATE_TO_URI3",
    "MIN_QEMU_MULTIFD_WITH_POSTCOPY",
    "OWNED_FLAGS",
    "STAGES",
    "STARTUP_RULES",
    "SUPPORTED_VIRT_TYPES",
    "Decision",
    "HostFacts",
    "LibvirtRule",
    "MigrationFacts",
    "Options",
    "Plan",
    "StartupRule",
    "broken_libvirt_rules",
    "check_options",
    "format_version",
    "libvirt_rule_violations",
    "normalize_flag_name",
    "parse_version",
    "plan",
    "startup_problems",
    "version_from_int",
]
