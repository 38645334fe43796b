"""The plan's data: options, facts, decisions and the plan itself (plain frozen values)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from migrator import constants, uri

DEFAULT_LIBVIRT_VERSION: constants.Version = (8, 0, 0)  # Nova's minimums
DEFAULT_QEMU_VERSION: constants.Version = (6, 2, 0)
_NUM_RE = re.compile(r"^[0-9]{1,9}$")


@dataclass(frozen=True)
class Options:
    """The operator's live-migration options (``[libvirt]``), as plain data."""

    scheme: str | None = None
    uri_template: str | None = None
    tunnelled: bool | None = None
    native_tls: bool = False
    bandwidth: int = 0
    permit_post_copy: bool = False
    permit_auto_converge: bool = False
    parallel_connections: int = 1
    extra_flags: tuple[str, ...] = ()
    legacy_live_flags: tuple[str, ...] | None = None
    legacy_block_flags: tuple[str, ...] | None = None

    def __repr__(self) -> str:  # the template may carry a password
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        if shown["uri_template"]:
            shown["uri_template"] = uri.mask_credentials(shown["uri_template"])
        return f"Options({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Options:
        """From :func:`migrator.conf.read_values` (option name -> value)."""

        def listed(name: str) -> tuple[str, ...] | None:
            v = values.get(name)
            return None if v is None else tuple(s.strip() for s in v if s and s.strip())

        return cls(
            scheme=values.get("live_migration_scheme"),
            uri_template=values.get("live_migration_uri"),
            tunnelled=values.get("live_migration_tunnelled"),
            native_tls=bool(values.get("live_migration_with_native_tls")),
            bandwidth=int(values.get("live_migration_bandwidth") or 0),
            permit_post_copy=bool(values.get("live_migration_permit_post_copy")),
            permit_auto_converge=bool(values.get("live_migration_permit_auto_converge")),
            parallel_connections=int(values.get("live_migration_parallel_connections") or 1),
            extra_flags=listed("live_migration_extra_flags") or (),
            legacy_live_flags=listed("live_migration_flag"),
            legacy_block_flags=listed("block_migration_flag"),
        )


@dataclass(frozen=True)
class HostFacts:
    """What the source host is: its domain type and its libvirt and QEMU versions."""

    virt_type: str = "kvm"
    libvirt_version: constants.Version = DEFAULT_LIBVIRT_VERSION
    qemu_version: constants.Version = DEFAULT_QEMU_VERSION


@dataclass(frozen=True)
class MigrationFacts:
    """One migration: where it goes and what the guest is like.

    ``inbound_addr`` comes from the destination (its own
    ``live_migration_inbound_addr``, Nova's ``target_connect_addr``).
    ``disks`` are the target device names of the disks to copy in a block
    migration (``migrate_disks``).
    """

    dest: str
    inbound_addr: str | None = None
    block_migration: bool = False
    disks: tuple[str, ...] = ()
    paused: bool = False
    vfio: bool = False
    vpmem: bool = False
    destination_xml: str | None = None
    persistent_xml: str | None = None


@dataclass(frozen=True)
class Decision:
    """One rule that fired: what happened to ``item``, why, and which options decided it."""

    item: str
    action: str  # added | dropped | omitted | set | chosen | refused | translated | accepted
    reason: str
    options: tuple[str, ...] = ()
    warning: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "item": self.item,
            "action": self.action,
            "reason": self.reason,
            "options": list(self.options),
            "warning": self.warning,
        }


@dataclass(frozen=True)
class Plan:
    """The exact ``migrateToURI3`` call for one migration, and why."""

    flags: int
    uri: str = field(repr=False)  # may carry a password (live_migration_uri): see to_dict()
    migrate_uri: str | None
    params: dict[str, Any]
    decisions: tuple[Decision, ...]
    host: HostFacts
    migration: MigrationFacts

    @property
    def flag_names(self) -> list[str]:
        return constants.flag_names(self.flags)

    @property
    def display_uri(self) -> str:
        return uri.mask_credentials(self.uri)

    @property
    def warnings(self) -> list[str]:
        return [f"{d.item}: {d.reason}" for d in self.decisions if d.warning]

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)

    @property
    def tunnelled(self) -> bool:
        return self.has(constants.VIR_MIGRATE_TUNNELLED)

    @property
    def post_copy(self) -> bool:
        return self.has(constants.VIR_MIGRATE_POSTCOPY)

    @property
    def auto_converge(self) -> bool:
        return self.has(constants.VIR_MIGRATE_AUTO_CONVERGE)

    def display_params(self) -> dict[str, Any]:
        """Params safe to print: the domain XML is replaced by its size (it can be huge)."""
        shown = dict(self.params)
        for key in (constants.VIR_MIGRATE_PARAM_DEST_XML, constants.VIR_MIGRATE_PARAM_PERSIST_XML):
            if key in shown:
                shown[key] = f"<{len(shown[key])} characters of XML>"
        return shown

    def to_dict(self) -> dict[str, Any]:
        return {
            "flags": self.flags,
            "flag_names": self.flag_names,
            "uri": self.display_uri,
            "migrate_uri": self.migrate_uri,
            "params": self.display_params(),
            "decisions": [d.to_dict() for d in self.decisions],
            "warnings": self.warnings,
            "libvirt_version": format_version(self.host.libvirt_version),
            "qemu_version": format_version(self.host.qemu_version),
        }


def format_version(version: constants.Version) -> str:
    """(9, 0, 0) -> '9.0.0': the one way versions are written in messages and output."""
    return ".".join(str(part) for part in version)


def parse_version(text: str) -> constants.Version:
    """'9.0.0' -> (9, 0, 0); also accepts libvirt's integer form '9000000'."""
    text = text.strip()
    if _NUM_RE.match(text) and len(text) > 3:
        return version_from_int(int(text))
    parts = text.split(".")
    if not 1 <= len(parts) <= 3 or not all(_NUM_RE.match(p) for p in parts):
        raise ValueError(f"{ascii(text[:40])} is not a version like 9.0.0")
    nums = [int(p) for p in parts] + [0] * (3 - len(parts))
    return (nums[0], nums[1], nums[2])


def version_from_int(n: int) -> constants.Version:
    """libvirt's integer encoding (major * 1e6 + minor * 1e3 + micro) as a tuple."""
    return (n // 1_000_000, (n // 1000) % 1000, n % 1000)
