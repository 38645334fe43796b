"""Flag names an operator may write, and the deprecated flag lists folded into the options.

``live_migration_flag`` and ``block_migration_flag`` (Nova before Newton) are
read so old configuration files keep working: each becomes a ``translated``
decision that says what was kept, what was dropped and what to write instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from migrator.flags.model import Decision, Options

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
LEGACY_OPTIONS = ("live_migration_flag", "block_migration_flag")


def normalize_flag_name(name: str) -> str:
    """'compressed' / 'VIR_MIGRATE_COMPRESSED' -> 'COMPRESSED'."""
    name = name.strip().upper()
    return name[len("VIR_MIGRATE_") :] if name.startswith("VIR_MIGRATE_") else name


@dataclass(frozen=True)
class TunnelSource:
    """Whether one kind of migration is tunnelled, which option says so, and how to undo it."""

    value: bool | None  # None: auto (the rule in flags.stages decides per migration)
    option: str = "live_migration_tunnelled"

    @property
    def legacy(self) -> bool:
        return self.option in LEGACY_OPTIONS

    @property
    def subject(self) -> str:
        """What the operator wrote, as a message names it."""
        if self.legacy:
            return f"TUNNELLED in {self.option}"
        return f"live_migration_tunnelled = {'true' if self.value else 'false'}"

    @property
    def fix(self) -> str:
        """The change that stops the tunnel, whatever else the configuration says."""
        if self.legacy:
            return f"remove TUNNELLED from {self.option}"
        return "set live_migration_tunnelled = false"


@dataclass
class EffectiveOptions:
    """The options after the deprecated flag lists are folded in.

    Like Nova's lists, ``live_migration_flag`` applies to migrations that copy no
    disks and ``block_migration_flag`` to block migrations only; an explicit
    ``live_migration_tunnelled`` wins over both.
    """

    tunnel: TunnelSource  # migrations that copy no disks
    block_tunnel: TunnelSource  # block migrations
    extra: dict[str, str] = field(default_factory=dict)  # flag -> option that asked for it
    live_extra: dict[str, str] = field(default_factory=dict)  # migrations without disks
    block_extra: dict[str, str] = field(default_factory=dict)  # block migrations only
    decisions: list[Decision] = field(default_factory=list)

    def tunnel_for(self, block_migration: bool) -> TunnelSource:
        return self.block_tunnel if block_migration else self.tunnel

    def extras_for(self, block_migration: bool) -> tuple[dict[str, str], dict[str, str]]:
        """(extra flags for this kind of migration, those of the other kind's list)."""
        own, other = ((self.block_extra, self.live_extra) if block_migration
                      else (self.live_extra, self.block_extra))
        used = {**self.extra, **{k: v for k, v in own.items() if k not in self.extra}}
        return used, {k: v for k, v in other.items() if k not in used}

    @property
    def all_extra(self) -> dict[str, str]:
        """Every extra flag some migration can get -> the option that asked for it."""
        return {**self.block_extra, **self.live_extra, **self.extra}


def flag_name_problems(options: Options) -> list[str]:
    """One message per name in the flag lists that migrator cannot add."""
    problems = []
    for raw in options.extra_flags:
        name = normalize_flag_name(raw)
        if name in OWNED_FLAGS:
            problems.append(
                f"[libvirt] live_migration_extra_flags: {raw!r} cannot be added by hand: "
                f"{OWNED_FLAGS[name]}"
            )
        elif name not in EXTRA_FLAGS:
            problems.append(_unknown_flag("live_migration_extra_flags", raw))
    for option, names in zip(LEGACY_OPTIONS, _legacy_lists(options), strict=True):
        for raw in names or ():
            name = normalize_flag_name(raw)
            if name != "TUNNELLED" and name not in OWNED_FLAGS and name not in EXTRA_FLAGS:
                problems.append(_unknown_flag(option, raw))
    return problems


def _unknown_flag(option: str, raw: str) -> str:
    valid = ", ".join(EXTRA_FLAGS)
    return (
        f"[libvirt] {option}: {raw!r} is not a libvirt migration flag migrator can add; "
        f"valid names (with or without VIR_MIGRATE_): {valid}"
    )


def _legacy_lists(options: Options) -> tuple[tuple[str, ...] | None, ...]:
    return (options.legacy_live_flags, options.legacy_block_flags)


def fold_legacy(options: Options) -> EffectiveOptions:
    """The effective options, with one ``translated`` decision per deprecated list set.

    Names that are not flags are skipped here (:func:`flag_name_problems` refuses them).
    """
    explicit = TunnelSource(options.tunnelled)
    eff = EffectiveOptions(explicit, explicit)
    for raw in options.extra_flags:
        name = normalize_flag_name(raw)
        if name in EXTRA_FLAGS:
            eff.extra[name] = "live_migration_extra_flags"
    for option, names in zip(LEGACY_OPTIONS, _legacy_lists(options), strict=True):
        if names is not None:
            eff.decisions.append(_fold_list(options, eff, option, names))
    return eff


# What TUNNELLED in each list does when live_migration_tunnelled is unset, and what to write.
_LEGACY_TUNNEL = {
    "live_migration_flag": (
        "TUNNELLED tunnels the migrations that copy no disks",
        "live_migration_with_native_tls = true (encrypts every migration, block migrations "
        "too), or live_migration_tunnelled = true (block migrations are then refused: libvirt "
        "cannot tunnel their disk copies)",
    ),
    "block_migration_flag": (
        "TUNNELLED refuses every block migration: libvirt cannot tunnel their disk copies",
        "live_migration_with_native_tls = true to encrypt block migrations",
    ),
}


def _fold_list(
    options: Options, eff: EffectiveOptions, option: str, names: tuple[str, ...]
) -> Decision:
    block = option == "block_migration_flag"
    target = eff.block_extra if block else eff.live_extra
    changes: list[str] = []
    kept: list[str] = []
    write: list[str] = []
    for raw in names:
        name = normalize_flag_name(raw)
        if name == "TUNNELLED":
            if options.tunnelled is not None:
                changes.append("TUNNELLED ignored: live_migration_tunnelled is set and wins")
                continue
            source = TunnelSource(True, option)
            if block:
                eff.block_tunnel = source
            else:
                eff.tunnel = source
            changes.append(_LEGACY_TUNNEL[option][0])
            write.append(_LEGACY_TUNNEL[option][1])
        elif name in OWNED_FLAGS:
            changes.append(f"{name} dropped ({OWNED_FLAGS[name]})")
        elif name in EXTRA_FLAGS:
            target.setdefault(name, option)
            kept.append(name)
    if kept:
        kind = "block migrations" if block else "migrations that copy no disks"
        changes.append(f"{', '.join(kept)} kept as extra flags of {kind}")
        write.append(f"live_migration_extra_flags = {','.join(kept)} (which applies to every "
                     "migration)")
    advice = "; write instead: " + "; ".join(write) if write else ""
    return Decision(
        option,
        "translated",
        f"{option} is deprecated: {'; '.join(changes) or 'nothing in it is used'}"
        f"{advice}; then remove {option}",
        (option,),
        warning=True,
    )
