"""Options of the ``[libvirt]`` group (and ``[DEFAULT]`` concurrency), Nova-compatible.

Names, types, defaults and bounds match Nova's, so an existing nova.conf keeps
its meaning; where Nova accepts values that break the migration (a monitor
interval of 0, a negative bandwidth) migrator sets a bound instead.  The
options migrator adds (tri-state tunnelling, vetted extra flags, the deprecated
flag lists that old nova.conf files still carry, the convergence policy) are
described in their help text.

A compute service calls :func:`register_opts` on its own ``ConfigOpts``;
``oslo-config-generator --namespace migrator`` uses :func:`list_opts`.

Modules: ``plan_opts`` (what decides the ``migrateToURI3`` call), ``monitor_opts``
(what steers a running migration), ``options`` (the group and the list in the
sample's order), ``values`` (reading values, every bad one explained at once).
"""

from __future__ import annotations

from oslo_config import cfg

from migrator.conf.monitor_opts import default_opts
from migrator.conf.options import ALL_LIBVIRT_OPTS, libvirt_group, libvirt_opts
from migrator.conf.values import describe_parse_error, load, read_values

__all__ = [
    "ALL_LIBVIRT_OPTS",
    "default_opts",
    "describe_parse_error",
    "libvirt_group",
    "libvirt_opts",
    "list_missing_opts",
    "list_opts",
    "load",
    "read_values",
    "register_opts",
]

def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register migrator's options on ``conf`` (a compute service's own CONF).

    Options the service has registered already under the same name are left
    alone and their values are read: Nova registers 16 of the ``[libvirt]``
    options and ``max_concurrent_live_migrations`` itself (same names and
    defaults, its own help text), and oslo.config refuses a second definition.
    Only what the service lacks is added.  Values read from the service's
    options are still checked against migrator's bounds by :func:`read_values`.

    oslo.config keeps option values and overrides on the ``OptGroup`` object, so
    each ``ConfigOpts`` gets its own group: two configurations in one process
    (a service and a test, or two tests) never share state.
    """
    group = cfg.OptGroup(libvirt_group.name, title=libvirt_group.title, help=libvirt_group.help)
    conf.register_group(group)  # a no-op when the service has the group already
    for group_name, opts in list_missing_opts(conf):
        conf.register_opts(opts, group=None if group_name == "DEFAULT" else group_name)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    """Options for ``oslo-config-generator --namespace migrator``."""
    return [("DEFAULT", list(default_opts)), (libvirt_group.name, list(ALL_LIBVIRT_OPTS))]


def list_missing_opts(conf: cfg.ConfigOpts) -> list[tuple[str, list[cfg.Opt]]]:
    """Like :func:`list_opts`, without the options ``conf`` already has.

    For a service that registers some of the same options itself: its sample
    configuration then lists each option once (see ``migrator.nova.opts``).
    """
    missing = []
    for group_name, opts in list_opts():
        have = conf if group_name == "DEFAULT" else (
            conf[group_name] if group_name in conf else {})
        missing.append((group_name, [o for o in opts if o.dest not in have]))
    return missing


