"""A stand-in for the ``libvirt`` module, backed by a simulated world.

Everything migrator calls is here with libvirt-python's names and return
shapes: module functions (``open``, ``openReadOnly``, ``getVersion``,
``registerErrorHandler``, the event-loop functions), ``libvirtError``, the
``VIR_*`` constants (from :mod:`migrator.constants`), ``virConnect`` and
``virDomain``.  Calls go to the *current world* (:func:`set_world`; building a
:class:`~migrator.testing.world.World` makes it current, and
:class:`~migrator.testing.fixture.FakeLibvirtFixture` installs a fresh one per
test).

Each handle call runs the world's fault rules first (they may hang or raise),
then takes the world lock.  Events are delivered synchronously, in order,
outside the lock: those caused by a call in the calling thread when the call
returns, those caused by time passing in the thread that moved the clock, at
the end of that clock step (so a callback may see the world up to one wait
interval after the event).  Callbacks may call back into the fake.

``migrateToURI3`` returns 0 like libvirt-python (not None).  A call on a
connection that another thread is blocked on in ``migrateToURI3`` raises
:class:`~migrator.testing.world.SharedConnectionHang`: libvirt 9.0's client
hangs there (real-libvirt README §5).
"""

from __future__ import annotations

import itertools
import threading
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from migrator import constants
from migrator.testing import dirtyrate, rules
from migrator.testing import errors as E
from migrator.testing.errors import libvirtError
from migrator.testing.migration import JobPhase, MigrationJob
from migrator.testing.world import (
    UNLIMITED_MIBPS,
    DomainRecord,
    Event,
    Guest,
    Host,
    SharedConnectionHang,
    Waiter,
    World,
    version_int,
)

# Re-export every libvirt constant migrator knows, so fake.VIR_MIGRATE_LIVE works.
globals().update({k: v for k, v in vars(constants).items() if k.startswith("VIR_")})

# libvirt values migrator.constants does not carry (libvirt-python 9.0 values).
VIR_ERR_WARNING = E.VIR_ERR_WARNING
VIR_ERR_ERROR = E.VIR_ERR_ERROR
VIR_ERR_INVALID_CONN = E.VIR_ERR_INVALID_CONN
VIR_ERR_MIGRATE_UNSAFE = E.VIR_ERR_MIGRATE_UNSAFE
VIR_ERR_OPERATION_DENIED = 29
VIR_DOMAIN_EVENT_DEFINED_ADDED = 0
VIR_DOMAIN_EVENT_DEFINED_UPDATED = 1
VIR_DOMAIN_EVENT_UNDEFINED_REMOVED = 0
VIR_DOMAIN_EVENT_STARTED_BOOTED = 0
VIR_DOMAIN_EVENT_RESUMED_POSTCOPY_FAILED = 4
VIR_DOMAIN_PAUSED_MIGRATION = 2
VIR_CONNECT_CLOSE_REASON_ERROR = 0
VIR_CONNECT_CLOSE_REASON_EOF = 1
VIR_CONNECT_CLOSE_REASON_KEEPALIVE = 2
VIR_CONNECT_CLOSE_REASON_CLIENT = 3
VIR_DOMAIN_CONTROL_OK = 0
VIR_DOMAIN_CONTROL_JOB = 1
VIR_CONNECT_LIST_DOMAINS_ACTIVE = 1
VIR_CONNECT_LIST_DOMAINS_INACTIVE = 2
VIR_CONNECT_LIST_DOMAINS_PERSISTENT = 4
VIR_CONNECT_LIST_DOMAINS_TRANSIENT = 8
VIR_CONNECT_LIST_DOMAINS_RUNNING = 16
VIR_CONNECT_LIST_DOMAINS_PAUSED = 32
VIR_CONNECT_LIST_DOMAINS_SHUTOFF = 64
VIR_CONNECT_LIST_DOMAINS_OTHER = 128
# jobStats() keys (libvirt-python exports them as VIR_DOMAIN_JOB_<KEY>)
VIR_DOMAIN_JOB_TIME_ELAPSED = "time_elapsed"
VIR_DOMAIN_JOB_TIME_ELAPSED_NET = "time_elapsed_net"
VIR_DOMAIN_JOB_DATA_TOTAL = "data_total"
VIR_DOMAIN_JOB_DATA_PROCESSED = "data_processed"
VIR_DOMAIN_JOB_DATA_REMAINING = "data_remaining"
VIR_DOMAIN_JOB_MEMORY_TOTAL = "memory_total"
VIR_DOMAIN_JOB_MEMORY_PROCESSED = "memory_processed"
VIR_DOMAIN_JOB_MEMORY_REMAINING = "memory_remaining"
VIR_DOMAIN_JOB_MEMORY_CONSTANT = "memory_constant"
VIR_DOMAIN_JOB_MEMORY_NORMAL = "memory_normal"
VIR_DOMAIN_JOB_MEMORY_NORMAL_BYTES = "memory_normal_bytes"
VIR_DOMAIN_JOB_MEMORY_BPS = "memory_bps"
VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE = "memory_dirty_rate"
VIR_DOMAIN_JOB_MEMORY_PAGE_SIZE = "memory_page_size"
VIR_DOMAIN_JOB_MEMORY_ITERATION = "memory_iteration"
VIR_DOMAIN_JOB_MEMORY_POSTCOPY_REQS = "memory_postcopy_requests"
VIR_DOMAIN_JOB_DISK_TOTAL = "disk_total"
VIR_DOMAIN_JOB_DISK_PROCESSED = "disk_processed"
VIR_DOMAIN_JOB_DISK_REMAINING = "disk_remaining"
VIR_DOMAIN_JOB_DOWNTIME = "downtime"
VIR_DOMAIN_JOB_DOWNTIME_NET = "downtime_net"
VIR_DOMAIN_JOB_SETUP_TIME = "setup_time"
VIR_DOMAIN_JOB_AUTO_CONVERGE_THROTTLE = "auto_converge_throttle"
VIR_DOMAIN_JOB_OPERATION = "operation"
VIR_DOMAIN_JOB_ERRMSG = "errmsg"

__all__ = [
    "libvirtError",
    "virConnect",
    "virDomain",
    "open",
    "openReadOnly",
    "openAuth",
    "getVersion",
    "registerErrorHandler",
    "virEventRegisterDefaultImpl",
    "virEventRunDefaultImpl",
    "set_world",
    "get_world",
]

_world: World | None = None
_world_lock = threading.Lock()
_event_tick = threading.Event()


def set_world(world: World | None) -> World | None:
    """Make ``world`` the one module-level calls use; returns the previous one."""
    global _world
    with _world_lock:
        previous, _world = _world, world
    return previous


def get_world() -> World:
    world = _world
    if world is None:
        raise RuntimeError(
            "no fake libvirt world: build a migrator.testing.World() or use FakeLibvirtFixture"
        )
    return world


# -- module-level functions -------------------------------------------------------------


def open(name: str | None = None) -> virConnect:  # noqa: A001 - libvirt's name
    """Connect to the host ``name`` names (``qemu+tcp://host/system``, ``qemu:///system``)."""
    return _open(name, readonly=False)


def openReadOnly(name: str | None = None) -> virConnect:  # noqa: N802
    return _open(name, readonly=True)


def openAuth(uri: str | None, auth: Any = None, flags: int = 0) -> virConnect:  # noqa: N802
    return _open(uri, readonly=bool(flags & 1))


def _open(uri: str | None, readonly: bool) -> virConnect:
    world = get_world()
    world.faults.before_call("open", None, None)
    with world._lock:
        host = world.resolve(uri)
    return virConnect(world, host, uri or "qemu:///system", readonly)


def getVersion(name: str | None = None) -> int:  # noqa: N802
    """The client library's version (``World(client_version=...)``)."""
    world = _world
    return version_int(world.client_version if world is not None else (9, 0, 0))


def registerErrorHandler(f: Callable[..., Any] | None, ctx: Any) -> int:  # noqa: N802
    """``f(ctx, err)`` is called with each error's tuple before it is raised (None: none)."""
    E.set_handler(f, ctx)
    return 1


def virEventRegisterDefaultImpl() -> int:  # noqa: N802
    """Mark the event loop as registered (domainEventRegisterAny needs it, as for real)."""
    world = _world
    if world is not None:
        world.event_loop_registered = True
    return 0


def virEventRunDefaultImpl() -> int:  # noqa: N802
    """One turn of the event loop.  Events are delivered synchronously, so this only
    waits a little (real time) to keep a ``while True`` loop from spinning."""
    _event_tick.wait(0.05)
    return 0


# -- the call wrapper ---------------------------------------------------------------------


class _Call:
    """Faults first (no lock held), then the world lock; events after release."""

    __slots__ = ("_conn", "_world")

    def __init__(self, conn: virConnect, method: str, guest: str | None):
        world = conn._world
        blocked = conn._blocked_in_migration
        if blocked and world.strict_connections and threading.get_ident() not in blocked:
            raise SharedConnectionHang(
                f"fake libvirt: {method}() on a connection another thread is blocked on in "
                "migrateToURI3 would hang with libvirt 9.0's client (README §5); open a "
                "second connection for the monitor (World(strict_connections=False) to allow)"
            )
        if world.faults.rules:
            world.faults.before_call(method, conn.host.name, guest)
        self._conn = conn
        self._world = world

    def __enter__(self) -> World:
        self._world._lock.acquire()
        conn = self._conn
        if conn._closed:
            self._world._lock.release()
            raise E.invalid_connection("virConnect").exc()
        if not conn.alive:
            self._world._lock.release()
            raise E.socket_closed().exc()
        return self._world

    def __exit__(self, *exc: object) -> None:
        world = self._world
        world._lock.release()
        if world._events or world._posted:
            world.after_call()


# -- virConnect ----------------------------------------------------------------------------------


class virConnect:  # noqa: N801 - libvirt's name
    """A connection to one host's libvirtd.  Two opens give two independent connections."""

    _callback_ids = itertools.count(0)

    def __init__(self, world: World, host: Host, uri: str, readonly: bool = False):
        self._world = world
        self.host = host
        self._uri = uri
        self._readonly = readonly
        self.alive = True
        self._closed = False
        self._callbacks: dict[int, tuple[str | None, int, Callable[..., Any], Any]] = {}
        self._close_callbacks: list[tuple[Callable[..., Any], Any]] = []
        # threads blocked in migrateToURI3 on this connection
        self._blocked_in_migration: set[int] = set()
        world.add_connection(self)

    def _call(self, method: str, guest: str | None = None) -> _Call:
        return _Call(self, method, guest)

    def _domain(self, rec: DomainRecord) -> virDomain:
        return virDomain(self, rec.uuid, rec.name)

    # connection facts

    def getURI(self) -> str:  # noqa: N802
        with self._call("getURI"):
            return self._uri

    def getHostname(self) -> str:  # noqa: N802
        with self._call("getHostname"):
            return self.host.hostname

    def getLibVersion(self) -> int:  # noqa: N802
        with self._call("getLibVersion"):
            return version_int(self.host.libvirt_version)

    def getVersion(self) -> int:  # noqa: N802
        """QEMU's version as libvirt encodes it (7.2.22 -> 7002022)."""
        with self._call("getVersion"):
            return version_int(self.host.qemu_version)

    def getType(self) -> str:  # noqa: N802
        with self._call("getType"):
            return "QEMU"

    def isAlive(self) -> int:  # noqa: N802
        return int(self.alive and not self._closed)

    def isSecure(self) -> int:  # noqa: N802
        return 1 if self._uri.startswith(("qemu+tls", "qemu+ssh", "qemu:")) else 0

    def setKeepAlive(self, interval: int, count: int) -> int:  # noqa: N802
        with self._call("setKeepAlive"):
            return 0

    def close(self) -> int:
        if not self._closed:
            self._closed = True
            self._world.remove_connection(self)
        return 0

    # domains

    def lookupByName(self, name: str) -> virDomain:  # noqa: N802
        with self._call("lookupByName", name):
            rec = self.host.by_name(name)
            if rec is None:
                raise E.no_domain_name(name).exc()
            return self._domain(rec)

    def lookupByUUIDString(self, uuidstr: str) -> virDomain:  # noqa: N802
        with self._call("lookupByUUIDString"):
            rec = self.host.domains.get(str(uuidstr).lower())
            if rec is None:
                raise E.spec(
                    constants.VIR_ERR_NO_DOMAIN,
                    constants.VIR_FROM_QEMU,
                    f"no domain with matching uuid '{uuidstr}'",
                ).exc()
            return self._domain(rec)

    def lookupByUUID(self, uuid: bytes) -> virDomain:  # noqa: N802
        return self.lookupByUUIDString(str(uuidlib.UUID(bytes=bytes(uuid))))

    def lookupByID(self, id: int) -> virDomain:  # noqa: N802, A002
        with self._call("lookupByID"):
            for rec in self.host.domains.values():
                if rec.active and rec.id == id:
                    return self._domain(rec)
            raise E.spec(
                constants.VIR_ERR_NO_DOMAIN, constants.VIR_FROM_QEMU,
                f"no domain with matching id {id}"
            ).exc()

    def listAllDomains(self, flags: int = 0) -> list[virDomain]:  # noqa: N802
        with self._call("listAllDomains"):
            return [self._domain(r) for r in self.host.domains.values() if _matches(r, flags)]

    def listDomainsID(self) -> list[int]:  # noqa: N802
        with self._call("listDomainsID"):
            return [r.id for r in self.host.domains.values() if r.active]

    def domainListGetStats(  # noqa: N802
        self, doms: list[virDomain], stats: int = 0, flags: int = 0
    ) -> list[tuple[virDomain, dict[str, Any]]]:
        """The state and dirty-rate groups (:mod:`migrator.testing.dirtyrate`)."""
        with self._call("domainListGetStats") as world:
            recs = [(d, d._rec()) for d in doms]
            return [(d, dirtyrate.domain_stats(self.host, r, stats, flags, world.now))
                    for d, r in recs]

    def getAllDomainStats(  # noqa: N802
        self, stats: int = 0, flags: int = 0
    ) -> list[tuple[virDomain, dict[str, Any]]]:
        """Every domain's :meth:`domainListGetStats` entry; the list flags filter them."""
        with self._call("getAllDomainStats"):
            doms = [self._domain(r) for r in self.host.domains.values()
                    if _matches(r, flags & 0xFF)]
        return self.domainListGetStats(doms, stats, flags & ~0xFF)

    def numOfDomains(self) -> int:  # noqa: N802
        with self._call("numOfDomains"):
            return sum(1 for r in self.host.domains.values() if r.active)

    def defineXML(self, xml: str) -> virDomain:  # noqa: N802
        """Define a persistent, shut-off guest from ``<name>``, ``<uuid>``, ``<memory>``."""
        with self._call("defineXML") as world:
            self._writable("virDomainDefineXML")
            rec = _record_from_xml(xml, persistent=True)
            existing = self.host.domains.get(rec.uuid)
            if existing is not None:
                existing.guest = rec.guest
                world.lifecycle(
                    self.host,
                    existing,
                    constants.VIR_DOMAIN_EVENT_DEFINED,
                    VIR_DOMAIN_EVENT_DEFINED_UPDATED,
                )
                existing.persistent = True
                return self._domain(existing)
            if self.host.by_name(rec.name) is not None:
                raise E.spec(
                    constants.VIR_ERR_OPERATION_FAILED,
                    constants.VIR_FROM_DOMAIN,
                    f"domain '{rec.name}' already exists with uuid "
                    f"{self.host.by_name(rec.name).uuid}",  # type: ignore[union-attr]
                ).exc()
            self.host.domains[rec.uuid] = rec
            world.lifecycle(
                self.host, rec, constants.VIR_DOMAIN_EVENT_DEFINED, VIR_DOMAIN_EVENT_DEFINED_ADDED
            )
            return self._domain(rec)

    def createXML(self, xml: str, flags: int = 0) -> virDomain:  # noqa: N802
        """Start a transient guest from XML."""
        with self._call("createXML") as world:
            self._writable("virDomainCreateXML")
            rec = _record_from_xml(xml, persistent=False)
            if self.host.by_name(rec.name) is not None or rec.uuid in self.host.domains:
                raise E.spec(
                    constants.VIR_ERR_OPERATION_FAILED,
                    constants.VIR_FROM_DOMAIN,
                    f"domain '{rec.name}' already exists",
                ).exc()
            rec.state, rec.reason = (constants.VIR_DOMAIN_RUNNING,
                                     constants.VIR_DOMAIN_RUNNING_BOOTED)
            rec.id = self.host.next_id()
            self.host.domains[rec.uuid] = rec
            world.lifecycle(
                self.host, rec, constants.VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_BOOTED
            )
            return self._domain(rec)

    def _writable(self, api: str) -> None:
        if self._readonly:
            raise E.spec(
                VIR_ERR_OPERATION_DENIED,
                constants.VIR_FROM_NONE,
                f"read only access prevents {api}",
            ).exc()

    # events

    def domainEventRegisterAny(  # noqa: N802
        self,
        dom: virDomain | None,
        eventID: int,  # noqa: N803
        cb: Callable[..., Any],
        opaque: Any = None,
    ) -> int:
        """LIFECYCLE, MIGRATION_ITERATION and JOB_COMPLETED are emitted; others never fire."""
        with self._call("domainEventRegisterAny") as world:
            if world.require_event_loop and not world.event_loop_registered:
                raise E.event_loop_missing().exc()
            cid = next(self._callback_ids)
            uuid = dom._uuid if dom is not None else None
            self._callbacks[cid] = (uuid, eventID, cb, opaque)
            world.listen(self, eventID, uuid)
            return cid

    def domainEventDeregisterAny(self, callbackID: int) -> int:  # noqa: N802, N803
        with self._call("domainEventDeregisterAny") as world:
            found = self._callbacks.pop(callbackID, None)
            if found is None:
                raise E.spec(
                    constants.VIR_ERR_INVALID_ARG,
                    constants.VIR_FROM_NONE,
                    f"could not find event callback {callbackID} for deletion",
                ).exc()
            world.unlisten(self, found[1], found[0])
            return 0

    def registerCloseCallback(self, cb: Callable[..., Any], opaque: Any = None) -> int:  # noqa: N802
        self._close_callbacks.append((cb, opaque))
        return 0

    def unregisterCloseCallback(self) -> int:  # noqa: N802
        self._close_callbacks.clear()
        return 0

    def _deliver(self, ev: Event) -> None:
        for dom_uuid, event_id, cb, opaque in list(self._callbacks.values()):
            if event_id != ev.event_id or (dom_uuid is not None and dom_uuid != ev.uuid):
                continue
            cb(self, virDomain(self, ev.uuid, ev.name), *ev.payload, opaque)

    def _closed_by_peer(self) -> None:
        self.alive = False

    def _fire_close_callbacks(self) -> None:
        for cb, opaque in list(self._close_callbacks):
            cb(self, VIR_CONNECT_CLOSE_REASON_EOF, opaque)

    def __repr__(self) -> str:
        return f"<fake virConnect {self._uri} host={self.host.name}>"


def _matches(rec: DomainRecord, flags: int) -> bool:
    if not flags:
        return True
    checks = (
        (
            VIR_CONNECT_LIST_DOMAINS_ACTIVE | VIR_CONNECT_LIST_DOMAINS_INACTIVE,
            {
                VIR_CONNECT_LIST_DOMAINS_ACTIVE: rec.active,
                VIR_CONNECT_LIST_DOMAINS_INACTIVE: not rec.active,
            },
        ),
        (
            VIR_CONNECT_LIST_DOMAINS_PERSISTENT | VIR_CONNECT_LIST_DOMAINS_TRANSIENT,
            {
                VIR_CONNECT_LIST_DOMAINS_PERSISTENT: rec.persistent,
                VIR_CONNECT_LIST_DOMAINS_TRANSIENT: not rec.persistent,
            },
        ),
        (
            VIR_CONNECT_LIST_DOMAINS_RUNNING
            | VIR_CONNECT_LIST_DOMAINS_PAUSED
            | VIR_CONNECT_LIST_DOMAINS_SHUTOFF
            | VIR_CONNECT_LIST_DOMAINS_OTHER,
            {
                VIR_CONNECT_LIST_DOMAINS_RUNNING: rec.state == constants.VIR_DOMAIN_RUNNING,
                VIR_CONNECT_LIST_DOMAINS_PAUSED: rec.state == constants.VIR_DOMAIN_PAUSED,
                VIR_CONNECT_LIST_DOMAINS_SHUTOFF: rec.state == constants.VIR_DOMAIN_SHUTOFF,
                VIR_CONNECT_LIST_DOMAINS_OTHER: rec.state
                not in (constants.VIR_DOMAIN_RUNNING, constants.VIR_DOMAIN_PAUSED,
                        constants.VIR_DOMAIN_SHUTOFF),
            },
        ),
    )
    for group, values in checks:
        if flags & group and not any(ok for bit, ok in values.items() if flags & bit):
            return False
    return True


def _record_from_xml(xml: str, persistent: bool) -> DomainRecord:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise E.spec(
            constants.VIR_ERR_INTERNAL_ERROR, constants.VIR_FROM_DOMAIN,
            f"(domain_definition):{exc}"
        ).exc() from None
    name = (root.findtext("name") or "").strip()
    if not name:
        raise E.spec(
            constants.VIR_ERR_NO_SUPPORT, constants.VIR_FROM_DOMAIN,
            "missing domain name information"
        ).exc()
    uuid = (root.findtext("uuid") or "").strip().lower() or str(
        uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"migrator-guest-{name}")
    )
    mem = root.find("memory")
    units = {
        "b": 1,
        "bytes": 1,
        "k": 1024,
        "kib": 1024,
        "m": 1024**2,
        "mib": 1024**2,
        "g": 1024**3,
        "gib": 1024**3,
    }
    memory = 1024**3
    if mem is not None and mem.text:
        memory = int(mem.text) * units.get(mem.get("unit", "KiB").lower(), 1024)
    vcpus = int(root.findtext("vcpu") or 1)
    return DomainRecord(
        name=name,
        uuid=uuid,
        guest=Guest(memory=memory, working_set=memory, vcpus=vcpus),
        state=constants.VIR_DOMAIN_SHUTOFF,
        reason=constants.VIR_DOMAIN_SHUTOFF_UNKNOWN,
        persistent=persistent,
    )


# -- virDomain -------------------------------------------------------------------------------


class virDomain:  # noqa: N801 - libvirt's name
    """A handle on one domain of one connection; calls look the domain up each time."""

    __slots__ = ("_conn", "_uuid", "_name")

    def __init__(self, conn: virConnect, uuid: str, name: str):
        self._conn = conn
        self._uuid = uuid
        self._name = name

    def _call(self, method: str) -> _Call:
        return _Call(self._conn, method, self._name)

    def _rec(self) -> DomainRecord:
        rec = self._conn.host.domains.get(self._uuid)
        if rec is None:
            raise E.no_domain_uuid(self._uuid, self._name).exc()
        return rec

    def _active(self) -> DomainRecord:
        rec = self._rec()
        if not rec.active:
            raise E.domain_not_running().exc()
        return rec

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, virDomain)
            and other._uuid == self._uuid
            and other._conn.host is self._conn.host
        )

    def __hash__(self) -> int:
        return hash((self._uuid, self._conn.host.name))

    def __repr__(self) -> str:
        return f"<fake virDomain {self._name} on {self._conn.host.name}>"

    # identity and state

    def name(self) -> str:
        return self._name

    def UUIDString(self) -> str:  # noqa: N802
        return self._uuid

    def UUID(self) -> bytes:  # noqa: N802
        return uuidlib.UUID(self._uuid).bytes

    def connect(self) -> virConnect:
        return self._conn

    def ID(self) -> int:  # noqa: N802
        with self._call("ID"):
            return self._rec().id

    def isActive(self) -> int:  # noqa: N802
        with self._call("isActive"):
            return int(self._rec().active)

    def isPersistent(self) -> int:  # noqa: N802
        with self._call("isPersistent"):
            return int(self._rec().persistent)

    def state(self, flags: int = 0) -> list[int]:
        with self._call("state"):
            rec = self._rec()
            return [rec.state, rec.reason]

    def controlInfo(self, flags: int = 0) -> list[int]:  # noqa: N802
        """[state, details, stateTime]: VIR_DOMAIN_CONTROL_JOB while any job is on the
        domain, also in the phases where jobStats still says type NONE."""
        with self._call("controlInfo") as world:
            rec = self._active()
            job = rec.outgoing or rec.incoming
            if job is None:
                return [VIR_DOMAIN_CONTROL_OK, 0, 0]
            return [VIR_DOMAIN_CONTROL_JOB, 0, int((world.now - job.t0) * 1000)]

    def info(self) -> list[int]:
        with self._call("info"):
            rec = self._rec()
            kib = rec.guest.memory // 1024
            return [rec.state, kib, kib if rec.active else 0, rec.guest.vcpus, 0]

    def memoryStats(self) -> dict[str, int]:  # noqa: N802
        """KiB: the balloon's size and QEMU's resident memory (all of it, in the fake)."""
        with self._call("memoryStats"):
            kib = self._active().guest.memory // 1024
            return {"actual": kib, "rss": kib}

    def startDirtyRateCalc(self, seconds: int, flags: int = 0) -> int:  # noqa: N802
        """Measure the guest's dirty rate over ``seconds`` (read it with domainListGetStats)."""
        world = self._conn._world
        if world.client_version < dirtyrate.API_SINCE:  # libvirt-python < 7.2 lacks it
            raise AttributeError("'virDomain' object has no attribute 'startDirtyRateCalc'")
        with self._call("startDirtyRateCalc"):
            dirtyrate.start(self._conn.host, self._rec(), seconds, flags, world.now)
            return 0

    def XMLDesc(self, flags: int = 0) -> str:  # noqa: N802
        with self._call("XMLDesc"):
            return self._rec().xml()

    # life cycle

    def create(self) -> int:
        with self._call("create") as world:
            self._conn._writable("virDomainCreate")
            rec = self._rec()
            if rec.active:
                raise E.spec(
                    constants.VIR_ERR_OPERATION_INVALID, constants.VIR_FROM_QEMU,
                    "domain is already running"
                ).exc()
            rec.state, rec.reason = (constants.VIR_DOMAIN_RUNNING,
                                     constants.VIR_DOMAIN_RUNNING_BOOTED)
            rec.id = self._conn.host.next_id()
            world.lifecycle(
                self._conn.host, rec, constants.VIR_DOMAIN_EVENT_STARTED,
                VIR_DOMAIN_EVENT_STARTED_BOOTED
            )
            return 0

    def suspend(self) -> int:
        """Pause the guest; during a migration it stops dirtying memory (the job goes on)."""
        with self._call("suspend") as world:
            self._conn._writable("virDomainSuspend")
            rec = self._active()
            if rec.state == constants.VIR_DOMAIN_PAUSED:
                return 0
            rec.state, rec.reason = constants.VIR_DOMAIN_PAUSED, constants.VIR_DOMAIN_PAUSED_USER
            world.lifecycle(
                self._conn.host,
                rec,
                constants.VIR_DOMAIN_EVENT_SUSPENDED,
                constants.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED,
            )
            if rec.outgoing is not None:
                rec.outgoing.on_guest_paused(world.now)
            return 0

    def resume(self) -> int:
        with self._call("resume") as world:
            self._conn._writable("virDomainResume")
            rec = self._active()
            if rec.state == constants.VIR_DOMAIN_RUNNING:
                raise E.spec(
                    constants.VIR_ERR_OPERATION_INVALID, constants.VIR_FROM_QEMU,
                    "domain is already running"
                ).exc()
            if rec.incoming is not None or rec.reason != constants.VIR_DOMAIN_PAUSED_USER:
                # Paused by a migration (switch-over, post-copy, failed post-copy):
                # fake-specific refusal, so a test cannot split-brain the guest.
                raise E.spec(
                    constants.VIR_ERR_OPERATION_INVALID,
                    constants.VIR_FROM_QEMU,
                    "domain is paused by a migration and cannot be resumed",
                ).exc()
            rec.state, rec.reason = (constants.VIR_DOMAIN_RUNNING,
                                     constants.VIR_DOMAIN_RUNNING_UNPAUSED)
            world.lifecycle(
                self._conn.host,
                rec,
                constants.VIR_DOMAIN_EVENT_RESUMED,
                constants.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED,
            )
            if rec.outgoing is not None:
                rec.outgoing.on_guest_resumed()
            return 0

    def destroy(self) -> int:
        with self._call("destroy") as world:
            self._conn._writable("virDomainDestroy")
            rec = self._active()
            if rec.outgoing is not None:
                rec.outgoing.on_source_destroyed(world.now)
            if rec.incoming is not None:
                job = rec.incoming
                job.on_dest_destroyed(world.now)
                if rec.uuid not in self._conn.host.domains:  # the job cleaned it up
                    return 0
            rec.state, rec.reason, rec.id = (constants.VIR_DOMAIN_SHUTOFF,
                                             constants.VIR_DOMAIN_SHUTOFF_DESTROYED, -1)
            world.lifecycle(
                self._conn.host,
                rec,
                constants.VIR_DOMAIN_EVENT_STOPPED,
                constants.VIR_DOMAIN_EVENT_STOPPED_DESTROYED,
            )
            if not rec.persistent:
                self._conn.host.domains.pop(rec.uuid, None)
            return 0

    def destroyFlags(self, flags: int = 0) -> int:  # noqa: N802
        return self.destroy()

    def undefine(self) -> int:
        with self._call("undefine") as world:
            self._conn._writable("virDomainUndefine")
            rec = self._rec()
            if not rec.persistent:
                raise E.spec(
                    constants.VIR_ERR_OPERATION_INVALID, constants.VIR_FROM_QEMU,
                    "cannot undefine transient domain"
                ).exc()
            rec.persistent = False
            if not rec.active:
                self._conn.host.domains.pop(rec.uuid, None)
            world.lifecycle(
                self._conn.host,
                rec,
                constants.VIR_DOMAIN_EVENT_UNDEFINED,
                VIR_DOMAIN_EVENT_UNDEFINED_REMOVED,
            )
            return 0

    def undefineFlags(self, flags: int = 0) -> int:  # noqa: N802
        return self.undefine()

    # job statistics

    def jobStats(self, flags: int = 0) -> dict[str, Any]:  # noqa: N802
        """The current job's stats; with VIR_DOMAIN_JOB_STATS_COMPLETED the finished one's.

        Completed stats are consumed by the read unless
        VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED is set (libvirt >= 6.0).
        """
        with self._call("jobStats") as world:
            rec = self._rec()
            if flags & constants.VIR_DOMAIN_JOB_STATS_COMPLETED:
                stats = rec.completed
                if stats is None:
                    return {"type": constants.VIR_DOMAIN_JOB_NONE}
                if not flags & constants.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED:
                    rec.completed = None
                return dict(stats)
            if rec.incoming is not None:
                raise E.stats_only_on_source().exc()
            if not rec.active:
                raise E.domain_not_running().exc()
            if rec.outgoing is None:
                return {"type": constants.VIR_DOMAIN_JOB_NONE}
            return rec.outgoing.stats(world.now)

    def jobInfo(self) -> list[int]:  # noqa: N802
        """The legacy 12-value list (time_remaining is never filled by QEMU)."""
        with self._call("jobInfo") as world:
            rec = self._rec()
            if rec.incoming is not None:
                raise E.stats_only_on_source().exc()
            if not rec.active:
                raise E.domain_not_running().exc()
            if rec.outgoing is None:
                return [0] * 12
            s = rec.outgoing.stats(world.now)
            keys = (
                "time_elapsed",
                None,
                "data_total",
                "data_processed",
                "data_remaining",
                "memory_total",
                "memory_processed",
                "memory_remaining",
                "disk_total",
                "disk_processed",
                "disk_remaining",
            )
            return [s["type"]] + [int(s.get(k, 0)) if k else 0 for k in keys]

    # migration tuning

    def migrateSetMaxDowntime(self, downtime: int, flags: int = 0) -> int:  # noqa: N802
        with self._call("migrateSetMaxDowntime"):
            rec = self._active()
            if downtime > constants.QEMU_MAX_DOWNTIME_MS or downtime < 0:
                raise E.downtime_out_of_range().exc()
            rec.max_downtime_ms = int(downtime)
            if rec.outgoing is not None:
                rec.outgoing.set_max_downtime(int(downtime))
            return 0

    def migrateGetMaxDowntime(self, flags: int = 0) -> int:  # noqa: N802
        with self._call("migrateGetMaxDowntime"):
            return self._active().max_downtime_ms

    def migrateSetMaxSpeed(self, bandwidth: int, flags: int = 0) -> int:  # noqa: N802
        """MiB/s; with VIR_DOMAIN_MIGRATE_MAX_SPEED_POSTCOPY the post-copy limit (0: none)."""
        with self._call("migrateSetMaxSpeed"):
            rec = self._rec()
            if bandwidth > UNLIMITED_MIBPS or bandwidth < 0:
                # unverified wording
                raise E.spec(
                    constants.VIR_ERR_INVALID_ARG,
                    constants.VIR_FROM_QEMU,
                    f"bandwidth must be less than {UNLIMITED_MIBPS + 1}",
                ).exc()
            postcopy = bool(flags & constants.VIR_DOMAIN_MIGRATE_MAX_SPEED_POSTCOPY)
            if postcopy:
                rec.postcopy_speed_mibps = int(bandwidth)
            else:
                rec.max_speed_mibps = int(bandwidth)
            if rec.outgoing is not None:
                rec.outgoing.set_max_speed(int(bandwidth), postcopy)
            return 0

    def migrateGetMaxSpeed(self, flags: int = 0) -> int:  # noqa: N802
        with self._call("migrateGetMaxSpeed"):
            rec = self._rec()
            job = rec.outgoing
            if flags & constants.VIR_DOMAIN_MIGRATE_MAX_SPEED_POSTCOPY:
                return job.postcopy_mibps if job is not None else rec.postcopy_speed_mibps
            return job.bandwidth_mibps if job is not None else rec.max_speed_mibps

    def migrateStartPostCopy(self, flags: int = 0) -> int:  # noqa: N802
        with self._call("migrateStartPostCopy"):
            rec = self._active()
            if rec.outgoing is None:
                raise E.postcopy_no_job().exc()
            rec.outgoing.start_postcopy()
            return 0

    def abortJob(self) -> int:  # noqa: N802
        with self._call("abortJob") as world:
            self._abort(world, 0)
            return 0

    def abortJobFlags(self, flags: int = 0) -> int:  # noqa: N802
        """With VIR_DOMAIN_ABORT_JOB_POSTCOPY a post-copy migration is paused (resumable)."""
        with self._call("abortJobFlags") as world:
            if self._conn.host.libvirt_version < (8, 5, 0):
                raise E.spec(constants.VIR_ERR_NO_SUPPORT, constants.VIR_FROM_NONE,
                             "virDomainAbortJobFlags").exc()
            self._abort(world, flags)
            return 0

    def _abort(self, world: World, flags: int) -> None:
        rec = self._active()
        if rec.incoming is not None:
            raise E.abort_incoming().exc()
        job = rec.outgoing
        if flags & constants.VIR_DOMAIN_ABORT_JOB_POSTCOPY:
            if job is None:
                raise E.no_job().exc()
            job.request_postcopy_pause(world.now)
            return
        if job is None:
            raise E.no_job().exc()
        job.request_abort(world.now)

    # migration

    def migrateToURI3(  # noqa: N802
        self, dconnuri: str, params: dict[str, Any] | None = None, flags: int = 0
    ) -> int:
        """Peer-to-peer migration to ``dconnuri``; blocks until the job ends (0) or raises.

        Refused exactly like libvirt 9.0 refuses it (see migrator.testing.rules).
        While blocked, virtual time must move: another thread waits on the
        clock, or ``World(autorun=True)`` makes this call move it.
        """
        params = dict(params or {})
        with self._call("migrateToURI3") as world:
            waiter = self._start_migration(world, dconnuri, params, flags)
        if waiter is None:
            return 0
        me = threading.get_ident()
        self._conn._blocked_in_migration.add(me)
        try:
            world.wait_for(waiter)
        finally:
            self._conn._blocked_in_migration.discard(me)
        return 0

    def _start_migration(
        self, world: World, dconnuri: str, params: dict[str, Any], flags: int
    ) -> Waiter | None:
        rec = self._rec()
        host = self._conn.host
        spec = rules.check_client(flags, dconnuri) or rules.check_driver(
            flags, params, host.libvirt_version
        )
        if spec is not None:
            raise spec.exc()
        if flags & constants.VIR_MIGRATE_POSTCOPY_RESUME:
            job = rec.outgoing
            spec = rules.check_resume(
                flags,
                rec.name,
                in_postcopy=job is not None
                and job.phase in (JobPhase.POSTCOPY, JobPhase.POSTCOPY_PAUSED),
                failed=job is not None and job.phase is JobPhase.POSTCOPY_PAUSED,
            )
            if spec is not None:
                raise spec.exc()
            assert job is not None
            waiter = Waiter(self._conn)
            job.resume_postcopy(waiter)
            return waiter
        spec = rules.check_p2p(flags, params)
        if spec is not None:
            raise spec.exc()
        dest = world.resolve(dconnuri)
        if not world.link_up(host, dest):
            port = dest.port
            raise E.connection_refused(dest.hostname, port).exc()
        facts = rules.DomainFacts(
            name=rec.name,
            active=rec.active,
            paused=rec.state == constants.VIR_DOMAIN_PAUSED,
            disks=tuple((d.target, d.shared) for d in rec.guest.disks),
        )
        spec = (
            rules.check_tls_force(flags, host.migrate_tls_force)
            or rules.check_begin(flags, params, facts)
            or rules.check_throttle_params(params)
        )
        if spec is not None:
            raise spec.exc()
        if rec.outgoing is not None or rec.incoming is not None:
            raise E.state_lock_timeout().exc()
        if dest is host:
            raise E.spec(
                constants.VIR_ERR_INTERNAL_ERROR,
                constants.VIR_FROM_QEMU,
                f"Attempt to migrate guest to the same host {host.uuid}",
            ).exc()
        dest_name = params.get(constants.VIR_MIGRATE_PARAM_DEST_NAME) or rec.name
        _check_destination(dest, rec, dest_name)
        if flags & constants.VIR_MIGRATE_OFFLINE:
            _offline_migrate(world, host, rec, dest, dest_name, flags)
            return None
        waiter = Waiter(self._conn)
        job = MigrationJob(world, host, rec, dest, flags, params, waiter)
        rec.outgoing = job
        rec.completed = None
        world.jobs.append(job)
        return waiter


def _check_destination(dest: Host, rec: DomainRecord, dest_name: str) -> None:
    """The destination refuses a guest it already runs, or a name taken by another guest."""
    same = dest.domains.get(rec.uuid)
    if same is not None and same.active:
        # unverified wording
        raise E.spec(
            constants.VIR_ERR_OPERATION_INVALID,
            constants.VIR_FROM_DOMAIN,
            f"domain '{same.name}' is already active",
        ).exc()
    other = dest.by_name(dest_name)
    if other is not None and other.uuid != rec.uuid:
        # unverified wording
        raise E.spec(
            constants.VIR_ERR_OPERATION_FAILED,
            constants.VIR_FROM_DOMAIN,
            f"domain '{dest_name}' already exists with uuid {other.uuid}",
        ).exc()


def _offline_migrate(
    world: World, src: Host, rec: DomainRecord, dest: Host, dest_name: str, flags: int
) -> None:
    """VIR_MIGRATE_OFFLINE copies the persistent definition only."""
    existing = dest.domains.get(rec.uuid)
    if existing is None:
        existing = DomainRecord(
            name=dest_name,
            uuid=rec.uuid,
            guest=rec.guest,
            state=constants.VIR_DOMAIN_SHUTOFF,
            reason=constants.VIR_DOMAIN_SHUTOFF_UNKNOWN,
            persistent=True,
        )
        dest.domains[rec.uuid] = existing
    existing.persistent = True
    world.lifecycle(dest, existing, constants.VIR_DOMAIN_EVENT_DEFINED,
                    VIR_DOMAIN_EVENT_DEFINED_ADDED)
    if flags & constants.VIR_MIGRATE_UNDEFINE_SOURCE and rec.persistent:
        rec.persistent = False
        if not rec.active:
            src.domains.pop(rec.uuid, None)
        world.lifecycle(src, rec, constants.VIR_DOMAIN_EVENT_UNDEFINED,
                        VIR_DOMAIN_EVENT_UNDEFINED_REMOVED)
