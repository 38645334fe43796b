"""The simulated data centre behind the fake libvirt: hosts, guests, time, events.

A :class:`World` owns a :class:`~migrator.testing.clock.VirtualClock` and
every host and domain.  The libvirt-shaped objects in
:mod:`migrator.testing.fakelibvirt` are thin handles onto it; they take the
world's lock for each call, so any number of threads may use them.

Build a scenario::

    world = World()                          # its own VirtualClock; now the current world
    world.add_host("src", link_gbps=10)
    world.add_host("dst", address="127.0.0.3")
    world.add_guest("src", "vm1", memory=8 * GiB, working_set=2 * GiB,
                    dirty_rate=400 * MiB)    # bytes/s, or callable(t), or Piecewise
    conn = fakelibvirt.open("qemu+tcp://src/system")

Time moves only through the clock (``clock.wait`` / ``advance``); the world is
registered as a clock listener and steps every running migration
analytically.  With ``autorun=True`` a blocked ``migrateToURI3`` advances the
clock itself (for tests that call it directly with nobody else moving time).
"""

from __future__ import annotations

import threading
import time
import uuid as uuidlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from migrator import constants
from migrator.testing import current
from migrator.testing import errors as E
from migrator.testing.clock import VirtualClock, cooperate
from migrator.testing.errors import ErrorSpec
from migrator.testing.faults import Faults
from migrator.testing.model import (
    DEFAULT_PORTS,
    UNLIMITED_MIBPS,
    Connection,
    Disk,
    DomainRecord,
    Event,
    Guest,
    Host,
    SharedConnectionHang,
    SimulationStalled,
    Timings,
    Version,
    Waiter,
    version_int,
)
from migrator.testing.physics import DirtyRate
from migrator.units import GiB, KiB, MiB

if TYPE_CHECKING:
    from migrator.testing.migration import MigrationJob

# The data types live in migrator.testing.model; they are importable from here too.
__all__ = [
    "DEFAULT_PORTS",
    "UNLIMITED_MIBPS",
    "Connection",
    "Disk",
    "DomainRecord",
    "Event",
    "GiB",
    "Guest",
    "Host",
    "KiB",
    "MiB",
    "SharedConnectionHang",
    "SimulationStalled",
    "Timings",
    "Version",
    "Waiter",
    "World",
    "version_int",
]


class World:
    """Hosts, guests, the clock and the migrations in flight; see the module docstring."""

    def __init__(
        self,
        clock: VirtualClock | None = None,
        *,
        autorun: bool = False,
        autorun_step: float = 0.5,
        timings: Timings | None = None,
        client_version: Version = (9, 0, 0),
        require_event_loop: bool = True,
        strict_connections: bool = True,
        stall_timeout: float = 30.0,
        make_current: bool = True,
    ):
        self.clock = clock or VirtualClock()
        self.autorun = autorun
        self.autorun_step = autorun_step
        self.timings = timings or Timings()
        self.client_version = client_version
        self.require_event_loop = require_event_loop
        self.strict_connections = strict_connections
        self.event_loop_registered = False
        self.stall_timeout = stall_timeout
        self.hosts: dict[str, Host] = {}
        self.local_host: Host | None = None
        self.faults = Faults(self)
        self.jobs: list[MigrationJob] = []
        self.links_down: set[frozenset[str]] = set()
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._dispatch_lock = threading.RLock()
        self._events: deque[Event] = deque()
        self._connections: dict[Connection, None] = {}  # an ordered set
        # (host, event id, domain uuid or None for all) -> {connection: callbacks}: an
        # event goes only to the connections that asked for it, not to every connection.
        self._listeners: dict[tuple[str, int, str | None], dict[Connection, int]] = {}
        self._posted: list[Waiter] = []
        self._t = self.clock.now()
        self.clock.add_listener(self.step_to)
        if make_current:
            current.set_world(self)

    # -- building scenarios ----------------------------------------------------

    def add_host(
        self,
        name: str,
        *,
        libvirt_version: Version = (9, 0, 0),
        qemu_version: Version = (7, 2, 0),
        link_gbps: float = 10.0,
        hostname: str | None = None,
        address: str | None = None,
        aliases: Iterable[str] = (),
        port: int = 16509,
        tls_port: int = 16514,
        local: bool = False,
        tls_certificates: bool = True,
        migrate_tls_force: bool = False,
    ) -> Host:
        """Add a host; the first one (or ``local=True``) answers ``qemu:///system``.

        ``tls_certificates=False``: VIR_MIGRATE_TLS fails at run time as on a
        host without /etc/pki/qemu; ``migrate_tls_force=True``: the host's
        qemu.conf demands VIR_MIGRATE_TLS (unless tunnelled).
        """
        if name in self.hosts:
            raise ValueError(f"host {name!r} already exists")
        host = Host(
            name=name,
            hostname=hostname or name,
            address=address,
            aliases=frozenset(aliases),
            libvirt_version=tuple(libvirt_version),  # type: ignore[arg-type]
            qemu_version=tuple(qemu_version),  # type: ignore[arg-type]
            link_rate=link_gbps * 1e9 / 8,
            port=port,
            tls_port=tls_port,
            tls_certificates=tls_certificates,
            migrate_tls_force=migrate_tls_force,
            uuid=str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, "migrator-host-" + name)),
        )
        with self._lock:
            self.hosts[name] = host
            if local or self.local_host is None:
                self.local_host = host
        return host

    def add_guest(
        self,
        host: str,
        name: str,
        *,
        memory: int,
        working_set: int | None = None,
        dirty_rate: DirtyRate = 0.0,
        vcpus: int = 1,
        disks: Mapping[str, int] | Iterable[Disk] = (),
        state: str = "running",
        persistent: bool = True,
        uuid: str | None = None,
    ) -> DomainRecord:
        """Define (and by default start) a guest on ``host``.

        ``working_set`` defaults to all of memory; ``dirty_rate`` is bytes/s, a
        callable of virtual time, or a :class:`~migrator.testing.hypervisor.Piecewise`;
        ``disks`` maps a target ("vda") to its size, or is a list of :class:`Disk`;
        ``state`` is "running", "paused" or "shutoff".
        """
        h = self.host(host)
        if isinstance(disks, Mapping):
            disk_list = tuple(Disk(t, int(s)) for t, s in disks.items())
        else:
            disk_list = tuple(disks)
        guest = Guest(
            memory=int(memory),
            working_set=int(memory if working_set is None else working_set),
            dirty_rate=dirty_rate,
            vcpus=vcpus,
            disks=disk_list,
        )
        states = {
            "running": (constants.VIR_DOMAIN_RUNNING, constants.VIR_DOMAIN_RUNNING_BOOTED),
            "paused": (constants.VIR_DOMAIN_PAUSED, constants.VIR_DOMAIN_PAUSED_USER),
            "shutoff": (constants.VIR_DOMAIN_SHUTOFF, constants.VIR_DOMAIN_SHUTOFF_UNKNOWN),
        }
        if state not in states:
            raise ValueError(f"state must be one of {sorted(states)}")
        if state == "shutoff" and not persistent:
            raise ValueError("a transient domain cannot be shut off")
        st, reason = states[state]
        rec = DomainRecord(
            name=name,
            uuid=uuid or str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"migrator-guest-{name}")),
            guest=guest,
            state=st,
            reason=reason,
            persistent=persistent,
        )
        with self._lock:
            if h.by_name(name) is not None or rec.uuid in h.domains:
                raise ValueError(f"domain {name!r} already exists on {host!r}")
            if rec.active:
                rec.id = h.next_id()
            h.domains[rec.uuid] = rec
        return rec

    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise KeyError(f"no host {name!r} in this world") from None

    def domain(self, host: str, name: str) -> DomainRecord | None:
        """The record of ``name`` on ``host`` (None if it is not there), for assertions."""
        with self._lock:
            return self.host(host).by_name(name)

    def at(self, when: float, fn: Callable[[], object]) -> None:
        """Run ``fn()`` once virtual time reaches ``when`` (scripted scenarios)."""
        self.clock.call_at(when, fn)

    def after(self, delay: float, fn: Callable[[], object]) -> None:
        self.clock.call_later(delay, fn)

    def set_link(self, a: str, b: str, up: bool) -> None:
        """Cut (``up=False``) or restore the network between two hosts."""
        pair = frozenset((a, b))
        with self._lock:
            if up:
                self.links_down.discard(pair)
            else:
                self.links_down.add(pair)

    def link_up(self, a: Host, b: Host) -> bool:
        return frozenset((a.name, b.name)) not in self.links_down

    # -- time -----------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self._t

    def step_to(self, t: float) -> float:
        """Clock listener: run every migration up to virtual time ``t``.

        Returns an earlier time when a migration ended before ``t`` and woke its
        caller: the clock stops there.  (Other jobs of the same world may then
        be slightly ahead of it until the next step; each keeps its own time.)"""
        with self._lock:
            if t > self._t:
                reached = t
                for job in list(self.jobs):
                    reached = min(reached, max(job.advance(t), self._t))
                t = reached
                self._t = t
            posted, self._posted = self._posted, []
            self._cond.notify_all()
        self.dispatch()
        self._settle(posted)
        return t

    def after_call(self) -> None:
        """After an API call released the lock: deliver its events, settle woken callers."""
        with self._lock:
            posted, self._posted = self._posted, []
        self.dispatch()
        if posted:
            self._settle(posted)

    def flush(self, job: MigrationJob) -> None:
        """Apply a change a setter made to ``job`` at the current time (it may switch over).

        Only that job: the others are already at (or past) the current time, and
        advancing every job on every setter call cost O(N) per call, O(N^2) for N
        migrations that each tune their own job."""
        job.advance(self._t)

    def _settle(self, posted: list[Waiter]) -> None:
        """Wake the callers given an outcome, one after the other, before time moves on.

        Without it, the monitor's next ``clock.wait`` could race ahead of the
        worker thread that is just returning from a finished migration.  One at a
        time: 1,000 migrations ending at the same step made 1,000 native threads
        runnable at once, and each polls for the GIL while it waits for it.
        """
        me = threading.get_ident()
        # As long as a stall is tolerated: on a loaded machine a woken thread may
        # take seconds to run, and a shorter bound made outcomes depend on load.
        deadline = time.monotonic() + self.stall_timeout
        for waiter in posted:
            waiter.ready.set()
            if waiter.thread == me:
                continue
            waiter.woke.wait(max(deadline - time.monotonic(), 0.0))
        if any(w.thread != me for w in posted):
            time.sleep(0.001)  # let the caller's code after the call run

    # -- events ---------------------------------------------------------------------

    def emit(self, host: Host, rec: DomainRecord, event_id: int, *payload: Any) -> None:
        """Queue an event; it is delivered once the world lock is released."""
        self._events.append(Event(host.name, rec.uuid, rec.name, event_id, payload))

    def lifecycle(self, host: Host, rec: DomainRecord, event: int, detail: int) -> None:
        self.emit(host, rec, constants.VIR_DOMAIN_EVENT_ID_LIFECYCLE, event, detail)

    def transition(self, host: Host, rec: DomainRecord, state: int, reason: int,
                   event: int, detail: int) -> None:
        """``rec`` takes ``state`` and ``reason``; its lifecycle event goes out."""
        rec.state, rec.reason = state, reason
        self.lifecycle(host, rec, event, detail)

    def dispatch(self) -> None:
        """Deliver queued events, in order, to the connections that registered for them."""
        if not self._events:
            return
        with self._dispatch_lock:
            while True:
                with self._lock:
                    if not self._events:
                        return
                    ev = self._events.popleft()
                    mine = self._listeners.get((ev.host, ev.event_id, ev.uuid), {})
                    every = self._listeners.get((ev.host, ev.event_id, None), {})
                    conns = [c for c in {**mine, **every} if c.alive]
                for conn in conns:
                    conn._deliver(ev)

    def listen(self, conn: Connection, event_id: int, uuid: str | None) -> None:
        """``conn`` registered a callback for ``event_id`` of one domain (or all: None)."""
        with self._lock:
            group = self._listeners.setdefault((conn.host.name, event_id, uuid), {})
            group[conn] = group.get(conn, 0) + 1

    def unlisten(self, conn: Connection, event_id: int, uuid: str | None) -> None:
        """One such callback of ``conn`` is gone."""
        with self._lock:
            key = (conn.host.name, event_id, uuid)
            group = self._listeners.get(key, {})
            if group.get(conn, 0) > 1:
                group[conn] -= 1
                return
            group.pop(conn, None)
            if not group:
                self._listeners.pop(key, None)

    # -- connections -------------------------------------------------------------

    def resolve(self, uri: str | None) -> Host:
        """The host a client URI names, or raise libvirt's connection error."""
        if not uri:
            if self.local_host is None:
                raise E.connection_refused("localhost", 16509).exc()
            return self.local_host
        parts = urlsplit(uri)
        server = parts.hostname
        if not server:
            if self.local_host is None:
                raise E.connection_refused("localhost", 16509).exc()
            return self.local_host
        transport = parts.scheme.partition("+")[2] or "tls"
        host = self._find_host(server)
        expected = None
        if host is not None:
            expected = {"tcp": host.port, "tls": host.tls_port}.get(transport)
        port = parts.port or (expected if expected else DEFAULT_PORTS.get(transport, 16509))
        if host is None or not host.reachable or (expected is not None and port != expected):
            raise E.connection_refused(server, port).exc()
        return host

    def _find_host(self, server: str) -> Host | None:
        key = server.lower().strip("[]")
        for host in self.hosts.values():
            if key in host.names():
                return host
        return None

    def add_connection(self, conn: Connection) -> None:
        with self._lock:
            self._connections[conn] = None

    def remove_connection(self, conn: Connection) -> None:
        with self._lock:
            self._connections.pop(conn, None)
            for key in [k for k, group in self._listeners.items() if conn in group]:
                del self._listeners[key][conn]
                if not self._listeners[key]:
                    del self._listeners[key]
            self._cond.notify_all()

    def connections(self, host: str | None = None) -> list[Connection]:
        with self._lock:
            return [c for c in self._connections if host is None or c.host.name == host]

    def drop(self, conn: Connection) -> None:
        """The client socket of ``conn`` closes: calls fail, blocked callers wake."""
        with self._lock:
            conn._closed_by_peer()
            for job in self.jobs:
                mine = [w for w in job.waiters if w.conn is conn]
                for waiter in mine:
                    job.waiters.remove(waiter)
                self.post(mine, E.socket_closed())
        self.after_call()

    def shutdown(self) -> None:
        """End every job and wake every blocked caller (test clean-up).

        Blocked ``migrateToURI3`` calls raise "client socket is closed"; no
        thread is left waiting on a world nobody will advance again.  Each job
        ends as libvirt would end it (:meth:`MigrationJob.end_now`), so a
        monitor still following it (the test failed before it settled) sees the
        job over and settles instead of following it forever.
        """
        with self._lock:
            for job in list(self.jobs):
                waiters, job.waiters = job.waiters, []
                job.end_now(self.clock.now())
                self.post(waiters, E.socket_closed())
                for waiter in waiters:  # all at once: nobody settles them after a shutdown
                    waiter.ready.set()
            self.jobs.clear()
            self._cond.notify_all()

    # -- blocking callers ---------------------------------------------------------------

    def post(self, waiters: Iterable[Waiter], error: ErrorSpec | None) -> None:
        """Give blocked callers their outcome (None: success); :meth:`_settle` wakes them."""
        for waiter in waiters:
            if waiter.done:
                continue
            waiter.done = True
            waiter.error = error
            self._posted.append(waiter)
        self._cond.notify_all()

    def wait_for(self, waiter: Waiter) -> None:
        """Block the calling thread until ``waiter`` has an outcome; raise its error.

        Called without the world lock held.  In autorun mode the caller moves
        the clock itself; otherwise another thread must (the monitor).
        """
        last_t, last_real = self.clock.now(), time.monotonic()
        while not waiter.done:
            if self.autorun or self.clock.is_advancing_thread():
                cooperate()
                self.clock.advance(self.autorun_step)
                continue
            if waiter.ready.wait(5.0):  # its own event: set with the outcome
                break
            now = self.clock.now()
            if now != last_t:
                last_t, last_real = now, time.monotonic()
            elif time.monotonic() - last_real > self.stall_timeout:
                raise SimulationStalled(
                    "fake libvirt: a blocked call waited "
                    f"{self.stall_timeout:.0f} s (real) but virtual time did not "
                    "move; use World(autorun=True) or advance the clock from "
                    "another thread"
                )
        waiter.woke.set()
        self.dispatch()
        if waiter.error is not None:
            raise waiter.error.exc()
