"""``plan()``: one migration's ``migrateToURI3`` call, built by a pipeline of small stages.

Each stage reads the inputs (options, effective options, host and migration
facts) and adds to the draft: flags, parameters and a :class:`Decision` for
every flag and parameter it added, dropped, omitted or set.  The order of
:data:`STAGES` is the order of the decisions in the plan.  The finished draft
is checked against the host's libvirt version and libvirt's rules before it
becomes a :class:`Plan`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from migrator import constants, exception, uri
from migrator.flags.legacy import EffectiveOptions
from migrator.flags.libvirt_rules import check_param_versions, libvirt_rule_violations
from migrator.flags.model import Decision, HostFacts, MigrationFacts, Options, Plan
from migrator.flags.startup import BASE_FLAGS, validated

_DISK_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
PC_OPT = "live_migration_permit_post_copy"
AC_OPT = "live_migration_permit_auto_converge"
_BASE_REASONS = {
    "LIVE": "the guest keeps running while its memory is copied",
    "PEER2PEER": "the source libvirtd drives the migration, so it survives the caller",
    "UNDEFINE_SOURCE": "the source definition is removed only once the migration "
    "succeeded, so the guest is defined on exactly one host",
    "PERSIST_DEST": "the destination keeps a persistent definition",
}


@dataclass(frozen=True)
class Inputs:
    """Everything the stages read."""

    options: Options
    eff: EffectiveOptions
    host: HostFacts
    migration: MigrationFacts
    transport: str  # of the control channel: 'tcp', 'tls', 'ssh', ...


@dataclass
class Draft:
    """The call being built, and what earlier stages decided that later ones need."""

    flags: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    tunnel: bool = False
    post_copy_blocker: str | None = None  # why post-copy was dropped for this migration
    control_uri: str = ""
    migrate_uri: str | None = None

    def add(self, name: str, reason: str, *options: str, warning: bool = False) -> None:
        self.flags |= constants.MIGRATE_FLAGS[name].bit
        self.decisions.append(Decision("VIR_MIGRATE_" + name, "added", reason, options, warning))

    def note(self, item: str, action: str, reason: str, *options: str,
             warning: bool = False) -> None:
        self.decisions.append(Decision(item, action, reason, options, warning))

    def has(self, name: str) -> bool:
        return bool(self.flags & constants.MIGRATE_FLAGS[name].bit)

    def set_param(self, key: str, value: Any, reason: str, *options: str) -> None:
        self.params[key] = value
        self.note("param " + key, "set", reason, *options)


Stage = Callable[[Draft, Inputs], None]


def _base_flags(d: Draft, i: Inputs) -> None:
    for name in BASE_FLAGS:
        d.add(name, _BASE_REASONS[name])


def _choose_tunnelled(i: Inputs) -> tuple[bool, str, tuple[str, ...]]:
    """(tunnel?, why, options behind it) for the tri-state live_migration_tunnelled."""
    options, source = i.options, i.eff.tunnel_for(i.migration.block_migration)
    if source.value is not None:
        return source.value, source.subject, (source.option,)
    auto = "live_migration_tunnelled unset (auto)"
    tun = "live_migration_tunnelled"
    if options.native_tls:
        return False, f"{auto}: native TLS already encrypts the data", (
            tun, "live_migration_with_native_tls")
    if i.migration.block_migration:
        return False, f"{auto}: libvirt cannot tunnel the disk copies of a block migration", (
            tun,)
    if options.parallel_connections > 1:
        return False, f"{auto}: parallel connections cannot be tunnelled", (
            tun, "live_migration_parallel_connections")
    if options.permit_post_copy:
        return False, f"{auto}: libvirt refuses post-copy over a tunnel", (tun, PC_OPT)
    if uri.is_encrypted_transport(i.transport):
        return True, (
            f"{auto}: the control channel is encrypted ({i.transport}) and native TLS is off, "
            "so the data goes through the same encrypted channel instead of in the clear"
        ), (tun, "live_migration_scheme")
    return False, f"{auto}: the control channel is plain {i.transport}, so there is nothing " \
        "to match; data goes straight from QEMU to QEMU", (tun,)


def _tunnel(d: Draft, i: Inputs) -> None:
    d.tunnel, why, tun_opts = _choose_tunnelled(i)
    if d.tunnel and i.migration.block_migration:
        source = i.eff.block_tunnel
        raise exception.MigrationRefused(
            f"block migration of {i.migration.dest} refused: {why}, but libvirt cannot tunnel "
            f"the NBD disk copies of a block migration with current QEMU; {source.fix} (use "
            "live_migration_with_native_tls to encrypt)"
        )
    if d.tunnel:
        d.add("TUNNELLED", why, *tun_opts)
        return
    d.note("VIR_MIGRATE_TUNNELLED", "omitted", why, *tun_opts)
    if uri.is_encrypted_transport(i.transport) and not i.options.native_tls:
        d.note("data encryption", "omitted",
               f"the control channel is encrypted ({i.transport}) but the migration data is "
               "not; set live_migration_with_native_tls = true to encrypt it",
               "live_migration_with_native_tls", warning=True)


def _native_tls(d: Draft, i: Inputs) -> None:
    if not i.options.native_tls:
        return
    d.add("TLS", "live_migration_with_native_tls = true: QEMU encrypts memory, device state "
          "and disk copies", "live_migration_with_native_tls")
    if i.transport == "tcp":
        d.note("control channel", "chosen",
               "native TLS encrypts the data but the libvirt control channel is plain tcp; set "
               "live_migration_scheme = tls", "live_migration_scheme",
               "live_migration_with_native_tls", warning=True)


def _post_copy_blocker(m: MigrationFacts) -> str | None:
    if m.paused:
        return "the guest is paused, and libvirt refuses post-copy for a paused guest " \
            "(Nova bug 1671011)"
    if m.vfio:
        return "the guest has a VFIO/mdev device, whose state cannot be post-copied"
    if m.vpmem:
        return "the guest has a vPMEM device, which post-copy cannot migrate"
    return None


def _post_copy(d: Draft, i: Inputs) -> None:
    if not i.options.permit_post_copy:
        return
    d.post_copy_blocker = _post_copy_blocker(i.migration)
    if d.post_copy_blocker:
        d.note("VIR_MIGRATE_POSTCOPY", "dropped", f"for this migration: {d.post_copy_blocker}",
               PC_OPT)
    else:
        d.add("POSTCOPY", "live_migration_permit_post_copy = true: a force-complete switches "
              "to post-copy instead of pausing the guest", PC_OPT)


def _auto_converge(d: Draft, i: Inputs) -> None:
    if not i.options.permit_auto_converge:
        return
    if d.has("POSTCOPY"):
        d.note("VIR_MIGRATE_AUTO_CONVERGE", "dropped",
               "post-copy is used for this migration and wins over auto-converge (QEMU "
               "would throttle a guest that post-copy can move anyway); set "
               "live_migration_permit_post_copy = false to use auto-converge",
               AC_OPT, PC_OPT, warning=True)
    elif i.migration.paused:
        d.note("VIR_MIGRATE_AUTO_CONVERGE", "omitted",
               "the guest is paused: it dirties no memory, so there is nothing to throttle",
               AC_OPT)
    elif d.post_copy_blocker:
        d.add("AUTO_CONVERGE", "used instead of post-copy, which was dropped for this "
              "migration", AC_OPT, PC_OPT)
    else:
        d.add("AUTO_CONVERGE", "live_migration_permit_auto_converge = true: QEMU throttles "
              "the guest if the migration does not converge", AC_OPT)


def _parallel(d: Draft, i: Inputs) -> None:
    n = i.options.parallel_connections
    if n > 1:
        opt = "live_migration_parallel_connections"
        d.add("PARALLEL", f"live_migration_parallel_connections = {n}", opt)
        d.set_param(constants.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS, n,
                    f"{n} connections carry the data", opt)


def _block_migration(d: Draft, i: Inputs) -> None:
    m = i.migration
    if not m.block_migration:
        return
    if m.disks:
        d.add("NON_SHARED_INC", f"block migration: copy the listed local disks "
              f"({', '.join(m.disks)})")
        d.set_param(constants.VIR_MIGRATE_PARAM_MIGRATE_DISKS, list(m.disks),
                    "only the listed disks are copied; attached volumes are left alone")
    else:
        d.note("VIR_MIGRATE_NON_SHARED_INC", "dropped",
               "block migration without a disk list: libvirt would copy every writable disk, "
               "including attached volumes, and corrupt them (Nova bug 1719362); nothing is "
               "copied, pass the disks to copy", warning=True)


def _extra_flags(d: Draft, i: Inputs) -> None:
    extras, other_kind = i.eff.extras_for(i.migration.block_migration)
    applies_to = ("migrations that copy no disks" if i.migration.block_migration
                  else "block migrations")
    for name, opt in other_kind.items():
        d.note("VIR_MIGRATE_" + name, "omitted", f"from {opt}, which applies to {applies_to} "
               "only", opt)
    for name, opt in extras.items():
        if name == "NON_SHARED_SYNCHRONOUS_WRITES" and not d.has("NON_SHARED_INC"):
            d.note("VIR_MIGRATE_" + name, "omitted",
                   "applies to block migrations that copy disks only, and this one copies none",
                   opt)
            continue
        d.add(name, f"requested in {opt}", opt)


def _control_uri(d: Draft, i: Inputs) -> None:
    m, options = i.migration, i.options
    d.control_uri = uri.control_uri(m.dest, options.scheme, options.uri_template,
                                    via=m.inbound_addr)
    via = "the destination's inbound address" if m.inbound_addr else "the destination " \
        "host name (the destination sent no inbound address)"
    how = " from the deprecated live_migration_uri template" if options.uri_template else \
        f" over {i.transport}"
    chosen_by = "live_migration_uri" if options.uri_template else "live_migration_scheme"
    d.note("uri", "chosen", f"control connection to {via}{how}{_data_port_note(i)}",
           chosen_by, "live_migration_inbound_addr")


def _data_port_note(i: Inputs) -> str:
    m, template = i.migration, i.options.uri_template
    if m.inbound_addr is None or uri.split_address(m.inbound_addr)[1] is None:
        return ""
    if template and uri.template_port(template) is not None:
        whose = "the one in live_migration_uri"
    elif uri.split_address(m.dest)[1] is not None:
        whose = "the one given with the destination host"
    else:
        whose = "the transport's default"
    return f" (its port is QEMU's data port; the control connection uses libvirtd's port, {whose})"


def _bandwidth(d: Draft, i: Inputs) -> None:
    bw = i.options.bandwidth
    d.params[constants.VIR_MIGRATE_PARAM_BANDWIDTH] = bw
    d.note("param bandwidth", "set", "always passed so the limit is explicit" + (
        " (0: the hypervisor's default, no limit)" if bw == 0 else f" ({bw} MiB/s)"),
        "live_migration_bandwidth")


def _data_uri(d: Draft, i: Inputs) -> None:
    inbound = i.migration.inbound_addr
    if inbound and not d.tunnel:
        d.migrate_uri = uri.data_uri(inbound)
        d.params[constants.VIR_MIGRATE_PARAM_URI] = d.migrate_uri
        d.note("migrate_uri", "set", "the data goes to the destination's inbound address",
               "live_migration_inbound_addr")
    elif inbound:
        port = uri.split_address(inbound)[1]
        d.note("migrate_uri", "omitted", "a tunnelled migration carries the data in the "
               "control connection; libvirt refuses a data URI with it" + (
                   f", so the data port {port} of the inbound address is not used"
                   if port else ""), "live_migration_tunnelled", warning=port is not None)
    else:
        d.note("migrate_uri", "omitted", "no inbound address from the destination: libvirt "
               "picks the destination's address", "live_migration_inbound_addr")


def _tls_destination(d: Draft, i: Inputs) -> None:
    m = i.migration
    name = uri.host_part(m.dest)  # what the certificate names: a host, never a port
    if i.options.native_tls and d.migrate_uri and uri.host_part(m.inbound_addr or "") != name:
        d.set_param(constants.VIR_MIGRATE_PARAM_TLS_DESTINATION, name,
                    f"the data goes to {m.inbound_addr}, but the certificate names {name}",
                    "live_migration_with_native_tls", "live_migration_inbound_addr")


def _domain_xml(d: Draft, i: Inputs) -> None:
    for key, value in ((constants.VIR_MIGRATE_PARAM_DEST_XML, i.migration.destination_xml),
                       (constants.VIR_MIGRATE_PARAM_PERSIST_XML, i.migration.persistent_xml)):
        if value is not None:
            d.set_param(key, value, "domain XML for the destination was given")


STAGES: tuple[Stage, ...] = (
    _base_flags, _tunnel, _native_tls, _post_copy, _auto_converge, _parallel,
    _block_migration, _extra_flags, _control_uri, _bandwidth, _data_uri, _tls_destination,
    _domain_xml,
)


def _validate_migration(m: MigrationFacts) -> None:
    uri.validate_address(m.dest, "destination host")
    for disk in m.disks:
        if not _DISK_RE.match(disk):
            raise exception.MigrationRefused(
                f"disk {ascii(disk[:40])} is not a disk target name like vda or hdb "
                "(letters, digits, '_', '.', '-'; at most 64)"
            )
    if m.inbound_addr is not None:
        uri.validate_address(m.inbound_addr, "destination inbound address")


def plan(options: Options, host: HostFacts, migration: MigrationFacts) -> Plan:
    """The ``migrateToURI3`` call for ``migration``, with a decision for every choice.

    Raises :class:`~migrator.exception.ConfigError` for start-up problems,
    :class:`~migrator.exception.InvalidAddress` for an unsafe destination or
    inbound address, and :class:`~migrator.exception.MigrationRefused` when
    this migration cannot be done safely with these options.
    """
    eff = validated(options, host)
    _validate_migration(migration)
    inputs = Inputs(options, eff, host, migration,
                    uri.transport(options.scheme, options.uri_template))
    draft = Draft(decisions=list(eff.decisions))
    for stage in STAGES:
        stage(draft, inputs)
    check_param_versions(draft.params, host)
    violations = libvirt_rule_violations(draft.flags, draft.params)
    if violations:  # a bug in the stages above, never a user error
        raise exception.MigratorError(
            "internal error: the plan breaks libvirt's rules: " + "; ".join(violations)
        )
    return Plan(draft.flags, draft.control_uri, draft.migrate_uri, draft.params,
                tuple(draft.decisions), host, migration)
