"""The fake ``virDomain``: one handle on one domain of one connection.

Identity and state, life cycle, job statistics, migration tuning and
``migrateToURI3`` (whose checks and start live in
:mod:`migrator.testing.fakemigrate`).
"""

from __future__ import annotations

import threading
import uuid as uuidlib
from typing import TYPE_CHECKING, Any

from migrator import constants
from migrator.testing import dirtyrate, fakemigrate
from migrator.testing import errors as E
from migrator.testing.call import Call
from migrator.testing.libvirt_values import (
    VIR_DOMAIN_CONTROL_JOB,
    VIR_DOMAIN_CONTROL_OK,
    VIR_DOMAIN_EVENT_STARTED_BOOTED,
    VIR_DOMAIN_EVENT_UNDEFINED_REMOVED,
)
from migrator.testing.model import UNLIMITED_MIBPS, DomainRecord

if TYPE_CHECKING:
    from migrator.testing.fakeconnect import virConnect
    from migrator.testing.model import Waiter
    from migrator.testing.world import World


class virDomain:  # noqa: N801 - libvirt's name
    """A handle on one domain of one connection; calls look the domain up each time."""

    __slots__ = ("_conn", "_uuid", "_name")

    def __init__(self, conn: virConnect, uuid: str, name: str):
        self._conn = conn
        self._uuid = uuid
        self._name = name

    def _call(self, method: str) -> Call:
        return Call(self._conn, method, self._name)

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
            rec.id = self._conn.host.next_id()
            world.transition(self._conn.host, rec, constants.VIR_DOMAIN_RUNNING,
                             constants.VIR_DOMAIN_RUNNING_BOOTED,
                             constants.VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_BOOTED)
            return 0

    def suspend(self) -> int:
        """Pause the guest; during a migration it stops dirtying memory (the job goes on)."""
        with self._call("suspend") as world:
            self._conn._writable("virDomainSuspend")
            rec = self._active()
            if rec.state == constants.VIR_DOMAIN_PAUSED:
                return 0
            world.transition(self._conn.host, rec, constants.VIR_DOMAIN_PAUSED,
                             constants.VIR_DOMAIN_PAUSED_USER,
                             constants.VIR_DOMAIN_EVENT_SUSPENDED,
                             constants.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED)
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
            world.transition(self._conn.host, rec, constants.VIR_DOMAIN_RUNNING,
                             constants.VIR_DOMAIN_RUNNING_UNPAUSED,
                             constants.VIR_DOMAIN_EVENT_RESUMED,
                             constants.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED)
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
            rec.id = -1
            world.transition(self._conn.host, rec, constants.VIR_DOMAIN_SHUTOFF,
                             constants.VIR_DOMAIN_SHUTOFF_DESTROYED,
                             constants.VIR_DOMAIN_EVENT_STOPPED,
                             constants.VIR_DOMAIN_EVENT_STOPPED_DESTROYED)
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
        return fakemigrate.start_migration(world, self._conn, self._rec(), dconnuri, params,
                                           flags)

