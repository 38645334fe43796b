"""Job statistics as plain data: parse libvirt's answers, classify its errors.

The monitor's decisions are made on :class:`JobSample` values, never on raw
libvirt dicts, so the policy and the progress tracker can be tested (and
simulated) without libvirt.  Parsing never raises: a monitor that crashes on an
odd stats dict would have to abort a migration that was going fine.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migrator import constants
from migrator.units import GiB

DEFAULT_PAGE_SIZE = 4096
# Nova counts RAM and every migrated disk as at least 2 GiB, so that small
# guests still get a sane downtime ramp and completion timeout.
MIN_DATA_GB = 2.0

# JobSample field -> virDomain.jobStats() key (where the names differ, libvirt's
# unit is in the field name).
_STATS_KEYS: dict[str, str] = {
    "type": "type",
    "time_elapsed_ms": "time_elapsed",
    "data_total": "data_total",
    "data_processed": "data_processed",
    "data_remaining": "data_remaining",
    "memory_total": "memory_total",
    "memory_processed": "memory_processed",
    "memory_remaining": "memory_remaining",
    "memory_bps": "memory_bps",
    "memory_dirty_rate": "memory_dirty_rate",
    "memory_page_size": "memory_page_size",
    "memory_iteration": "memory_iteration",
    "disk_total": "disk_total",
    "disk_processed": "disk_processed",
    "disk_remaining": "disk_remaining",
    "downtime_ms": "downtime",
    "auto_converge_throttle": "auto_converge_throttle",
    "memory_postcopy_requests": "memory_postcopy_requests",
}

# Positions in the legacy virDomain.jobInfo() list (index 2, time_remaining, is
# never filled in by the QEMU driver and is not kept).
_JOB_INFO_INDEX: dict[str, int] = {
    "type": 0,
    "time_elapsed_ms": 1,
    "data_total": 3,
    "data_processed": 4,
    "data_remaining": 5,
    "memory_total": 6,
    "memory_processed": 7,
    "memory_remaining": 8,
    "disk_total": 9,
    "disk_processed": 10,
    "disk_remaining": 11,
}


def _count(value: Any) -> int:
    """A libvirt counter as a non-negative int; anything else counts as 0.

    libvirt's counters are unsigned, so a negative, NaN, bool or non-numeric
    value can only be garbage.  Finite floats are truncated (JSON round-trips
    and other bindings may turn integers into floats).
    """
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value if value > 0 else 0
    if isinstance(value, float) and math.isfinite(value) and value > 0:
        return int(value)
    return 0


@dataclass(frozen=True)
class JobSample:
    """One reading of the migration job, in libvirt's units.

    Byte counts are bytes, ``memory_bps`` is bytes/s, ``memory_dirty_rate`` is
    pages/s (as libvirt reports it; see :attr:`dirty_rate_bytes`), and
    ``downtime_ms`` is the downtime QEMU *expects* while the job runs (the
    actual one in completed-job stats).
    """

    type: int = constants.VIR_DOMAIN_JOB_NONE
    time_elapsed_ms: int = 0
    data_total: int = 0
    data_processed: int = 0
    data_remaining: int = 0
    memory_total: int = 0
    memory_processed: int = 0
    memory_remaining: int = 0
    memory_bps: int = 0
    memory_dirty_rate: int = 0
    memory_page_size: int = DEFAULT_PAGE_SIZE
    memory_iteration: int = 0
    disk_total: int = 0
    disk_processed: int = 0
    disk_remaining: int = 0
    downtime_ms: int = 0
    auto_converge_throttle: int = 0
    memory_postcopy_requests: int = 0

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any] | None) -> JobSample:
        """Build a sample from a ``virDomain.jobStats()`` dict.

        Missing keys (older libvirt, the first samples of a job) become 0, a
        missing or zero page size becomes 4096; anything that is not a
        mapping gives an empty NONE sample.
        """
        if not isinstance(stats, Mapping):
            return cls()
        values = {field: _count(stats.get(key)) for field, key in _STATS_KEYS.items()}
        if values["memory_page_size"] == 0:
            values["memory_page_size"] = DEFAULT_PAGE_SIZE
        return cls(**values)

    @classmethod
    def from_job_info(cls, info: Sequence[Any] | None) -> JobSample:
        """Build a sample from the legacy 12-value ``virDomain.jobInfo()`` list.

        Used when jobStats is not supported; that list has no rates, iteration
        or downtime, so those stay 0.  A short or malformed list never raises.
        """
        if not isinstance(info, Sequence) or isinstance(info, str | bytes):
            return cls()
        values = {
            field: _count(info[index]) if index < len(info) else 0
            for field, index in _JOB_INFO_INDEX.items()
        }
        return cls(**values)

    @property
    def dirty_rate_bytes(self) -> int:
        """Guest dirty rate in bytes/s (libvirt reports pages/s)."""
        return self.memory_dirty_rate * self.memory_page_size

    @property
    def is_running(self) -> bool:
        """True for an UNBOUNDED job, the only type the policy acts on."""
        return self.type == constants.VIR_DOMAIN_JOB_UNBOUNDED


class StatsError(enum.Enum):
    """What a libvirt error from jobStats()/jobInfo() means for the monitor."""

    FINISHING = "finishing"  # the domain is gone or not running: the job is ending or ended
    NOT_STARTED = "not_started"  # no RAM info yet/any more: treat like job type NONE
    NO_SUPPORT = "no_support"  # jobStats unsupported: fall back to jobInfo for good
    FATAL = "fatal"  # anything else: the monitor cannot follow the job


def classify_stats_error(code: int, message: str | None) -> StatsError:
    """Map a libvirt error code and message from a stats call to a :class:`StatsError`.

    NO_DOMAIN (a transient domain left after the switch-over) and
    OPERATION_INVALID ("domain is not running", seen on real libvirt right after
    the switch-over or the post-copy switch) mean the job is finishing, not
    failing.  The INTERNAL_ERROR "no RAM info was set" is a race around job
    start and end (Nova bug 1982284).
    """
    if code in (constants.VIR_ERR_NO_DOMAIN, constants.VIR_ERR_OPERATION_INVALID):
        return StatsError.FINISHING
    if code == constants.VIR_ERR_INTERNAL_ERROR and constants.NO_RAM_INFO_MESSAGE in (
        message or ""
    ):
        return StatsError.NOT_STARTED
    if code == constants.VIR_ERR_NO_SUPPORT:
        return StatsError.NO_SUPPORT
    return StatsError.FATAL


def data_gb(memory_bytes: int, disk_sizes: Sequence[int]) -> float:
    """GiB a migration moves, as Nova's ``_live_migration_data_gb`` counts it.

    RAM and each migrated disk count as at least 2 GiB.  The result scales the
    downtime ramp and the completion timeout, so it must match Nova's for the
    same options to behave the same.
    """
    total = max(memory_bytes / GiB, MIN_DATA_GB)
    for size in disk_sizes:
        total += max(size / GiB, MIN_DATA_GB)
    return float(total)
