"""What the libvirt API can ask of a running fake migration job.

``abortJob``, post-copy start, pause and resume, tuning, and what the job does
when its guest is paused, resumed or destroyed under it.  Called with the
world lock held, at ``world.now``; the job's phase transitions are
:class:`~migrator.testing.migration.MigrationJob`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from migrator import constants
from migrator.testing import errors as E
from migrator.testing.errors import ErrorSpec
from migrator.testing.model import JobPhase
from migrator.testing.physics import Phase

if TYPE_CHECKING:
    from migrator.testing.hypervisor import Transfer
    from migrator.testing.model import DomainRecord, Host, Waiter
    from migrator.testing.physics import Snapshot
    from migrator.testing.world import World

# The phases in which a broken connection or a destroyed domain fails the job.
FAILABLE = (
    JobPhase.PREPARE,
    JobPhase.SETUP,
    JobPhase.TRANSFER,
    JobPhase.SWITCHOVER,
    JobPhase.POSTCOPY,
)


class JobRequests:
    """The API side of :class:`~migrator.testing.migration.MigrationJob` (a mixin).

    It reads and sets the job's fields below and calls the job's transitions
    ``_postcopy_broken``, ``_teardown``, ``_show_post_copy``, ``_bandwidth`` and
    ``_postcopy_bandwidth``.
    """

    world: World
    src_host: Host
    dst_host: Host
    dst: DomainRecord | None
    flags: int
    phase: JobPhase
    phase_end: float
    transfer: Transfer | None
    abort_pending: bool
    cancel_error: ErrorSpec | None
    frozen: Snapshot | None
    postcopy_requested: bool
    dest_lost: bool
    waiters: list[Waiter]
    bandwidth_mibps: int
    postcopy_mibps: int
    user_paused_at: float | None

    def request_abort(self, now: float) -> None:
        """abortJob() on the source."""
        p = self.phase
        if p is JobPhase.PREPARE:
            self.abort_pending = True
        elif p in (JobPhase.SETUP, JobPhase.TRANSFER, JobPhase.SWITCHOVER):
            in_disk_copy = self.transfer is not None and self.transfer.phase is Phase.DISK
            self.cancel_error = E.canceled_before_start() if in_disk_copy else E.job_canceled()
            self.frozen = self.transfer.snapshot() if self.transfer is not None else None
            self.phase = JobPhase.CANCELLING
            self.phase_end = now + self.world.timings.abort
        elif p in (JobPhase.POSTCOPY, JobPhase.POSTCOPY_PAUSED):
            raise E.abort_in_postcopy().exc()
        elif p is JobPhase.FINISH:
            raise E.domain_not_running().exc()
        # CANCELLING: already on its way out

    def request_postcopy_pause(self, now: float) -> None:
        """abortJobFlags(VIR_DOMAIN_ABORT_JOB_POSTCOPY): pause post-copy so it can resume."""
        if self.phase is not JobPhase.POSTCOPY:
            raise E.abort_postcopy_not_in_postcopy().exc()
        self._postcopy_broken(now)

    def start_postcopy(self) -> None:
        """migrateStartPostCopy() on the source."""
        if self.phase in (JobPhase.POSTCOPY, JobPhase.POSTCOPY_PAUSED):
            raise E.postcopy_already_started().exc()
        if self.phase not in (JobPhase.SETUP, JobPhase.TRANSFER):
            raise E.postcopy_no_job().exc()
        if not self.flags & constants.VIR_MIGRATE_POSTCOPY:
            raise E.postcopy_not_enabled().exc()
        self.postcopy_requested = True  # in setup: switch as soon as pages flow
        if self.transfer is not None:
            self.transfer.request_postcopy()
            self.world.flush(self)

    def resume_postcopy(self, waiter: Waiter) -> None:
        """migrateToURI3(..., POSTCOPY | POSTCOPY_RESUME) on a broken post-copy."""
        if not self.world.link_up(self.src_host, self.dst_host) or not self.dst_host.reachable:
            raise E.connection_refused(self.dst_host.hostname, self.dst_host.port).exc()
        if self.dest_lost:
            # the destination QEMU is gone: nothing to resume (unverified wording)
            raise E.job_failed("domain is not running").exc()
        self.phase = JobPhase.POSTCOPY
        if self.transfer is not None:
            self.transfer.resume_postcopy()
        self._show_post_copy(define_dest=False)
        self.waiters.append(waiter)

    def set_max_downtime(self, ms: int) -> None:
        if self.transfer is not None:
            self.transfer.set_downtime_limit(ms / 1000.0)
            self.world.flush(self)

    def set_max_speed(self, mibps: int, postcopy: bool) -> None:
        if postcopy:
            self.postcopy_mibps = mibps
            if self.transfer is not None:
                self.transfer.set_postcopy_bandwidth(self._postcopy_bandwidth())
            return
        self.bandwidth_mibps = mibps
        if self.transfer is not None:
            self.transfer.set_bandwidth(self._bandwidth())
            self.world.flush(self)

    def on_guest_paused(self, now: float) -> None:
        """The user suspended the source guest: it stops dirtying memory."""
        self.user_paused_at = now
        if self.transfer is not None:
            self.transfer.set_guest_running(False)

    def on_guest_resumed(self) -> None:
        self.user_paused_at = None
        if self.transfer is not None and self.phase is JobPhase.TRANSFER:
            self.transfer.set_guest_running(True)

    def on_source_destroyed(self, now: float) -> None:
        if self.phase in (JobPhase.POSTCOPY, JobPhase.POSTCOPY_PAUSED):
            if self.phase is JobPhase.POSTCOPY:
                self._postcopy_broken(now)
            return
        self._teardown(now, constants.VIR_DOMAIN_JOB_FAILED, E.domain_not_running())

    def on_dest_destroyed(self, now: float) -> None:
        """The destination domain was destroyed; in post-copy the guest is lost."""
        if self.phase in (JobPhase.POSTCOPY, JobPhase.POSTCOPY_PAUSED):
            self.dest_lost = True
            if self.phase is JobPhase.POSTCOPY:
                self._postcopy_broken(now)
            if self.dst is not None:
                self.dst.incoming = None
        elif self.phase in FAILABLE:
            self._teardown(now, constants.VIR_DOMAIN_JOB_FAILED, E.socket_closed())
