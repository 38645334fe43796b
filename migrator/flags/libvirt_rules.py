"""libvirt's rules for a ``migrateToURI3`` call, as a table, checked on every plan.

The QEMU driver's rules (peers-and-libvirt.md §4.4), the documented-only
ones, and two of migrator's own (no TLS or PARALLEL over a tunnel).  A plan
that breaks one is a bug in the stages that built it, never a user error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from migrator import constants, exception
from migrator.flags.model import HostFacts, format_version


@dataclass(frozen=True)
class Call:
    """The flags and parameters of one ``migrateToURI3`` call."""

    flags: int
    params: Mapping[str, Any]

    def has(self, name: str) -> bool:
        return bool(self.flags & constants.MIGRATE_FLAGS[name].bit)

    @property
    def non_shared(self) -> bool:
        return self.has("NON_SHARED_DISK") or self.has("NON_SHARED_INC")


@dataclass(frozen=True)
class LibvirtRule:
    id: str
    text: str  # the rule, as the message when it is broken
    broken: Callable[[Call], bool]


_AUTO_CONVERGE_PARAMS = (
    constants.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL,
    constants.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT,
)

LIBVIRT_RULES: tuple[LibvirtRule, ...] = (
    LibvirtRule("postcopy-live", "POSTCOPY needs LIVE and not PAUSED",
                lambda k: k.has("POSTCOPY") and (not k.has("LIVE") or k.has("PAUSED"))),
    LibvirtRule("postcopy-tunnel", "POSTCOPY cannot be tunnelled",
                lambda k: k.has("POSTCOPY") and k.has("TUNNELLED")),
    LibvirtRule("offline", "OFFLINE needs PERSIST_DEST and allows neither NON_SHARED_* nor "
                "TUNNELLED", lambda k: k.has("OFFLINE") and (
                    k.non_shared or not k.has("PERSIST_DEST") or k.has("TUNNELLED"))),
    LibvirtRule("zerocopy-parallel", "ZEROCOPY needs PARALLEL",
                lambda k: k.has("ZEROCOPY") and not k.has("PARALLEL")),
    LibvirtRule("non-shared-tunnel", "NON_SHARED_* cannot be tunnelled",
                lambda k: k.non_shared and k.has("TUNNELLED")),
    LibvirtRule("migrate-disks-non-shared", "migrate_disks needs NON_SHARED_DISK or "
                "NON_SHARED_INC", lambda k: constants.VIR_MIGRATE_PARAM_MIGRATE_DISKS in k.params
                and not k.non_shared),
    LibvirtRule("postcopy-resume", "POSTCOPY_RESUME needs POSTCOPY",
                lambda k: k.has("POSTCOPY_RESUME") and not k.has("POSTCOPY")),
    LibvirtRule("auto-converge-params", "auto_converge.* params need AUTO_CONVERGE",
                lambda k: any(p in k.params for p in _AUTO_CONVERGE_PARAMS)
                and not k.has("AUTO_CONVERGE")),
    LibvirtRule("parallel-params", "parallel.connections needs PARALLEL",
                lambda k: constants.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS in k.params
                and not k.has("PARALLEL")),
    LibvirtRule("compressed-parallel", "COMPRESSED with PARALLEL needs a compression method",
                lambda k: k.has("COMPRESSED") and k.has("PARALLEL")
                and constants.VIR_MIGRATE_PARAM_COMPRESSION not in k.params),
    LibvirtRule("tunnel-p2p", "TUNNELLED needs PEER2PEER",
                lambda k: k.has("TUNNELLED") and not k.has("PEER2PEER")),
    LibvirtRule("tunnel-migrate-uri", "migrate_uri is not supported with TUNNELLED",
                lambda k: k.has("TUNNELLED") and constants.VIR_MIGRATE_PARAM_URI in k.params),
    LibvirtRule("non-shared-exclusive", "NON_SHARED_DISK and NON_SHARED_INC exclude each other",
                lambda k: k.has("NON_SHARED_DISK") and k.has("NON_SHARED_INC")),
    LibvirtRule("synchronous-writes", "NON_SHARED_SYNCHRONOUS_WRITES needs NON_SHARED_*",
                lambda k: k.has("NON_SHARED_SYNCHRONOUS_WRITES") and not k.non_shared),
    LibvirtRule("rdma-uri", "RDMA_PIN_ALL needs an rdma:// migrate_uri",
                lambda k: k.has("RDMA_PIN_ALL") and not str(
                    k.params.get(constants.VIR_MIGRATE_PARAM_URI, "")).startswith("rdma")),
    LibvirtRule("tunnel-tls-parallel", "TLS and PARALLEL cannot be tunnelled",
                lambda k: k.has("TUNNELLED") and (k.has("TLS") or k.has("PARALLEL"))),
)


def broken_libvirt_rules(flags: int, params: Mapping[str, Any]) -> list[LibvirtRule]:
    """The rules of :data:`LIBVIRT_RULES` that ``(flags, params)`` breaks."""
    call = Call(flags, params)
    return [rule for rule in LIBVIRT_RULES if rule.broken(call)]


def libvirt_rule_violations(flags: int, params: Mapping[str, Any]) -> list[str]:
    """One message per broken rule; an empty list means libvirt accepts the combination."""
    return [rule.text for rule in broken_libvirt_rules(flags, params)]


def check_param_versions(params: Mapping[str, Any], host: HostFacts) -> None:
    """Raise :class:`UnsupportedByHost` for every parameter the host's libvirt lacks."""
    missing = [
        f"parameter {key} needs libvirt {format_version(constants.MIGRATE_PARAMS[key].since)} "
        f"or newer; this host has {format_version(host.libvirt_version)}"
        for key in params
        if host.libvirt_version < constants.MIGRATE_PARAMS[key].since
    ]
    if missing:
        raise exception.UnsupportedByHost(missing)
