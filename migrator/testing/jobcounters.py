"""What ``jobStats`` shows of a fake migration job, running or finished.

libvirt's counters (``data_*``, ``memory_*``, ``disk_*``, ``downtime``...) are
read from the physics' :class:`~migrator.testing.hypervisor.Snapshot`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from migrator import constants
from migrator.testing import errors as E
from migrator.testing.model import JobPhase

if TYPE_CHECKING:
    from migrator.testing.hypervisor import Snapshot
    from migrator.testing.migration import MigrationJob


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def running_stats(job: MigrationJob, now: float) -> dict[str, Any]:
    """jobStats() on the source while ``job`` runs."""
    p = job.phase
    if p is JobPhase.PREPARE:
        return {"type": constants.VIR_DOMAIN_JOB_NONE}
    if p in (JobPhase.SWITCHOVER, JobPhase.FINISH, JobPhase.DONE):
        raise E.domain_not_running().exc()
    out: dict[str, Any] = {
        "type": constants.VIR_DOMAIN_JOB_UNBOUNDED,
        "operation": constants.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT,
        "time_elapsed": _ms(now - job.t0),
    }
    if p is JobPhase.CANCELLING:
        out["type"] = constants.VIR_DOMAIN_JOB_CANCELLED
        snap = job.frozen
    else:
        snap = job.transfer.snapshot() if job.transfer is not None else None
    if snap is None:  # setup: everything still 0
        out.update(dict.fromkeys(_COUNTER_KEYS, 0))
        return out
    out["setup_time"] = _ms(job.world.timings.setup)
    out.update(_counters(job.flags, snap))
    return out

def _counters(flags: int, snap: Snapshot) -> dict[str, Any]:
    out = {
        "downtime": snap.expected_downtime_ms,
        "data_total": snap.memory_total + snap.disk_total,
        "data_processed": snap.memory_processed + snap.disk_processed,
        "data_remaining": snap.memory_remaining + snap.disk_remaining,
        "memory_total": snap.memory_total,
        "memory_processed": snap.memory_processed,
        "memory_remaining": snap.memory_remaining,
        "memory_constant": 0,
        "memory_normal": snap.memory_processed // snap.page_size,
        "memory_normal_bytes": snap.memory_processed,
        "memory_bps": snap.bps,
        "memory_dirty_rate": snap.dirty_pages_rate,
        "memory_page_size": snap.page_size,
        "memory_iteration": snap.iteration,
        "memory_postcopy_requests": snap.postcopy_requests,
        "disk_total": snap.disk_total,
        "disk_processed": snap.disk_processed,
        "disk_remaining": snap.disk_remaining,
    }
    if flags & constants.VIR_MIGRATE_AUTO_CONVERGE and snap.throttle > 0:
        out["auto_converge_throttle"] = snap.throttle
    return out

def completed_stats(job: MigrationJob, operation: int, job_type: int) -> dict[str, Any]:
    """What jobStats(VIR_DOMAIN_JOB_STATS_COMPLETED) returns after ``job``."""
    end = job.end_time if job.end_time is not None else job.world.now
    out: dict[str, Any] = {
        "type": job_type,
        "operation": operation,
        "time_elapsed": _ms(end - job.t0),
        "time_elapsed_net": _ms(end - job.t0),
    }
    snap = job.frozen or (job.transfer.snapshot() if job.transfer is not None else None)
    if snap is None:
        return out
    out["setup_time"] = _ms(job.world.timings.setup)
    out.update(_counters(job.flags, snap))
    if not out["memory_bps"] and job.transfer is not None:
        out["memory_bps"] = int(job.transfer.bandwidth)  # the last rate QEMU measured
    if job_type == constants.VIR_DOMAIN_JOB_COMPLETED:
        out["downtime"] = _ms(job.downtime or 0.0)
        out["downtime_net"] = out["downtime"]
    return out


_COUNTER_KEYS = (
    "data_total",
    "data_processed",
    "data_remaining",
    "memory_total",
    "memory_processed",
    "memory_remaining",
    "memory_constant",
    "memory_normal",
    "memory_normal_bytes",
    "memory_dirty_rate",
    "memory_iteration",
    "memory_postcopy_requests",
    "disk_total",
    "disk_processed",
    "disk_remaining",
)
