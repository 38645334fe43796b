"""The flag rules: (options, host facts, one migration's facts) -> a plan with reasons.

Pure: no libvirt, no I/O.  :func:`check_options` runs at start-up
(``init_host``) and raises every contradiction at once; :func:`plan` builds the
exact ``migrateToURI3(uri, params, flags)`` call for one migration and records
a :class:`Decision` for every flag and parameter added, dropped, omitted or
refused.  Before returning, the plan is checked against libvirt's own rules
(:func:`libvirt_rule_violations`): a plan libvirt would reject is a bug here,
never something to discover mid-migration.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from migrator import constants as c
from migrator import exception, uri

DEFAULT_LIBVIRT_VERSION: c.Version = (8, 0, 0)  # Nova's minimums
DEFAULT_QEMU_VERSION: c.Version = (6, 2, 0)
MIN_QEMU_MULTIFD_WITH_POSTCOPY: c.Version = (10, 1, 0)
MIN_LIBVIRT_MIGRATE_TO_URI3: c.Version = (1, 1, 0)
SUPPORTED_VIRT_TYPES = ("kvm", "qemu")
_DISK_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_NUM_RE = re.compile(r"^[0-9]{1,9}$")

# Flags migrator decides itself: an operator asking for them in
# live_migration_extra_flags is told which option (or fact) controls them.
OWNED_FLAGS: dict[str, str] = {
    "LIVE": "migrator always sets it",
    "PEER2PEER": "migrator always sets it (libvirt drives the migration)",
    "PERSIST_DEST": "migrator always sets it",
    "UNDEFINE_SOURCE": "migrator always sets it",
    "TUNNELLED": "use live_migration_tunnelled",
    "TLS": "use live_migration_with_native_tls",
    "POSTCOPY": "use live_migration_permit_post_copy",
    "POSTCOPY_RESUME": "migrator sets it itself when it recovers a failed post-copy",
    "AUTO_CONVERGE": "use live_migration_permit_auto_converge",
    "PARALLEL": "use live_migration_parallel_connections",
    "NON_SHARED_DISK": "block migration is chosen per migration (block_migration with a disk "
    "list); copying every disk can corrupt attached volumes",
    "NON_SHARED_INC": "block migration is chosen per migration (block_migration with a disk list)",
    "PAUSED": "migrator migrates guests in the state they are in",
    "UNSAFE": "it skips libvirt's disk-cache safety checks; migrator never sets it",
    "OFFLINE": "an offline migration is not a live migration",
    "CHANGE_PROTECTION": "libvirt applies it itself to peer-to-peer migrations",
    "RDMA_PIN_ALL": "it needs an rdma:// data URI, which migrator does not build",
}
EXTRA_FLAGS = ("COMPRESSED", "ABORT_ON_ERROR", "ZEROCOPY", "NON_SHARED_SYNCHRONOUS_WRITES")
BASE_FLAGS = ("LIVE", "PEER2PEER", "UNDEFINE_SOURCE", "PERSIST_DEST")


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
    libvirt_version: c.Version = DEFAULT_LIBVIRT_VERSION
    qemu_version: c.Version = DEFAULT_QEMU_VERSION


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
    action: str  # added | dropped | omitted | set | chosen | refused | translated
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
        return c.flag_names(self.flags)

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
        return self.has(c.VIR_MIGRATE_TUNNELLED)

    @property
    def post_copy(self) -> bool:
        return self.has(c.VIR_MIGRATE_POSTCOPY)

    @property
    def auto_converge(self) -> bool:
        return self.has(c.VIR_MIGRATE_AUTO_CONVERGE)

    def display_params(self) -> dict[str, Any]:
        """Params safe to print: the domain XML is replaced by its size (it can be huge)."""
        shown = dict(self.params)
        for key in (c.VIR_MIGRATE_PARAM_DEST_XML, c.VIR_MIGRATE_PARAM_PERSIST_XML):
            if key in shown:
                shown[key] = f"<{len(shown[key])} characters of XML>"
        return shown

    def to_dict(self) -> dict[str, Any]:
        return {
            "flags": self.flags,
            "flag_names": self.flag_names,
            "uri": uri.mask_credentials(self.uri),
            "migrate_uri": self.migrate_uri,
            "params": self.display_params(),
            "decisions": [d.to_dict() for d in self.decisions],
            "warnings": self.warnings,
            "libvirt_version": ".".join(map(str, self.host.libvirt_version)),
            "qemu_version": ".".join(map(str, self.host.qemu_version)),
        }


def _version(v: c.Version) -> str:
    return ".".join(str(p) for p in v)


def normalize_flag_name(name: str) -> str:
    """'compressed' / 'VIR_MIGRATE_COMPRESSED' -> 'COMPRESSED'."""
    name = name.strip().upper()
    return name[len("VIR_MIGRATE_") :] if name.startswith("VIR_MIGRATE_") else name


@dataclass
class _Effective:
    """Options after the deprecated flag lists are folded in (internal)."""

    tunnelled: bool | None
    tunnelled_option: str
    extra: dict[str, str] = field(default_factory=dict)  # flag -> option that asked for it
    block_extra: dict[str, str] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)


def _unknown_flag(option: str, raw: str) -> str:
    valid = ", ".join(EXTRA_FLAGS)
    return (
        f"[libvirt] {option}: {raw!r} is not a libvirt migration flag migrator can add; "
        f"valid names (with or without VIR_MIGRATE_): {valid}"
    )


def _fold_legacy(options: Options, problems: list[str]) -> _Effective:
    eff = _Effective(options.tunnelled, "live_migration_tunnelled")
    for raw in options.extra_flags:
        name = normalize_flag_name(raw)
        if name in OWNED_FLAGS:
            problems.append(
                f"[libvirt] live_migration_extra_flags: {raw!r} cannot be added by hand: "
                f"{OWNED_FLAGS[name]}"
            )
        elif name not in EXTRA_FLAGS:
            problems.append(_unknown_flag("live_migration_extra_flags", raw))
        else:
            eff.extra[name] = "live_migration_extra_flags"

    for option, names, target in (
        ("live_migration_flag", options.legacy_live_flags, eff.extra),
        ("block_migration_flag", options.legacy_block_flags, eff.block_extra),
    ):
        if names is None:
            continue
        changes: list[str] = []
        kept: list[str] = []
        write: list[str] = []
        for raw in names:
            name = normalize_flag_name(raw)
            if name == "TUNNELLED":
                if options.tunnelled is None:
                    eff.tunnelled = True
                    eff.tunnelled_option = option
                    changes.append("TUNNELLED read as live_migration_tunnelled = true")
                    write.append("live_migration_tunnelled = true")
                else:
                    changes.append("TUNNELLED ignored: live_migration_tunnelled is set and wins")
            elif name in OWNED_FLAGS:
                changes.append(f"{name} dropped ({OWNED_FLAGS[name]})")
            elif name in EXTRA_FLAGS:
                target.setdefault(name, option)
                kept.append(name)
            else:
                problems.append(_unknown_flag(option, raw))
        if kept:
            changes.append(f"{', '.join(kept)} kept as extra flags")
            write.append("live_migration_extra_flags = " + ",".join(kept))
        advice = "; write instead: " + "; ".join(write) if write else ""
        eff.decisions.append(
            Decision(
                option,
                "translated",
                f"{option} is deprecated: {'; '.join(changes) or 'nothing in it is used'}"
                f"{advice}; then remove {option}",
                (option,),
                warning=True,
            )
        )
    return eff


def _check(
    options: Options, host: HostFacts
) -> tuple[_Effective, list[str], list[str]]:
    """Start-up checks; returns (effective options, config problems, host problems)."""
    problems: list[str] = []
    host_problems: list[str] = []
    if host.virt_type not in SUPPORTED_VIRT_TYPES:
        problems.append(
            f"[libvirt] virt_type = {host.virt_type}: migrator live-migrates only kvm and qemu "
            "guests"
        )
    if options.scheme is not None:
        try:
            uri.validate_scheme(options.scheme)
        except exception.ConfigError as exc:
            problems.extend(exc.problems)
    if options.uri_template is not None:
        try:
            uri.validate_template(options.uri_template)
        except exception.ConfigError as exc:
            problems.extend(exc.problems)
    if options.bandwidth < 0:
        problems.append("[libvirt] live_migration_bandwidth must be 0 (no limit) or positive")
    if options.parallel_connections < 1:
        problems.append("[libvirt] live_migration_parallel_connections must be at least 1")

    eff = _fold_legacy(options, problems)
    tun = eff.tunnelled_option
    parallel = options.parallel_connections > 1
    if eff.tunnelled:
        if options.native_tls:
            problems.append(
                f"[libvirt] {tun} = true and live_migration_with_native_tls = true cannot be "
                "used together: native TLS already encrypts the data; unset "
                f"{tun} (prefer live_migration_with_native_tls)"
            )
        if options.permit_post_copy:
            problems.append(
                f"[libvirt] {tun} = true and live_migration_permit_post_copy = true cannot be "
                "used together: libvirt refuses post-copy over a tunnel; unset "
                f"{tun} or set live_migration_permit_post_copy = false"
            )
        if parallel:
            problems.append(
                f"[libvirt] {tun} = true and live_migration_parallel_connections = "
                f"{options.parallel_connections} cannot be used together: libvirt cannot tunnel "
                f"parallel connections; unset {tun} or set "
                "live_migration_parallel_connections = 1"
            )
    if parallel and options.permit_post_copy and host.qemu_version < MIN_QEMU_MULTIFD_WITH_POSTCOPY:
        host_problems.append(
            f"[libvirt] live_migration_parallel_connections = {options.parallel_connections} "
            "with live_migration_permit_post_copy = true needs QEMU "
            f"{_version(MIN_QEMU_MULTIFD_WITH_POSTCOPY)} or newer (this host has "
            f"{_version(host.qemu_version)}; older QEMU can lose the guest when it switches to "
            "post-copy); set live_migration_parallel_connections = 1 or disable post-copy"
        )
    all_extra = {**eff.block_extra, **eff.extra}
    if "ZEROCOPY" in all_extra and not parallel:
        problems.append(
            f"[libvirt] {all_extra['ZEROCOPY']}: ZEROCOPY needs parallel connections; set "
            "live_migration_parallel_connections to 2 or more, or remove ZEROCOPY"
        )
    if "COMPRESSED" in all_extra and parallel:
        problems.append(
            f"[libvirt] {all_extra['COMPRESSED']}: COMPRESSED with "
            "live_migration_parallel_connections > 1 needs a compression method that migrator "
            "does not set (libvirt refuses it); remove COMPRESSED or use one connection"
        )

    # migrateToURI3 itself, and every parameter this configuration can emit.
    if host.libvirt_version < MIN_LIBVIRT_MIGRATE_TO_URI3:
        host_problems.append(
            f"libvirt {_version(host.libvirt_version)} has no migrateToURI3 (libvirt "
            f"{_version(MIN_LIBVIRT_MIGRATE_TO_URI3)} or newer is needed); upgrade libvirt"
        )
    else:
        params = {
            c.VIR_MIGRATE_PARAM_TLS_DESTINATION: (
                options.native_tls,
                "live_migration_with_native_tls (with a destination inbound address)",
            ),
            c.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS: (
                parallel, "live_migration_parallel_connections"),
        }
        for key, (used, what) in params.items():
            since = c.MIGRATE_PARAMS[key].since
            if used and host.libvirt_version < since:
                host_problems.append(
                    f"{what} needs libvirt {_version(since)} or newer (parameter {key}); this "
                    f"host has {_version(host.libvirt_version)}"
                )

    # Every flag this configuration can ever emit must exist in the host's libvirt.
    possible = list(BASE_FLAGS) + ["NON_SHARED_INC"] + list(all_extra)
    wanted = {
        "TUNNELLED": (bool(eff.tunnelled) or eff.tunnelled is None, tun),
        "TLS": (options.native_tls, "live_migration_with_native_tls"),
        "POSTCOPY": (options.permit_post_copy, "live_migration_permit_post_copy"),
        "AUTO_CONVERGE": (options.permit_auto_converge, "live_migration_permit_auto_converge"),
        "PARALLEL": (parallel, "live_migration_parallel_connections"),
    }
    possible += [name for name, (on, _opt) in wanted.items() if on]
    for name in possible:
        since = c.MIGRATE_FLAGS[name].since
        if host.libvirt_version < since:
            opt = wanted.get(name, (True, all_extra.get(name, "")))[1]
            host_problems.append(
                f"VIR_MIGRATE_{name} needs libvirt {_version(since)} or newer; this host has "
                f"{_version(host.libvirt_version)}" + (f"; change [libvirt] {opt}" if opt else "")
            )
    return eff, problems, host_problems


def _validated(options: Options, host: HostFacts) -> _Effective:
    eff, problems, host_problems = _check(options, host)
    if problems:
        raise exception.ConfigError(problems + host_problems)
    if host_problems:
        raise exception.UnsupportedByHost(host_problems)
    return eff


def check_options(options: Options, host: HostFacts) -> list[Decision]:
    """Start-up validation: raise every contradiction at once; return the translation notes.

    Raises :class:`~migrator.exception.ConfigError` (or its child
    :class:`~migrator.exception.UnsupportedByHost` when only the host's versions
    are to blame), with one message per problem naming the option(s) and the fix.
    """
    return list(_validated(options, host).decisions)


class _Builder:
    def __init__(self) -> None:
        self.flags = 0
        self.decisions: list[Decision] = []

    def add(self, name: str, reason: str, *options: str, warning: bool = False) -> None:
        self.flags |= c.MIGRATE_FLAGS[name].bit
        self.decisions.append(Decision("VIR_MIGRATE_" + name, "added", reason, options, warning))

    def drop(self, name: str, reason: str, *options: str, warning: bool = False) -> None:
        self.flags &= ~c.MIGRATE_FLAGS[name].bit
        self.decisions.append(Decision("VIR_MIGRATE_" + name, "dropped", reason, options, warning))

    def note(self, item: str, action: str, reason: str, *options: str, warning: bool = False):
        self.decisions.append(Decision(item, action, reason, options, warning))


def _choose_tunnelled(
    options: Options, eff: _Effective, migration: MigrationFacts, transport: str
) -> tuple[bool, str, tuple[str, ...]]:
    """(tunnel?, why, options behind it) for the tri-state live_migration_tunnelled."""
    if eff.tunnelled is not None:
        word = "true" if eff.tunnelled else "false"
        return eff.tunnelled, f"{eff.tunnelled_option} = {word}", (eff.tunnelled_option,)
    auto = "live_migration_tunnelled unset (auto)"
    if options.native_tls:
        return False, f"{auto}: native TLS already encrypts the data", (
            "live_migration_tunnelled",
            "live_migration_with_native_tls",
        )
    if migration.block_migration:
        return False, f"{auto}: libvirt cannot tunnel the disk copies of a block migration", (
            "live_migration_tunnelled",
        )
    if options.parallel_connections > 1:
        return False, f"{auto}: parallel connections cannot be tunnelled", (
            "live_migration_tunnelled",
            "live_migration_parallel_connections",
        )
    if options.permit_post_copy:
        return False, f"{auto}: libvirt refuses post-copy over a tunnel", (
            "live_migration_tunnelled",
            "live_migration_permit_post_copy",
        )
    if uri.is_encrypted_transport(transport):
        return True, (
            f"{auto}: the control channel is encrypted ({transport}) and native TLS is off, so "
            "the data goes through the same encrypted channel instead of in the clear"
        ), ("live_migration_tunnelled", "live_migration_scheme")
    return False, f"{auto}: the control channel is plain {transport}, so there is nothing to " \
        "match; data goes straight from QEMU to QEMU", ("live_migration_tunnelled",)


def plan(options: Options, host: HostFacts, migration: MigrationFacts) -> Plan:
    """The ``migrateToURI3`` call for ``migration``, with a decision for every choice.

    Raises :class:`~migrator.exception.ConfigError` for start-up problems,
    :class:`~migrator.exception.InvalidAddress` for an unsafe destination or
    inbound address, and :class:`~migrator.exception.MigrationRefused` when
    this migration cannot be done safely with these options.
    """
    eff = _validated(options, host)
    uri.validate_address(migration.dest, "destination host")
    for disk in migration.disks:
        if not _DISK_RE.match(disk):
            raise exception.MigrationRefused(
                f"disk {ascii(disk[:40])} is not a disk target name like vda or hdb "
                "(letters, digits, '_', '.', '-'; at most 64)"
            )
    if migration.inbound_addr is not None:
        uri.validate_address(migration.inbound_addr, "destination inbound address")

    b = _Builder()
    b.decisions.extend(eff.decisions)
    for name in BASE_FLAGS:
        b.add(name, {
            "LIVE": "the guest keeps running while its memory is copied",
            "PEER2PEER": "the source libvirtd drives the migration, so it survives the caller",
            "UNDEFINE_SOURCE": "the source definition is removed only once the migration "
            "succeeded, so the guest is defined on exactly one host",
            "PERSIST_DEST": "the destination keeps a persistent definition",
        }[name])

    transport = uri.transport(options.scheme, options.uri_template)
    tunnel, why, tun_opts = _choose_tunnelled(options, eff, migration, transport)
    if tunnel and migration.block_migration:
        raise exception.MigrationRefused(
            f"block migration of {migration.dest} refused: {why}, but libvirt cannot tunnel "
            "the NBD disk copies of a block migration with current QEMU; unset "
            f"{eff.tunnelled_option} (use live_migration_with_native_tls to encrypt)"
        )
    if tunnel:
        b.add("TUNNELLED", why, *tun_opts)
    else:
        b.note("VIR_MIGRATE_TUNNELLED", "omitted", why, *tun_opts)
        if uri.is_encrypted_transport(transport) and not options.native_tls:
            b.note(
                "data encryption", "omitted",
                f"the control channel is encrypted ({transport}) but the migration data is "
                "not; set live_migration_with_native_tls = true to encrypt it",
                "live_migration_with_native_tls", warning=True,
            )

    if options.native_tls:
        b.add("TLS", "live_migration_with_native_tls = true: QEMU encrypts memory, device state "
              "and disk copies", "live_migration_with_native_tls")
        if transport == "tcp":
            b.note(
                "control channel", "chosen",
                "native TLS encrypts the data but the libvirt control channel is plain tcp; set "
                "live_migration_scheme = tls", "live_migration_scheme",
                "live_migration_with_native_tls", warning=True,
            )

    # Post-copy and auto-converge.
    pc_opt = "live_migration_permit_post_copy"
    ac_opt = "live_migration_permit_auto_converge"
    post_copy_blocker = None
    if options.permit_post_copy:
        if migration.paused:
            post_copy_blocker = "the guest is paused, and libvirt refuses post-copy for a " \
                "paused guest (Nova bug 1671011)"
        elif migration.vfio:
            post_copy_blocker = "the guest has a VFIO/mdev device, whose state cannot be " \
                "post-copied"
        elif migration.vpmem:
            post_copy_blocker = "the guest has a vPMEM device, which post-copy cannot migrate"
        if post_copy_blocker:
            b.note("VIR_MIGRATE_POSTCOPY", "dropped", f"for this migration: {post_copy_blocker}",
                   pc_opt)
        else:
            b.add("POSTCOPY", "live_migration_permit_post_copy = true: a force-complete switches "
                  "to post-copy instead of pausing the guest", pc_opt)
    if options.permit_auto_converge:
        if b.flags & c.VIR_MIGRATE_POSTCOPY:
            b.note("VIR_MIGRATE_AUTO_CONVERGE", "dropped",
                   "post-copy is used for this migration and wins over auto-converge (QEMU "
                   "would throttle a guest that post-copy can move anyway); set "
                   "live_migration_permit_post_copy = false to use auto-converge",
                   ac_opt, pc_opt, warning=True)
        elif migration.paused:
            b.note("VIR_MIGRATE_AUTO_CONVERGE", "omitted",
                   "the guest is paused: it dirties no memory, so there is nothing to throttle",
                   ac_opt)
        elif post_copy_blocker:
            b.add("AUTO_CONVERGE", "used instead of post-copy, which was dropped for this "
                  "migration", ac_opt, pc_opt)
        else:
            b.add("AUTO_CONVERGE", "live_migration_permit_auto_converge = true: QEMU throttles "
                  "the guest if the migration does not converge", ac_opt)

    params: dict[str, Any] = {}
    n = options.parallel_connections
    if n > 1:
        b.add("PARALLEL", f"live_migration_parallel_connections = {n}",
              "live_migration_parallel_connections")
        params[c.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] = n
        b.note("param " + c.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS, "set",
               f"{n} connections carry the data", "live_migration_parallel_connections")

    # Block migration.
    if migration.block_migration:
        if migration.disks:
            b.add("NON_SHARED_INC", "block migration: copy the listed local disks "
                  f"({', '.join(migration.disks)})")
            params[c.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = list(migration.disks)
            b.note("param " + c.VIR_MIGRATE_PARAM_MIGRATE_DISKS, "set",
                   "only the listed disks are copied; attached volumes are left alone")
        else:
            b.note("VIR_MIGRATE_NON_SHARED_INC", "dropped",
                   "block migration without a disk list: libvirt would copy every writable disk, "
                   "including attached volumes, and corrupt them (Nova bug 1719362); nothing is "
                   "copied, pass the disks to copy", warning=True)

    extras = dict(eff.extra)
    if migration.block_migration:
        extras.update({k: v for k, v in eff.block_extra.items() if k not in extras})
    elif eff.block_extra:
        for name, opt in eff.block_extra.items():
            if name not in extras:
                b.note("VIR_MIGRATE_" + name, "omitted",
                       f"from {opt}, which applies to block migrations only", opt)
    for name, opt in extras.items():
        if name == "NON_SHARED_SYNCHRONOUS_WRITES" and not b.flags & c.VIR_MIGRATE_NON_SHARED_INC:
            b.note("VIR_MIGRATE_" + name, "omitted",
                   "applies to block migrations that copy disks only, and this one copies none",
                   opt)
            continue
        b.add(name, f"requested in {opt}", opt)

    # URIs and the remaining params.
    target = migration.inbound_addr or migration.dest
    control = uri.control_uri(target, options.scheme, options.uri_template)
    via = "the destination's inbound address" if migration.inbound_addr else "the destination " \
        "host name (the destination sent no inbound address)"
    b.note("uri", "chosen", f"control connection to {via}" + (
        " from the deprecated live_migration_uri template" if options.uri_template else
        f" over {transport}"), "live_migration_uri" if options.uri_template else
        "live_migration_scheme", "live_migration_inbound_addr")

    params[c.VIR_MIGRATE_PARAM_BANDWIDTH] = options.bandwidth
    b.note("param bandwidth", "set", "always passed so the limit is explicit" + (
        " (0: the hypervisor's default, no limit)" if options.bandwidth == 0 else
        f" ({options.bandwidth} MiB/s)"), "live_migration_bandwidth")

    migrate_uri = None
    if migration.inbound_addr and not tunnel:
        migrate_uri = uri.data_uri(migration.inbound_addr)
        params[c.VIR_MIGRATE_PARAM_URI] = migrate_uri
        b.note("migrate_uri", "set", "the data goes to the destination's inbound address",
               "live_migration_inbound_addr")
    elif migration.inbound_addr:
        b.note("migrate_uri", "omitted", "a tunnelled migration carries the data in the control "
               "connection; libvirt refuses a data URI with it", "live_migration_tunnelled")
    else:
        b.note("migrate_uri", "omitted", "no inbound address from the destination: libvirt "
               "picks the destination's address", "live_migration_inbound_addr")

    if options.native_tls and migrate_uri and migration.inbound_addr != migration.dest:
        params[c.VIR_MIGRATE_PARAM_TLS_DESTINATION] = migration.dest
        b.note("param " + c.VIR_MIGRATE_PARAM_TLS_DESTINATION, "set",
               f"the data goes to {migration.inbound_addr}, but the certificate names "
               f"{migration.dest}", "live_migration_with_native_tls",
               "live_migration_inbound_addr")
    for key, value in ((c.VIR_MIGRATE_PARAM_DEST_XML, migration.destination_xml),
                       (c.VIR_MIGRATE_PARAM_PERSIST_XML, migration.persistent_xml)):
        if value is not None:
            params[key] = value
            b.note("param " + key, "set", "domain XML for the destination was given")

    _check_param_versions(params, host)
    violations = libvirt_rule_violations(b.flags, params)
    if violations:  # a bug in the rules above, never a user error
        raise exception.MigratorError(
            "internal error: the plan breaks libvirt's rules: " + "; ".join(violations)
        )
    return Plan(b.flags, control, migrate_uri, params, tuple(b.decisions), host, migration)


def _check_param_versions(params: Mapping[str, Any], host: HostFacts) -> None:
    missing = [
        f"parameter {key} needs libvirt {_version(c.MIGRATE_PARAMS[key].since)} or newer; this "
        f"host has {_version(host.libvirt_version)}"
        for key in params
        if host.libvirt_version < c.MIGRATE_PARAMS[key].since
    ]
    if missing:
        raise exception.UnsupportedByHost(missing)


def libvirt_rule_violations(flags: int, params: Mapping[str, Any]) -> list[str]:
    """The rules libvirt's QEMU driver enforces (peers-and-libvirt.md §4.4), as data checks.

    Returns one message per broken rule; an empty list means libvirt accepts the
    combination.  Also covers the documented-only rules and two policy rules
    (TLS or PARALLEL over a tunnel).
    """

    def has(name: str) -> bool:
        return bool(flags & c.MIGRATE_FLAGS[name].bit)

    out: list[str] = []
    non_shared = has("NON_SHARED_DISK") or has("NON_SHARED_INC")
    if has("POSTCOPY") and (not has("LIVE") or has("PAUSED")):
        out.append("POSTCOPY needs LIVE and not PAUSED")
    if has("POSTCOPY") and has("TUNNELLED"):
        out.append("POSTCOPY cannot be tunnelled")
    if has("OFFLINE") and (non_shared or not has("PERSIST_DEST") or has("TUNNELLED")):
        out.append("OFFLINE needs PERSIST_DEST and allows neither NON_SHARED_* nor TUNNELLED")
    if has("ZEROCOPY") and not has("PARALLEL"):
        out.append("ZEROCOPY needs PARALLEL")
    if non_shared and has("TUNNELLED"):
        out.append("NON_SHARED_* cannot be tunnelled")
    if c.VIR_MIGRATE_PARAM_MIGRATE_DISKS in params and not non_shared:
        out.append("migrate_disks needs NON_SHARED_DISK or NON_SHARED_INC")
    if has("POSTCOPY_RESUME") and not has("POSTCOPY"):
        out.append("POSTCOPY_RESUME needs POSTCOPY")
    if (c.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL in params
            or c.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT in params) and not has("AUTO_CONVERGE"):
        out.append("auto_converge.* params need AUTO_CONVERGE")
    if c.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS in params and not has("PARALLEL"):
        out.append("parallel.connections needs PARALLEL")
    if has("COMPRESSED") and has("PARALLEL") and c.VIR_MIGRATE_PARAM_COMPRESSION not in params:
        out.append("COMPRESSED with PARALLEL needs a compression method")
    if has("TUNNELLED") and not has("PEER2PEER"):
        out.append("TUNNELLED needs PEER2PEER")
    if has("TUNNELLED") and c.VIR_MIGRATE_PARAM_URI in params:
        out.append("migrate_uri is not supported with TUNNELLED")
    if has("NON_SHARED_DISK") and has("NON_SHARED_INC"):
        out.append("NON_SHARED_DISK and NON_SHARED_INC exclude each other")
    if has("NON_SHARED_SYNCHRONOUS_WRITES") and not non_shared:
        out.append("NON_SHARED_SYNCHRONOUS_WRITES needs NON_SHARED_*")
    if has("RDMA_PIN_ALL") and not str(params.get(c.VIR_MIGRATE_PARAM_URI, "")).startswith("rdma"):
        out.append("RDMA_PIN_ALL needs an rdma:// migrate_uri")
    if has("TUNNELLED") and (has("TLS") or has("PARALLEL")):
        out.append("TLS and PARALLEL cannot be tunnelled")
    return out


def parse_version(text: str) -> c.Version:
    """'9.0.0' -> (9, 0, 0); also accepts libvirt's integer form '9000000'."""
    text = text.strip()
    if _NUM_RE.match(text) and len(text) > 3:
        n = int(text)
        return (n // 1_000_000, (n // 1000) % 1000, n % 1000)
    parts = text.split(".")
    if not 1 <= len(parts) <= 3 or not all(_NUM_RE.match(p) for p in parts):
        raise ValueError(f"{ascii(text[:40])} is not a version like 9.0.0")
    nums = [int(p) for p in parts] + [0] * (3 - len(parts))
    return (nums[0], nums[1], nums[2])


def version_from_int(n: int) -> c.Version:
    """libvirt's integer encoding (major * 1e6 + minor * 1e3 + micro) as a tuple."""
    return (n // 1_000_000, (n // 1000) % 1000, n % 1000)

