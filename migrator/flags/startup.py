"""Start-up rules: what a configuration may ask for, on this host, as a table of rules.

Each :class:`StartupRule` has a stable id, the rule in words, and a check that
yields one message per problem (naming the option(s) and the fix).
:func:`check_options` runs them all at ``init_host()`` and raises every problem
at once: :class:`~migrator.exception.ConfigError` for the configuration, its
child :class:`~migrator.exception.UnsupportedByHost` when only the host's
libvirt or QEMU versions are to blame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from migrator import constants, exception, uri
from migrator.flags.legacy import EffectiveOptions, flag_name_problems, fold_legacy
from migrator.flags.model import Decision, HostFacts, Options, format_version

SUPPORTED_VIRT_TYPES = ("kvm", "qemu")
MIN_QEMU_MULTIFD_WITH_POSTCOPY: constants.Version = (10, 1, 0)
MIN_LIBVIRT_MIGRATE_TO_URI3: constants.Version = (1, 1, 0)
BASE_FLAGS = ("LIVE", "PEER2PEER", "UNDEFINE_SOURCE", "PERSIST_DEST")


@dataclass(frozen=True)
class Startup:
    """What the start-up rules look at."""

    options: Options
    host: HostFacts
    eff: EffectiveOptions

    @property
    def parallel(self) -> bool:
        return self.options.parallel_connections > 1

    @property
    def all_extra(self) -> dict[str, str]:
        """Every extra flag any migration can get -> the option that asked for it."""
        return self.eff.all_extra


@dataclass(frozen=True)
class StartupRule:
    id: str
    text: str
    check: Callable[[Startup], Iterable[str]]
    host_limit: bool = False  # the host's versions are to blame, not the configuration


def _config_errors(error: Callable[[], object]) -> list[str]:
    try:
        error()
    except exception.ConfigError as exc:
        return list(exc.problems)
    return []


def _virt_type(s: Startup) -> Iterator[str]:
    if s.host.virt_type not in SUPPORTED_VIRT_TYPES:
        yield (f"[libvirt] virt_type = {s.host.virt_type}: migrator live-migrates only kvm and "
               "qemu guests")


def _scheme(s: Startup) -> list[str]:
    if s.options.scheme is None:
        return []
    return _config_errors(lambda: uri.validate_scheme(s.options.scheme))


def _template(s: Startup) -> list[str]:
    if s.options.uri_template is None:
        return []
    return _config_errors(lambda: uri.validate_template(s.options.uri_template))


def _bandwidth(s: Startup) -> Iterator[str]:
    if s.options.bandwidth < 0:
        yield "[libvirt] live_migration_bandwidth must be 0 (no limit) or positive"


def _connections(s: Startup) -> Iterator[str]:
    if s.options.parallel_connections < 1:
        yield "[libvirt] live_migration_parallel_connections must be at least 1"


def _tunnel_conflict(
    applies: Callable[[Startup], bool], setting: Callable[[Startup], str], why: str, other: str
) -> Callable[[Startup], Iterator[str]]:
    """A rule: a tunnel of the migrations that copy no disks (explicit, or TUNNELLED in
    live_migration_flag) cannot go with ``setting``.  A tunnel of block migrations only
    refuses each block migration (flags.stages), whatever else is set."""

    def check(s: Startup) -> Iterator[str]:
        tunnel = s.eff.tunnel
        if tunnel.value and applies(s):
            yield (f"[libvirt] {tunnel.subject} and {setting(s)} cannot be used together: "
                   f"{why}; {tunnel.fix}{other}")

    return check


_tunnel_native_tls = _tunnel_conflict(
    lambda s: s.options.native_tls, lambda s: "live_migration_with_native_tls = true",
    "native TLS already encrypts the data", " (prefer live_migration_with_native_tls)")
_tunnel_post_copy = _tunnel_conflict(
    lambda s: s.options.permit_post_copy, lambda s: "live_migration_permit_post_copy = true",
    "libvirt refuses post-copy over a tunnel", " or set live_migration_permit_post_copy = false")
_tunnel_parallel = _tunnel_conflict(
    lambda s: s.parallel,
    lambda s: f"live_migration_parallel_connections = {s.options.parallel_connections}",
    "libvirt cannot tunnel parallel connections",
    " or set live_migration_parallel_connections = 1")


def _zerocopy(s: Startup) -> Iterator[str]:
    if "ZEROCOPY" in s.all_extra and not s.parallel:
        yield (f"[libvirt] {s.all_extra['ZEROCOPY']}: ZEROCOPY needs parallel connections; set "
               "live_migration_parallel_connections to 2 or more, or remove ZEROCOPY")


def _compressed(s: Startup) -> Iterator[str]:
    if "COMPRESSED" in s.all_extra and s.parallel:
        yield (f"[libvirt] {s.all_extra['COMPRESSED']}: COMPRESSED with "
               "live_migration_parallel_connections > 1 needs a compression method that "
               "migrator does not set (libvirt refuses it); remove COMPRESSED or use one "
               "connection")


def _multifd_post_copy_qemu(s: Startup) -> Iterator[str]:
    qemu = s.host.qemu_version
    if s.parallel and s.options.permit_post_copy and qemu < MIN_QEMU_MULTIFD_WITH_POSTCOPY:
        yield (f"[libvirt] live_migration_parallel_connections = "
               f"{s.options.parallel_connections} with live_migration_permit_post_copy = true "
               f"needs QEMU {format_version(MIN_QEMU_MULTIFD_WITH_POSTCOPY)} or newer (this host "
               f"has {format_version(qemu)}; older QEMU can lose the guest when it switches to "
               "post-copy); set live_migration_parallel_connections = 1 or disable post-copy")


def _migrate_to_uri3(s: Startup) -> Iterator[str]:
    if s.host.libvirt_version < MIN_LIBVIRT_MIGRATE_TO_URI3:
        yield (f"libvirt {format_version(s.host.libvirt_version)} has no migrateToURI3 "
               f"(libvirt {format_version(MIN_LIBVIRT_MIGRATE_TO_URI3)} or newer is needed); "
               "upgrade libvirt")


def _params_since(s: Startup) -> Iterator[str]:
    if s.host.libvirt_version < MIN_LIBVIRT_MIGRATE_TO_URI3:
        return  # _migrate_to_uri3 says it all
    used = {
        constants.VIR_MIGRATE_PARAM_TLS_DESTINATION: (
            s.options.native_tls,
            "live_migration_with_native_tls (with a destination inbound address)",
        ),
        constants.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS: (
            s.parallel, "live_migration_parallel_connections"),
    }
    for key, (on, what) in used.items():
        since = constants.MIGRATE_PARAMS[key].since
        if on and s.host.libvirt_version < since:
            yield (f"{what} needs libvirt {format_version(since)} or newer (parameter {key}); "
                   f"this host has {format_version(s.host.libvirt_version)}")


def _flags_since(s: Startup) -> Iterator[str]:
    wanted = {
        "TUNNELLED": (s.eff.tunnel.value is not False, s.eff.tunnel.option),
        "TLS": (s.options.native_tls, "live_migration_with_native_tls"),
        "POSTCOPY": (s.options.permit_post_copy, "live_migration_permit_post_copy"),
        "AUTO_CONVERGE": (s.options.permit_auto_converge, "live_migration_permit_auto_converge"),
        "PARALLEL": (s.parallel, "live_migration_parallel_connections"),
    }
    possible = [*BASE_FLAGS, "NON_SHARED_INC", *s.all_extra]
    possible += [name for name, (on, _opt) in wanted.items() if on]
    for name in possible:
        since = constants.MIGRATE_FLAGS[name].since
        if s.host.libvirt_version < since:
            opt = wanted.get(name, (True, s.all_extra.get(name, "")))[1]
            yield (f"VIR_MIGRATE_{name} needs libvirt {format_version(since)} or newer; this "
                   f"host has {format_version(s.host.libvirt_version)}"
                   + (f"; change [libvirt] {opt}" if opt else ""))


STARTUP_RULES: tuple[StartupRule, ...] = (
    StartupRule("virt-type", "only kvm and qemu guests are live-migrated", _virt_type),
    StartupRule("scheme", "live_migration_scheme is a libvirt transport", _scheme),
    StartupRule("uri-template", "live_migration_uri is a safe template with the destination "
                "as its host", _template),
    StartupRule("bandwidth", "live_migration_bandwidth is 0 or positive", _bandwidth),
    StartupRule("connections", "live_migration_parallel_connections is at least 1",
                _connections),
    StartupRule("flag-names", "the flag lists name flags migrator may add",
                lambda s: flag_name_problems(s.options)),
    StartupRule("tunnel-native-tls", "a tunnel and native TLS exclude each other",
                _tunnel_native_tls),
    StartupRule("tunnel-post-copy", "libvirt refuses post-copy over a tunnel",
                _tunnel_post_copy),
    StartupRule("tunnel-parallel", "libvirt cannot tunnel parallel connections",
                _tunnel_parallel),
    StartupRule("zerocopy-parallel", "ZEROCOPY needs parallel connections", _zerocopy),
    StartupRule("compressed-parallel", "COMPRESSED with parallel connections needs a "
                "compression method migrator does not set", _compressed),
    StartupRule("multifd-post-copy-qemu", "parallel connections with post-copy need QEMU "
                f"{format_version(MIN_QEMU_MULTIFD_WITH_POSTCOPY)}", _multifd_post_copy_qemu,
                host_limit=True),
    StartupRule("migrate-to-uri3", "the host's libvirt has migrateToURI3", _migrate_to_uri3,
                host_limit=True),
    StartupRule("params-since", "every parameter the options emit exists in the host's "
                "libvirt", _params_since, host_limit=True),
    StartupRule("flags-since", "every flag the options can emit exists in the host's libvirt",
                _flags_since, host_limit=True),
)


def startup_problems(options: Options, host: HostFacts) -> list[tuple[StartupRule, str]]:
    """Every (rule, message) the configuration breaks on this host, in the table's order."""
    return _problems(Startup(options, host, fold_legacy(options)))


def _problems(s: Startup) -> list[tuple[StartupRule, str]]:
    return [(rule, message) for rule in STARTUP_RULES for message in rule.check(s)]


def validated(options: Options, host: HostFacts) -> EffectiveOptions:
    """The effective options, or every start-up problem raised at once."""
    eff = fold_legacy(options)
    found = _problems(Startup(options, host, eff))
    config = [message for rule, message in found if not rule.host_limit]
    host_limits = [message for rule, message in found if rule.host_limit]
    if config:
        raise exception.ConfigError(config + host_limits)
    if host_limits:
        raise exception.UnsupportedByHost(host_limits)
    eff.decisions.extend(_template_notes(options))
    return eff


def _template_notes(options: Options) -> list[Decision]:
    """A warning for each thing a valid live_migration_uri does that deserves one."""
    if options.uri_template is None:
        return []
    return [Decision("live_migration_uri", "accepted", warning, ("live_migration_uri",),
                     warning=True) for warning in uri.template_warnings(options.uri_template)]


def check_options(options: Options, host: HostFacts) -> list[Decision]:
    """Start-up validation: raise every contradiction at once; return the translation notes.

    Raises :class:`~migrator.exception.ConfigError` (or its child
    :class:`~migrator.exception.UnsupportedByHost` when only the host's versions
    are to blame), with one message per problem naming the option(s) and the fix.
    """
    return list(validated(options, host).decisions)
