"""Injected failures: API calls that fail or hang, broken links, dying migrations.

Every fake API call asks :meth:`Faults.before_call` first, by libvirt method
name ("jobStats", "migrateToURI3", "abortJob", "lookupByName", "open", ...).
Rules can be narrowed to a host and/or a guest name and fire once, N times or
always.  The migration-level faults (a destination that dies, a post-copy
link that breaks) are read by :mod:`migrator.testing.migration` when a job
starts.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from migrator import constants
from migrator.testing import errors as E
from migrator.testing import fakeconnect
from migrator.testing.errors import ErrorSpec, libvirtError
from migrator.testing.model import SimulationStalled

if TYPE_CHECKING:
    from migrator.testing.world import World


def _as_spec(
    error: libvirtError | ErrorSpec | None,
    code: int | None,
    domain: int | None,
    message: str | None,
) -> ErrorSpec | None:
    if isinstance(error, ErrorSpec):
        return error
    if isinstance(error, libvirtError):
        if error.err is None:
            return ErrorSpec(constants.VIR_ERR_INTERNAL_ERROR, constants.VIR_FROM_NONE, str(error))
        return ErrorSpec(error.get_error_code(), error.get_error_domain(), str(error))
    if code is not None:
        return ErrorSpec(code, constants.VIR_FROM_QEMU if domain is None else domain, message or "")
    return None


@dataclass
class CallRule:
    """One injected behaviour of an API method."""

    method: str
    error: ErrorSpec | None
    times: int | None  # None: every call
    host: str | None = None
    guest: str | None = None
    hang: float = 0.0
    real: bool = False  # hang in real seconds instead of virtual ones
    hits: int = 0

    def matches(self, method: str, host: str | None, guest: str | None) -> bool:
        return (
            self.method == method
            and (self.host is None or self.host == host)
            and (self.guest is None or self.guest == guest)
            and (self.times is None or self.hits < self.times)
        )


@dataclass
class MigrationFault:
    """A migration job that fails at ``after`` seconds past migrateToURI3 (or at ``at``)."""

    error: ErrorSpec
    after: float | None = None
    at: float | None = None
    guest: str | None = None
    used: bool = False


@dataclass
class PostcopyLinkFault:
    """The link breaks ``after`` seconds into post-copy; optionally heals later."""

    after: float
    restore_after: float | None = None
    guest: str | None = None
    used: bool = False


class Faults:
    """Register failures on a :class:`~migrator.testing.world.World` (``world.faults``)."""

    def __init__(self, world: World):
        self._world = world
        self._lock = threading.Lock()
        self.rules: list[CallRule] = []
        self.migration_faults: list[MigrationFault] = []
        self.postcopy_faults: list[PostcopyLinkFault] = []

    def fail(
        self,
        method: str,
        error: libvirtError | ErrorSpec | None = None,
        *,
        code: int | None = None,
        domain: int | None = None,
        message: str | None = None,
        times: int | None = 1,
        host: str | None = None,
        guest: str | None = None,
    ) -> CallRule:
        """Make ``method`` raise ``error`` (or code/domain/message) ``times`` times.

        ``times=None`` fails every call.
        """
        spec = _as_spec(error, code, domain, message)
        if spec is None:
            raise ValueError("fail() needs an error or a code")
        rule = CallRule(method, spec, times, host, guest)
        with self._lock:
            self.rules.append(rule)
        return rule

    def hang(
        self,
        method: str,
        seconds: float,
        *,
        real: bool = False,
        error: libvirtError | ErrorSpec | None = None,
        times: int | None = 1,
        host: str | None = None,
        guest: str | None = None,
    ) -> CallRule:
        """Make ``method`` block for ``seconds`` (virtual unless ``real``), then raise or run.

        A virtual hang ends when the clock has moved ``seconds`` on: another
        thread (the monitor's ``clock.wait``) moves it, or, when the hanging
        call itself runs inside an advance or in autorun mode, the call does.
        """
        rule = CallRule(method, _as_spec(error, None, None, None), times, host, guest)
        rule.hang = float(seconds)
        rule.real = real
        with self._lock:
            self.rules.append(rule)
        return rule

    def no_ram_info(
        self, times: int | None = 1, host: str | None = None, guest: str | None = None
    ) -> CallRule:
        """jobStats raising the post-completion race of Nova bug 1982284."""
        return self.fail(
            "jobStats",
            E.spec(constants.VIR_ERR_INTERNAL_ERROR, constants.VIR_FROM_QEMU,
                   constants.NO_RAM_INFO_MESSAGE),
            times=times,
            host=host,
            guest=guest,
        )

    def fail_migration(
        self,
        after: float | None = None,
        *,
        at: float | None = None,
        error: libvirtError | ErrorSpec | None = None,
        guest: str | None = None,
    ) -> MigrationFault:
        """The next migration (of ``guest``) fails mid-way: job FAILED, guest stays on the source.

        The default error is what a cut network gave on real libvirt 9.0
        (README §3): ``internal error: client socket is closed`` (1/7).
        """
        if (after is None) == (at is None):
            raise ValueError("give exactly one of after= (seconds into the job) or at=")
        spec = _as_spec(error, None, None, None) or E.socket_closed()
        fault = MigrationFault(spec, after, at, guest)
        with self._lock:
            self.migration_faults.append(fault)
        return fault

    def postcopy_link_failure(
        self,
        after: float = 0.0,
        *,
        restore_after: float | None = None,
        guest: str | None = None,
    ) -> PostcopyLinkFault:
        """Break the link ``after`` seconds into post-copy of the next migration.

        The source pauses (POSTCOPY_FAILED), migrateToURI3 raises, and a later
        migrateToURI3 with POSTCOPY|POSTCOPY_RESUME resumes the transfer once
        the link is back (``restore_after`` seconds later, or
        ``world.set_link(a, b, True)``).
        """
        fault = PostcopyLinkFault(after, restore_after, guest)
        with self._lock:
            self.postcopy_faults.append(fault)
        return fault

    def drop_connection(self, conn: Any) -> None:
        """The client socket closes: every call raises 1/7, isAlive() is 0.

        A migrateToURI3 blocked on it raises at once; the job itself goes on
        (a client disconnect does not cancel a P2P migration, README §6.10).
        """
        self._world.drop(conn)
        conn._fire_close_callbacks()

    def drop_connections(self, host: str | None = None) -> None:
        for conn in self._world.connections(host):
            self.drop_connection(conn)

    def unreachable(self, host: str, unreachable: bool = True) -> None:
        """Nothing answers on ``host`` (open and migrations to it: connection refused)."""
        self._world.host(host).reachable = not unreachable

    def cut_client(self, host: str, seconds: float | None = None) -> None:
        """This process loses ``host``'s daemon; the daemons still reach each other.

        Every client connection to ``host`` drops and new ones are refused, for
        ``seconds`` of virtual time (None: for good).  A peer-to-peer job goes on
        inside the source daemon without its client (README §6.10).
        """
        self.unreachable(host)
        self.drop_connections(host)
        if seconds is not None:
            self._world.after(seconds, lambda: self.unreachable(host, False))

    def foreign_migration(self, host: str, guest: str, dest: str, flags: int | None = None,
                          params: dict[str, Any] | None = None) -> None:
        """Somebody else (``virsh migrate``, another service) migrates ``guest`` now.

        The job runs in ``host``'s daemon like any peer-to-peer job, with no
        client of this process waiting for it.
        """
        if flags is None:
            flags = (constants.VIR_MIGRATE_LIVE | constants.VIR_MIGRATE_PEER2PEER
                     | constants.VIR_MIGRATE_PERSIST_DEST
                     | constants.VIR_MIGRATE_UNDEFINE_SOURCE)
        conn = fakeconnect.virConnect(self._world, self._world.host(host), f"qemu:///{host}")
        dom = conn.lookupByName(guest)
        with dom._call("migrateToURI3") as world:
            waiter = dom._start_migration(world, f"qemu+tcp://{dest}/system", params or {},
                                          flags)
            if waiter is not None:  # nobody waits on it: the other client went away
                for job in world.jobs:
                    if waiter in job.waiters:
                        job.waiters.remove(waiter)
        conn.close()

    def leave_migrated_definition(self, host: str, guest: str) -> None:
        """``guest``'s definition on ``host`` is shut off by an earlier migration."""
        with self._world._lock:
            rec = self._world.host(host).by_name(guest)
            if rec is None:
                raise KeyError(f"no domain {guest!r} on {host!r}")
            rec.state, rec.reason, rec.id = (constants.VIR_DOMAIN_SHUTOFF,
                                             constants.VIR_DOMAIN_SHUTOFF_MIGRATED, -1)
            rec.persistent = True

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.migration_faults.clear()
            self.postcopy_faults.clear()

    # -- used by the fake -----------------------------------------------------------------

    def take_migration_fault(self, guest: str) -> MigrationFault | None:
        with self._lock:
            for fault in self.migration_faults:
                if not fault.used and fault.guest in (None, guest):
                    fault.used = True
                    return fault
        return None

    def take_postcopy_fault(self, guest: str) -> PostcopyLinkFault | None:
        with self._lock:
            for fault in self.postcopy_faults:
                if not fault.used and fault.guest in (None, guest):
                    fault.used = True
                    return fault
        return None

    def before_call(self, method: str, host: str | None, guest: str | None) -> None:
        """Hang and/or raise as the rules say; called without the world lock."""
        if not self.rules:
            return
        with self._lock:
            rule = next((r for r in self.rules if r.matches(method, host, guest)), None)
            if rule is None:
                return
            rule.hits += 1
        if rule.hang > 0:
            self._hang(rule)
        if rule.error is not None:
            raise rule.error.exc()

    def _hang(self, rule: CallRule) -> None:
        if rule.real:
            time.sleep(rule.hang)
            return
        world = self._world
        clock = world.clock
        end = clock.now() + rule.hang
        if world.autorun or clock.is_advancing_thread():
            clock.advance_to(end)
            return
        last_t, last_real = clock.now(), time.monotonic()
        with world._cond:
            while clock.now() < end:
                world._cond.wait(0.05)
                now = clock.now()
                if now != last_t:
                    last_t, last_real = now, time.monotonic()
                elif time.monotonic() - last_real > world.stall_timeout:
                    raise SimulationStalled(
                        f"fake libvirt: {rule.method} hangs for {rule.hang} virtual seconds "
                        "but nobody advances the clock"
                    )
