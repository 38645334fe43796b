"""One outgoing migration job as libvirt 9.0 runs it, around the physics.

Phases (virtual time; the lengths of the fixed ones are ``World.timings``)::

    PREPARE    Begin/Prepare, destination QEMU starting   jobStats: {type: 0}
    SETUP      QEMU 'setup'                               type 2, counters 0
    TRANSFER   disks, then pre-copy passes                type 2, live counters
    SWITCHOVER stop-and-copy, source paused               "domain is not running"
    POSTCOPY   guest runs on the destination              type 2, postcopy requests
    POSTCOPY_PAUSED  the post-copy stream broke; waits for POSTCOPY_RESUME
    FINISH     Finish/Confirm                             "domain is not running"
    CANCELLING abortJob accepted                          type 5
    DONE

Domain states and lifecycle events follow what real libvirt showed (README
§3): source SUSPENDED/MIGRATED (+ SUSPENDED/POSTCOPY) then STOPPED/MIGRATED;
destination STARTED/MIGRATED, DEFINED/ADDED, RESUMED/POSTCOPY,
RESUMED/MIGRATED.  A broken post-copy leaves the source PAUSED and the
destination RUNNING, both with reason POSTCOPY_FAILED (libvirt >= 8.5).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from migrator import constants
from migrator.testing import errors as E
from migrator.testing import jobcounters
from migrator.testing.errors import ErrorSpec
from migrator.testing.hypervisor import (
    AutoConverge,
    Completed,
    Happening,
    Iteration,
    Snapshot,
    Switchover,
    Transfer,
)
from migrator.testing.jobrequests import FAILABLE, JobRequests
from migrator.testing.libvirt_values import (
    VIR_DOMAIN_EVENT_DEFINED_ADDED,
    VIR_DOMAIN_EVENT_RESUMED_POSTCOPY_FAILED,
    VIR_DOMAIN_EVENT_UNDEFINED_REMOVED,
    VIR_DOMAIN_PAUSED_MIGRATION,
)
from migrator.testing.model import DomainRecord, JobPhase
from migrator.testing.rules import migrated_disks
from migrator.units import MiB

if TYPE_CHECKING:
    from migrator.testing.model import Host, Waiter
    from migrator.testing.world import World



_TRANSFER_PHASES = (
    JobPhase.TRANSFER,
    JobPhase.SWITCHOVER,
    JobPhase.POSTCOPY,
    JobPhase.POSTCOPY_PAUSED,
)


class MigrationJob(JobRequests):
    """An outgoing migration from ``src`` to ``dst``; owned and stepped by the world."""

    def __init__(
        self,
        world: World,
        src_host: Host,
        rec: DomainRecord,
        dst_host: Host,
        flags: int,
        params: dict[str, Any],
        waiter: Waiter,
    ):
        self.world = world
        self.src_host = src_host
        self.rec = rec
        self.dst_host = dst_host
        self.flags = flags
        self.params = params
        self.waiters: list[Waiter] = [waiter]
        self.t0 = world.now
        self.phase = JobPhase.PREPARE
        self.phase_end = self.t0 + world.timings.prepare
        self.transfer: Transfer | None = None
        self.dst: DomainRecord | None = None
        self._dst_was_defined = False
        self.dest_name: str = params.get(constants.VIR_MIGRATE_PARAM_DEST_NAME) or rec.name
        # P2P keeps a guest that was paused before the migration paused.
        self.dest_paused = (bool(flags & constants.VIR_MIGRATE_PAUSED)
                            or rec.state == constants.VIR_DOMAIN_PAUSED)
        self.abort_pending = False
        self.cancel_error: ErrorSpec | None = None
        self.saved_downtime_ms = rec.max_downtime_ms
        bw = params.get(constants.VIR_MIGRATE_PARAM_BANDWIDTH) or rec.max_speed_mibps
        self.bandwidth_mibps: int = bw
        self.postcopy_mibps: int = (
            params.get(constants.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY) or rec.postcopy_speed_mibps
        )
        self.user_paused_at: float | None = None
        self.migration_paused_at: float | None = None
        self.switch_time: float | None = None
        self.end_time: float | None = None
        self.downtime: float | None = None
        self.frozen: Snapshot | None = None  # counters shown while cancelling
        self.postcopy_requested = False
        self.postcopy_switched = False
        self.dest_lost = False
        fault = world.faults.take_migration_fault(rec.name)
        self.fail_at: float | None = None
        self.fail_error: ErrorSpec | None = None
        if fault is not None:
            self.fail_at = fault.at if fault.at is not None else self.t0 + (fault.after or 0.0)
            self.fail_error = fault.error
        self.pc_fault = world.faults.take_postcopy_fault(rec.name)
        self.pc_fail_at: float | None = None
        self.restore_at: float | None = None
        self.disk_bytes = sum(
            d.size
            for d in rec.guest.disks
            if d.target
            in migrated_disks(flags, params, [(x.target, x.shared) for x in rec.guest.disks])
        )

    # -- rates ---------------------------------------------------------------------------

    @property
    def link_rate(self) -> float:
        return min(self.src_host.link_rate, self.dst_host.link_rate)

    def _bandwidth(self) -> float:
        """The pre-copy rate: the MiB/s limit (0: none), never above the link."""
        if self.bandwidth_mibps <= 0:
            return self.link_rate
        return min(self.bandwidth_mibps * MiB, self.link_rate)

    def _postcopy_bandwidth(self) -> float:
        return self.postcopy_mibps * MiB

    # -- stepping ------------------------------------------------------------------------

    def _deadline(self) -> float:
        p = self.phase
        out = math.inf
        if p in (JobPhase.PREPARE, JobPhase.SETUP, JobPhase.FINISH, JobPhase.CANCELLING):
            out = self.phase_end
        if self.fail_at is not None and p in FAILABLE:
            out = min(out, self.fail_at)
        if self.pc_fail_at is not None and p is JobPhase.POSTCOPY:
            out = min(out, self.pc_fail_at)
        if self.restore_at is not None:
            out = min(out, self.restore_at)
        return out

    def advance(self, t: float) -> float:
        """Run this job up to virtual time ``t`` (world lock held); the time it reached.

        It stops early, at the moment it hands a blocked caller its outcome
        (``migrateToURI3`` returns), so that the clock stops there too and the
        monitor sees the job end when it ends, not at its next poll.
        """
        posted = len(self.world._posted)
        while self.phase is not JobPhase.DONE:
            deadline = self._deadline()
            target = min(deadline, t)
            if self.transfer is not None and self.phase in _TRANSFER_PHASES:
                before = self.phase
                happenings = self.transfer.advance(target)
                for h in happenings:
                    self._on_happening(h)
                if len(self.world._posted) > posted:
                    return happenings[-1].time if happenings else target
                if self.phase is not before or (
                    happenings and isinstance(happenings[-1], Switchover)
                ):
                    continue
            if deadline <= t:
                self._on_deadline(deadline)
                if len(self.world._posted) > posted:
                    return deadline
                continue
            break
        return t

    def _on_deadline(self, now: float) -> None:
        if self.restore_at is not None and self.restore_at <= now:
            self.restore_at = None
            self.world.set_link(self.src_host.name, self.dst_host.name, True)
            return
        if self.fail_at is not None and self.fail_at <= now and self.phase in FAILABLE:
            self.fail_at = None
            error = self.fail_error or E.socket_closed()
            if self.phase is JobPhase.POSTCOPY:
                self.world.set_link(self.src_host.name, self.dst_host.name, False)
                self._postcopy_broken(now)
            else:
                self._teardown(now, constants.VIR_DOMAIN_JOB_FAILED, error)
            return
        if (
            self.pc_fail_at is not None
            and self.pc_fail_at <= now
            and self.phase is JobPhase.POSTCOPY
        ):
            self.pc_fail_at = None
            self.world.set_link(self.src_host.name, self.dst_host.name, False)
            self._postcopy_broken(now)
            if self.pc_fault is not None and self.pc_fault.restore_after is not None:
                self.restore_at = now + self.pc_fault.restore_after
            return
        if self.phase is JobPhase.PREPARE:
            self._end_prepare(now)
        elif self.phase is JobPhase.SETUP:
            self._end_setup(now)
        elif self.phase is JobPhase.FINISH:
            self._succeed(now)
        elif self.phase is JobPhase.CANCELLING:
            self._teardown(now, constants.VIR_DOMAIN_JOB_CANCELLED,
                           self.cancel_error or E.job_canceled())

    # -- phase transitions ------------------------------------------------------------

    def _end_prepare(self, now: float) -> None:
        if self.abort_pending:
            self._teardown(now, constants.VIR_DOMAIN_JOB_CANCELLED, E.canceled_before_start())
            return
        if self.flags & constants.VIR_MIGRATE_TLS and not (
            self.src_host.tls_certificates and self.dst_host.tls_certificates
        ):
            # README §7: native TLS without certificates fails at run time
            self._teardown(now, constants.VIR_DOMAIN_JOB_FAILED, E.tls_credentials_missing())
            return
        w, host = self.world, self.dst_host
        existing = host.domains.get(self.rec.uuid)
        if existing is not None:  # an inactive definition: the guest lands in it
            self._dst_was_defined = True
            dst = existing
            dst.name = self.dest_name
            dst.guest = self.rec.guest
        else:
            dst = DomainRecord(
                name=self.dest_name,
                uuid=self.rec.uuid,
                guest=self.rec.guest,
                state=constants.VIR_DOMAIN_PAUSED,
                reason=VIR_DOMAIN_PAUSED_MIGRATION,
                persistent=False,
            )
            host.domains[dst.uuid] = dst
        dst.state, dst.reason = constants.VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_MIGRATION
        dst.id = host.next_id()
        dst.incoming = self
        dst.completed = None
        self.dst = dst
        w.lifecycle(host, dst, constants.VIR_DOMAIN_EVENT_STARTED,
                    constants.VIR_DOMAIN_EVENT_STARTED_MIGRATED)
        self.phase = JobPhase.SETUP
        self.phase_end = now + w.timings.setup

    def _end_setup(self, now: float) -> None:
        w, rec = self.world, self.rec
        uri = self.params.get(constants.VIR_MIGRATE_PARAM_URI)
        if uri and not self.flags & constants.VIR_MIGRATE_TUNNELLED:
            if uri.startswith("tcp:") and not uri.startswith("tcp://"):
                uri = "tcp://" + uri[4:]  # libvirt also takes QEMU's "tcp:host:port"
            parts = urlsplit(uri)
            target = w._find_host(parts.hostname) if parts.hostname else None
            if parts.scheme == "tcp" and target is not self.dst_host:
                # QEMU cannot reach the data address (unverified wording)
                port = parts.port or 49152
                reason = f"Failed to connect to '{parts.hostname}:{port}': Connection refused"
                self._teardown(now, constants.VIR_DOMAIN_JOB_FAILED, E.job_failed(reason))
                return
        ac = None
        if self.flags & constants.VIR_MIGRATE_AUTO_CONVERGE:
            ac = AutoConverge(
                initial=self.params.get(constants.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL, 20),
                increment=self.params.get(constants.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT, 10),
            )
        g = rec.guest
        self.transfer = Transfer(
            start=now,
            memory=g.memory,
            working_set=g.working_set,
            dirty_rate=g.dirty_rate,
            bandwidth=self._bandwidth(),
            link_rate=self.link_rate,
            downtime_limit=rec.max_downtime_ms / 1000.0,
            disk_bytes=self.disk_bytes,
            postcopy_bandwidth=self._postcopy_bandwidth(),
            auto_converge=ac,
            sample_seconds=w.timings.dirty_sample,
            switchover_overhead=w.timings.switchover_overhead,
        )
        if self.postcopy_requested:
            self.transfer.request_postcopy()
        if rec.state == constants.VIR_DOMAIN_PAUSED:
            self.transfer.set_guest_running(False)
        elif not self.flags & constants.VIR_MIGRATE_LIVE:
            self._pause_source(now)
            self.migration_paused_at = now
        self.phase = JobPhase.TRANSFER

    def _pause_source(self, now: float) -> None:
        rec = self.rec
        if rec.state == constants.VIR_DOMAIN_RUNNING:
            self.world.transition(self.src_host, rec, constants.VIR_DOMAIN_PAUSED,
                                  VIR_DOMAIN_PAUSED_MIGRATION,
                                  constants.VIR_DOMAIN_EVENT_SUSPENDED,
                                  constants.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED)
        if self.transfer is not None:
            self.transfer.set_guest_running(False)

    def _on_happening(self, h: Happening) -> None:
        w = self.world
        if isinstance(h, Iteration):
            w.emit(self.src_host, self.rec, constants.VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION,
                   h.number)
        elif isinstance(h, Switchover):
            self.switch_time = h.time
            if h.postcopy:
                self._start_postcopy(h.time)
            else:
                self.phase = JobPhase.SWITCHOVER
                self._pause_source(h.time)
        elif isinstance(h, Completed):
            self._transfer_done(h)

    def _start_postcopy(self, now: float) -> None:
        self.phase = JobPhase.POSTCOPY
        self.postcopy_switched = True
        self._pause_source(now)
        self._show_post_copy(define_dest=True)
        if self.pc_fault is not None:
            self.pc_fail_at = now + self.pc_fault.after

    def _show_post_copy(self, define_dest: bool) -> None:
        """The source pauses for post-copy; the destination runs the guest."""
        self.world.transition(self.src_host, self.rec, constants.VIR_DOMAIN_PAUSED,
                              constants.VIR_DOMAIN_PAUSED_POSTCOPY,
                              constants.VIR_DOMAIN_EVENT_SUSPENDED,
                              constants.VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY)
        if self.dst is not None:
            if define_dest:
                self._define_dest()
            self._dest_runs(constants.VIR_DOMAIN_RUNNING_POSTCOPY,
                            constants.VIR_DOMAIN_EVENT_RESUMED_POSTCOPY)

    def _dest_runs(self, reason: int, detail: int) -> None:
        assert self.dst is not None
        self.world.transition(self.dst_host, self.dst, constants.VIR_DOMAIN_RUNNING, reason,
                              constants.VIR_DOMAIN_EVENT_RESUMED, detail)

    def _define_dest(self) -> None:
        dst = self.dst
        if (dst is not None and self.flags & constants.VIR_MIGRATE_PERSIST_DEST
                and not dst.persistent):
            dst.persistent = True
            self.world.lifecycle(
                self.dst_host, dst, constants.VIR_DOMAIN_EVENT_DEFINED,
                VIR_DOMAIN_EVENT_DEFINED_ADDED
            )

    def _transfer_done(self, h: Completed) -> None:
        w, dst = self.world, self.dst
        if self.phase is JobPhase.POSTCOPY:
            self.downtime = h.downtime
            if dst is not None:
                self._dest_runs(constants.VIR_DOMAIN_RUNNING_MIGRATED,
                                constants.VIR_DOMAIN_EVENT_RESUMED_MIGRATED)
        else:
            paused_since = self.migration_paused_at
            if self.user_paused_at is not None:
                paused_since = self.user_paused_at
            self.downtime = h.downtime if paused_since is None else h.time - paused_since
            if dst is not None:
                self._define_dest()
                if self.dest_paused:
                    w.transition(self.dst_host, dst, constants.VIR_DOMAIN_PAUSED,
                                 constants.VIR_DOMAIN_PAUSED_USER,
                                 constants.VIR_DOMAIN_EVENT_SUSPENDED,
                                 constants.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED)
                else:
                    self._dest_runs(constants.VIR_DOMAIN_RUNNING_MIGRATED,
                                    constants.VIR_DOMAIN_EVENT_RESUMED_MIGRATED)
        self.phase = JobPhase.FINISH
        self.phase_end = h.time + w.timings.finish

    def _succeed(self, now: float) -> None:
        w, rec, dst = self.world, self.rec, self.dst
        self.end_time = now
        out_stats = self.completed_stats(constants.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT)
        rec.outgoing = None
        rec.id = -1
        rec.completed = out_stats
        w.transition(self.src_host, rec, constants.VIR_DOMAIN_SHUTOFF,
                     constants.VIR_DOMAIN_SHUTOFF_MIGRATED, constants.VIR_DOMAIN_EVENT_STOPPED,
                     constants.VIR_DOMAIN_EVENT_STOPPED_MIGRATED)
        w.emit(self.src_host, rec, constants.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, dict(out_stats))
        if self.flags & constants.VIR_MIGRATE_UNDEFINE_SOURCE or not rec.persistent:
            self.src_host.domains.pop(rec.uuid, None)
            if rec.persistent:
                w.lifecycle(
                    self.src_host,
                    rec,
                    constants.VIR_DOMAIN_EVENT_UNDEFINED,
                    VIR_DOMAIN_EVENT_UNDEFINED_REMOVED,
                )
        if dst is not None:
            dst.incoming = None
            # After post-copy the destination keeps no completed stats (README §3).
            dst.completed = (
                None
                if self.postcopy_switched
                else self.completed_stats(constants.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN)
            )
        self._close(None)

    def _teardown(self, now: float, job_type: int, error: ErrorSpec) -> None:
        """The job ends without moving the guest: it stays (running) on the source."""
        w, rec, dst = self.world, self.rec, self.dst
        self.end_time = now
        if dst is not None and dst.incoming is self:
            dst.incoming = None
            dst.id = -1
            if self._dst_was_defined:
                dst.state, dst.reason = (constants.VIR_DOMAIN_SHUTOFF,
                                         constants.VIR_DOMAIN_SHUTOFF_UNKNOWN)
            else:
                self.dst_host.domains.pop(dst.uuid, None)
            w.lifecycle(
                self.dst_host, dst, constants.VIR_DOMAIN_EVENT_STOPPED,
                constants.VIR_DOMAIN_EVENT_STOPPED_FAILED
            )
        if rec.outgoing is self:
            rec.outgoing = None
            if (rec.state == constants.VIR_DOMAIN_PAUSED
                    and rec.reason == VIR_DOMAIN_PAUSED_MIGRATION):
                w.transition(self.src_host, rec, constants.VIR_DOMAIN_RUNNING,
                             constants.VIR_DOMAIN_RUNNING_MIGRATION_CANCELED,
                             constants.VIR_DOMAIN_EVENT_RESUMED,
                             constants.VIR_DOMAIN_EVENT_RESUMED_MIGRATED)
            # libvirt restores the migration parameters it found at the start.
            rec.max_downtime_ms = self.saved_downtime_ms
            stats = self.completed_stats(constants.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT, job_type)
            if job_type == constants.VIR_DOMAIN_JOB_FAILED:
                stats["errmsg"] = error.message
            rec.completed = stats
        self._close(error)

    def end_now(self, now: float) -> None:
        """End the job at once (the world shuts down): a job past the switch-over
        completes on the destination, any other is cancelled and the guest stays."""
        if self.phase is JobPhase.DONE:
            return
        if self.phase in (JobPhase.POSTCOPY, JobPhase.POSTCOPY_PAUSED, JobPhase.FINISH):
            self._succeed(now)
        else:
            self._teardown(now, constants.VIR_DOMAIN_JOB_CANCELLED, E.job_canceled())

    def _close(self, error: ErrorSpec | None) -> None:
        self.phase = JobPhase.DONE
        if self in self.world.jobs:
            self.world.jobs.remove(self)
        waiters, self.waiters = self.waiters, []
        self.world.post(waiters, error)

    def _postcopy_broken(self, now: float) -> None:
        w, rec, dst = self.world, self.rec, self.dst
        self.phase = JobPhase.POSTCOPY_PAUSED
        if self.transfer is not None:
            self.transfer.pause_postcopy()
        w.transition(self.src_host, rec, constants.VIR_DOMAIN_PAUSED,
                     constants.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED,
                     constants.VIR_DOMAIN_EVENT_SUSPENDED,
                     constants.VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY_FAILED)
        if dst is not None:
            self._dest_runs(constants.VIR_DOMAIN_RUNNING_POSTCOPY_FAILED,
                            VIR_DOMAIN_EVENT_RESUMED_POSTCOPY_FAILED)
        waiters, self.waiters = self.waiters, []
        w.post(waiters, E.failed_in_postcopy())

    # -- statistics (migrator.testing.jobcounters) -----------------------------------------

    def stats(self, now: float) -> dict[str, Any]:
        """jobStats() on the source while the job runs."""
        return jobcounters.running_stats(self, now)

    def completed_stats(
        self, operation: int, job_type: int = constants.VIR_DOMAIN_JOB_COMPLETED
    ) -> dict[str, Any]:
        """What jobStats(VIR_DOMAIN_JOB_STATS_COMPLETED) returns after the job."""
        return jobcounters.completed_stats(self, operation, job_type)
