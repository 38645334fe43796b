"""The plain data of the simulated data centre: hosts, guests, domains, events.

Shared by :mod:`migrator.testing.world` (which owns and steps them) and the
fake libvirt handles (which read and change them under the world's lock), so
that neither has to import the other.
"""

from __future__ import annotations

import enum
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from migrator import constants
from migrator.testing.errors import ErrorSpec
from migrator.testing.physics import DirtyRate
from migrator.units import KiB

if TYPE_CHECKING:
    from migrator.testing.dirtyrate import DirtyRateCalc
    from migrator.testing.migration import MigrationJob


Version = tuple[int, int, int]

# migrateGetMaxSpeed's answer when no limit was set (libvirt's
# QEMU_DOMAIN_MIG_BANDWIDTH_MAX, in MiB/s).
UNLIMITED_MIBPS = 8796093022207
DEFAULT_PORTS = {"tcp": 16509, "tls": 16514, "ssh": 22, "libssh": 22, "libssh2": 22}


def version_int(v: Version) -> int:
    """(9, 0, 0) -> 9000000, libvirt's integer encoding."""
    return v[0] * 1_000_000 + v[1] * 1_000 + v[2]


@dataclass(frozen=True)
class Disk:
    """A guest block device: ``shared`` storage need not be copied."""

    target: str
    size: int
    shared: bool = False


@dataclass
class Guest:
    """The workload; it travels with the domain from host to host."""

    memory: int
    working_set: int
    dirty_rate: DirtyRate = 0.0
    vcpus: int = 1
    disks: tuple[Disk, ...] = ()


@dataclass
class DomainRecord:
    """One domain as one host's libvirtd knows it."""

    name: str
    uuid: str
    guest: Guest
    state: int
    reason: int
    persistent: bool
    id: int = -1
    max_downtime_ms: int = constants.QEMU_DEFAULT_DOWNTIME_MS
    max_speed_mibps: int = UNLIMITED_MIBPS
    postcopy_speed_mibps: int = 0
    outgoing: MigrationJob | None = None
    incoming: MigrationJob | None = None
    completed: dict[str, Any] | None = None
    dirty_calc: DirtyRateCalc | None = None  # the last startDirtyRateCalc

    @property
    def active(self) -> bool:
        return self.state not in (constants.VIR_DOMAIN_SHUTOFF, constants.VIR_DOMAIN_NOSTATE)

    def xml(self) -> str:
        kib = self.guest.memory // KiB
        disks = "".join(f"<disk type='file' device='disk'><target dev='{d.target}' "
                        "bus='virtio'/></disk>" for d in self.guest.disks)
        return (
            f"<domain type='kvm'><name>{self.name}</name><uuid>{self.uuid}</uuid>"
            f"<memory unit='KiB'>{kib}</memory><currentMemory unit='KiB'>{kib}</currentMemory>"
            f"<vcpu>{self.guest.vcpus}</vcpu><devices>{disks}</devices></domain>"
        )


@dataclass
class Host:
    """One hypervisor host and its libvirtd."""

    name: str
    hostname: str
    address: str | None
    aliases: frozenset[str]
    libvirt_version: Version
    qemu_version: Version
    link_rate: float  # bytes/s
    port: int = 16509
    tls_port: int = 16514
    uuid: str = ""
    reachable: bool = True
    tls_certificates: bool = True  # /etc/pki/qemu holds a CA and host certificates
    migrate_tls_force: bool = False  # qemu.conf migrate_tls_force = 1
    domains: dict[str, DomainRecord] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    def names(self) -> set[str]:
        out = {self.name.lower(), self.hostname.lower()} | {a.lower() for a in self.aliases}
        if self.address:
            out.add(self.address.lower())
        return out

    def by_name(self, name: str) -> DomainRecord | None:
        for rec in self.domains.values():
            if rec.name == name:
                return rec
        return None

    def next_id(self) -> int:
        return next(self._ids)


@dataclass(frozen=True)
class Timings:
    """Virtual seconds of the fixed parts of a migration (real: ~1.8 s overhead)."""

    prepare: float = 1.0  # Begin/Prepare, destination QEMU start: jobStats says {type: 0}
    setup: float = 0.1  # QEMU 'setup': type 2, every counter 0
    finish: float = 0.5  # Finish/Confirm after the switch-over: "domain is not running"
    abort: float = 1.0  # type 5 (CANCELLED) shows this long before migrateToURI3 raises
    switchover_overhead: float = 0.0  # added to every downtime (device state, resume)
    dirty_sample: float = 0.5  # hold time of a sampled dirty-rate callable


class Connection(Protocol):
    """What the world needs from a connection object (fakelibvirt.virConnect)."""

    host: Host
    alive: bool

    def _deliver(self, event: Event) -> None: ...

    def _closed_by_peer(self) -> None: ...


@dataclass(frozen=True)
class Event:
    host: str
    uuid: str
    name: str
    event_id: int
    payload: tuple


class SimulationStalled(RuntimeError):
    """A blocked call waited in real time while virtual time stood still."""


class SharedConnectionHang(RuntimeError):
    """A call on a connection another thread is blocked on in ``migrateToURI3``.

    libvirt 9.0's client loses a wake-up there and the call hangs forever
    (real-libvirt README §5); the fake raises instead of hanging.
    """


class Waiter:
    """One blocked ``migrateToURI3`` call waiting for its job's outcome."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.thread = threading.get_ident()
        self.done = False
        self.error: ErrorSpec | None = None
        # Its own events (not the world's condition), so that an outcome wakes
        # this caller only, and 1,000 blocked calls do not all wake every step.
        self.ready = threading.Event()  # done: the caller may return
        self.woke = threading.Event()  # the caller saw it and is returning


class JobPhase(enum.Enum):
    """Where a migration job is (the table in :mod:`migrator.testing.migration`)."""

    PREPARE = "prepare"
    SETUP = "setup"
    TRANSFER = "transfer"
    SWITCHOVER = "switchover"
    POSTCOPY = "postcopy"
    POSTCOPY_PAUSED = "postcopy-paused"
    FINISH = "finish"
    CANCELLING = "cancelling"
    DONE = "done"
