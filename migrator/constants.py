"""libvirt constants migrator needs, with libvirt's own values.

migrator must import and plan without libvirt-python, so the values live here.
``tests/unit/test_constants.py`` compares every one of them with libvirt-python
when it is installed.  The "since" versions come from libvirt's headers and
let the flag rules refuse what the host's libvirt cannot do at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

Version = tuple[int, int, int]


@dataclass(frozen=True)
class FlagInfo:
    name: str  # without the VIR_MIGRATE_ prefix
    bit: int
    since: Version


@dataclass(frozen=True)
class ParamInfo:
    const: str  # suffix of VIR_MIGRATE_PARAM_<const> in libvirt-python
    key: str
    type: str  # 'string', 'ullong', 'int', 'multi-string'
    since: Version


# virDomainMigrateFlags
VIR_MIGRATE_LIVE = 1 << 0
VIR_MIGRATE_PEER2PEER = 1 << 1
VIR_MIGRATE_TUNNELLED = 1 << 2
VIR_MIGRATE_PERSIST_DEST = 1 << 3
VIR_MIGRATE_UNDEFINE_SOURCE = 1 << 4
VIR_MIGRATE_PAUSED = 1 << 5
VIR_MIGRATE_NON_SHARED_DISK = 1 << 6
VIR_MIGRATE_NON_SHARED_INC = 1 << 7
VIR_MIGRATE_CHANGE_PROTECTION = 1 << 8
VIR_MIGRATE_UNSAFE = 1 << 9
VIR_MIGRATE_OFFLINE = 1 << 10
VIR_MIGRATE_COMPRESSED = 1 << 11
VIR_MIGRATE_ABORT_ON_ERROR = 1 << 12
VIR_MIGRATE_AUTO_CONVERGE = 1 << 13
VIR_MIGRATE_RDMA_PIN_ALL = 1 << 14
VIR_MIGRATE_POSTCOPY = 1 << 15
VIR_MIGRATE_TLS = 1 << 16
VIR_MIGRATE_PARALLEL = 1 << 17
VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES = 1 << 18
VIR_MIGRATE_POSTCOPY_RESUME = 1 << 19
VIR_MIGRATE_ZEROCOPY = 1 << 20

MIGRATE_FLAGS: dict[str, FlagInfo] = {
    f.name: f
    for f in (
        FlagInfo("LIVE", VIR_MIGRATE_LIVE, (0, 3, 2)),
        FlagInfo("PEER2PEER", VIR_MIGRATE_PEER2PEER, (0, 7, 2)),
        FlagInfo("TUNNELLED", VIR_MIGRATE_TUNNELLED, (0, 7, 2)),
        FlagInfo("PERSIST_DEST", VIR_MIGRATE_PERSIST_DEST, (0, 7, 3)),
        FlagInfo("UNDEFINE_SOURCE", VIR_MIGRATE_UNDEFINE_SOURCE, (0, 7, 3)),
        FlagInfo("PAUSED", VIR_MIGRATE_PAUSED, (0, 7, 5)),
        FlagInfo("NON_SHARED_DISK", VIR_MIGRATE_NON_SHARED_DISK, (0, 8, 2)),
        FlagInfo("NON_SHARED_INC", VIR_MIGRATE_NON_SHARED_INC, (0, 8, 2)),
        FlagInfo("CHANGE_PROTECTION", VIR_MIGRATE_CHANGE_PROTECTION, (0, 9, 4)),
        FlagInfo("UNSAFE", VIR_MIGRATE_UNSAFE, (0, 9, 11)),
        FlagInfo("OFFLINE", VIR_MIGRATE_OFFLINE, (1, 0, 1)),
        FlagInfo("COMPRESSED", VIR_MIGRATE_COMPRESSED, (1, 0, 3)),
        FlagInfo("ABORT_ON_ERROR", VIR_MIGRATE_ABORT_ON_ERROR, (1, 1, 0)),
        FlagInfo("AUTO_CONVERGE", VIR_MIGRATE_AUTO_CONVERGE, (1, 2, 3)),
        FlagInfo("RDMA_PIN_ALL", VIR_MIGRATE_RDMA_PIN_ALL, (1, 2, 9)),
        FlagInfo("POSTCOPY", VIR_MIGRATE_POSTCOPY, (1, 3, 3)),
        FlagInfo("TLS", VIR_MIGRATE_TLS, (3, 2, 0)),
        FlagInfo("PARALLEL", VIR_MIGRATE_PARALLEL, (5, 2, 0)),
        FlagInfo(
            "NON_SHARED_SYNCHRONOUS_WRITES",
            VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES,
            (8, 0, 0),
        ),
        FlagInfo("POSTCOPY_RESUME", VIR_MIGRATE_POSTCOPY_RESUME, (8, 5, 0)),
        FlagInfo("ZEROCOPY", VIR_MIGRATE_ZEROCOPY, (8, 5, 0)),
    )
}

# virTypedParameter keys for migrateToURI3
VIR_MIGRATE_PARAM_URI = "migrate_uri"
VIR_MIGRATE_PARAM_DEST_NAME = "destination_name"
VIR_MIGRATE_PARAM_DEST_XML = "destination_xml"
VIR_MIGRATE_PARAM_PERSIST_XML = "persistent_xml"
VIR_MIGRATE_PARAM_BANDWIDTH = "bandwidth"
VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY = "bandwidth.postcopy"
VIR_MIGRATE_PARAM_BANDWIDTH_AVAIL_SWITCHOVER = "bandwidth.avail.switchover"
VIR_MIGRATE_PARAM_GRAPHICS_URI = "graphics_uri"
VIR_MIGRATE_PARAM_LISTEN_ADDRESS = "listen_address"
VIR_MIGRATE_PARAM_MIGRATE_DISKS = "migrate_disks"
VIR_MIGRATE_PARAM_DISKS_PORT = "disks_port"
VIR_MIGRATE_PARAM_DISKS_URI = "disks_uri"
VIR_MIGRATE_PARAM_COMPRESSION = "compression"
VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL = "auto_converge.initial"
VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT = "auto_converge.increment"
VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS = "parallel.connections"
VIR_MIGRATE_PARAM_TLS_DESTINATION = "tls.destination"

MIGRATE_PARAMS: dict[str, ParamInfo] = {
    p.key: p
    for p in (
        ParamInfo("URI", VIR_MIGRATE_PARAM_URI, "string", (1, 1, 0)),
        ParamInfo("DEST_NAME", VIR_MIGRATE_PARAM_DEST_NAME, "string", (1, 1, 0)),
        ParamInfo("DEST_XML", VIR_MIGRATE_PARAM_DEST_XML, "string", (1, 1, 0)),
        ParamInfo("PERSIST_XML", VIR_MIGRATE_PARAM_PERSIST_XML, "string", (1, 3, 4)),
        ParamInfo("BANDWIDTH", VIR_MIGRATE_PARAM_BANDWIDTH, "ullong", (1, 1, 0)),
        ParamInfo(
            "BANDWIDTH_POSTCOPY", VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY, "ullong", (5, 1, 0)
        ),
        ParamInfo(
            "BANDWIDTH_AVAIL_SWITCHOVER",
            VIR_MIGRATE_PARAM_BANDWIDTH_AVAIL_SWITCHOVER,
            "ullong",
            (11, 1, 0),
        ),
        ParamInfo("GRAPHICS_URI", VIR_MIGRATE_PARAM_GRAPHICS_URI, "string", (1, 1, 0)),
        ParamInfo("LISTEN_ADDRESS", VIR_MIGRATE_PARAM_LISTEN_ADDRESS, "string", (1, 1, 4)),
        ParamInfo(
            "MIGRATE_DISKS", VIR_MIGRATE_PARAM_MIGRATE_DISKS, "multi-string", (1, 2, 17)
        ),
        ParamInfo("DISKS_PORT", VIR_MIGRATE_PARAM_DISKS_PORT, "int", (1, 3, 3)),
        ParamInfo("DISKS_URI", VIR_MIGRATE_PARAM_DISKS_URI, "string", (6, 8, 0)),
        ParamInfo(
            "COMPRESSION", VIR_MIGRATE_PARAM_COMPRESSION, "multi-string", (1, 3, 4)
        ),
        ParamInfo(
            "AUTO_CONVERGE_INITIAL",
            VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL,
            "int",
            (2, 0, 0),
        ),
        ParamInfo(
            "AUTO_CONVERGE_INCREMENT",
            VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT,
            "int",
            (2, 0, 0),
        ),
        ParamInfo(
            "PARALLEL_CONNECTIONS",
            VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS,
            "int",
            (5, 2, 0),
        ),
        ParamInfo(
            "TLS_DESTINATION", VIR_MIGRATE_PARAM_TLS_DESTINATION, "string", (6, 0, 0)
        ),
    )
}

# virDomainJobType
VIR_DOMAIN_JOB_NONE = 0
VIR_DOMAIN_JOB_BOUNDED = 1
VIR_DOMAIN_JOB_UNBOUNDED = 2
VIR_DOMAIN_JOB_COMPLETED = 3
VIR_DOMAIN_JOB_FAILED = 4
VIR_DOMAIN_JOB_CANCELLED = 5

# virDomainGetJobStatsFlags
VIR_DOMAIN_JOB_STATS_COMPLETED = 1 << 0
VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED = 1 << 1

# virDomainJobOperation
VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN = 4
VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT = 5

# virDomainAbortJobFlagsValues (libvirt 8.5)
VIR_DOMAIN_ABORT_JOB_POSTCOPY = 1 << 0
# virDomainMigrateMaxSpeedFlags (libvirt 5.1)
VIR_DOMAIN_MIGRATE_MAX_SPEED_POSTCOPY = 1 << 0

# virDomainStatsTypes, virConnectGetAllDomainStatsFlags; the dirty-rate calculation's
# status and modes (virDomainStartDirtyRateCalc, libvirt 7.2; modes 8.1)
VIR_DOMAIN_STATS_STATE = 1 << 0
VIR_DOMAIN_STATS_DIRTYRATE = 1 << 9
VIR_CONNECT_GET_ALL_DOMAINS_STATS_ENFORCE_STATS = 1 << 31
VIR_CONNECT_LIST_DOMAINS_ACTIVE = 1 << 0  # running or paused guests only
VIR_DOMAIN_DIRTYRATE_UNSTARTED = 0
VIR_DOMAIN_DIRTYRATE_MEASURING = 1
VIR_DOMAIN_DIRTYRATE_MEASURED = 2
VIR_DOMAIN_DIRTYRATE_MODE_PAGE_SAMPLING = 0
VIR_DOMAIN_DIRTYRATE_MODE_DIRTY_BITMAP = 1 << 0
VIR_DOMAIN_DIRTYRATE_MODE_DIRTY_RING = 1 << 1

# virDomainState
VIR_DOMAIN_NOSTATE = 0
VIR_DOMAIN_RUNNING = 1
VIR_DOMAIN_BLOCKED = 2
VIR_DOMAIN_PAUSED = 3
VIR_DOMAIN_SHUTDOWN = 4
VIR_DOMAIN_SHUTOFF = 5
VIR_DOMAIN_CRASHED = 6
VIR_DOMAIN_PMSUSPENDED = 7

# virDomainRunningReason
VIR_DOMAIN_RUNNING_UNKNOWN = 0
VIR_DOMAIN_RUNNING_BOOTED = 1
VIR_DOMAIN_RUNNING_MIGRATED = 2
VIR_DOMAIN_RUNNING_UNPAUSED = 5
VIR_DOMAIN_RUNNING_MIGRATION_CANCELED = 6
VIR_DOMAIN_RUNNING_POSTCOPY = 10
VIR_DOMAIN_RUNNING_POSTCOPY_FAILED = 11

# virDomainPausedReason
VIR_DOMAIN_PAUSED_UNKNOWN = 0
VIR_DOMAIN_PAUSED_USER = 1
VIR_DOMAIN_PAUSED_MIGRATION = 2
VIR_DOMAIN_PAUSED_POSTCOPY = 12
VIR_DOMAIN_PAUSED_POSTCOPY_FAILED = 13

# virDomainShutoffReason
VIR_DOMAIN_SHUTOFF_UNKNOWN = 0
VIR_DOMAIN_SHUTOFF_DESTROYED = 2
VIR_DOMAIN_SHUTOFF_MIGRATED = 4

# virDomainEventID
VIR_DOMAIN_EVENT_ID_LIFECYCLE = 0
VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION = 20
VIR_DOMAIN_EVENT_ID_JOB_COMPLETED = 21

# virDomainEventType (lifecycle)
VIR_DOMAIN_EVENT_DEFINED = 0
VIR_DOMAIN_EVENT_UNDEFINED = 1
VIR_DOMAIN_EVENT_STARTED = 2
VIR_DOMAIN_EVENT_SUSPENDED = 3
VIR_DOMAIN_EVENT_RESUMED = 4
VIR_DOMAIN_EVENT_STOPPED = 5

# lifecycle event details
VIR_DOMAIN_EVENT_STARTED_MIGRATED = 1
VIR_DOMAIN_EVENT_SUSPENDED_PAUSED = 0
VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED = 1
VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY = 7
VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY_FAILED = 8
VIR_DOMAIN_EVENT_RESUMED_UNPAUSED = 0
VIR_DOMAIN_EVENT_RESUMED_MIGRATED = 1
VIR_DOMAIN_EVENT_RESUMED_POSTCOPY = 3
VIR_DOMAIN_EVENT_STOPPED_DESTROYED = 1
VIR_DOMAIN_EVENT_STOPPED_MIGRATED = 3
VIR_DOMAIN_EVENT_STOPPED_FAILED = 5

# virErrorNumber (only the codes migrator reacts to or the fake raises)
VIR_ERR_OK = 0
VIR_ERR_INTERNAL_ERROR = 1
VIR_ERR_NO_SUPPORT = 3
VIR_ERR_INVALID_ARG = 8
VIR_ERR_OPERATION_FAILED = 9
VIR_ERR_SYSTEM_ERROR = 38
VIR_ERR_RPC = 39
VIR_ERR_NO_DOMAIN = 42
VIR_ERR_OPERATION_INVALID = 55
VIR_ERR_CONFIG_UNSUPPORTED = 67
VIR_ERR_OPERATION_TIMEOUT = 68
VIR_ERR_ARGUMENT_UNSUPPORTED = 74
VIR_ERR_OPERATION_ABORTED = 78
VIR_ERR_OPERATION_UNSUPPORTED = 84
VIR_ERR_AGENT_UNRESPONSIVE = 86

# virErrorDomain
VIR_FROM_NONE = 0
VIR_FROM_RPC = 7
VIR_FROM_QEMU = 10
VIR_FROM_DOMAIN = 20

# Substring of the INTERNAL_ERROR jobStats raises right after completion
# (Nova bug 1982284): the job is not running (yet or any more).
NO_RAM_INFO_MESSAGE = "migration was active, but no RAM info was set"

# QEMU refuses a downtime limit above 2000 s.
QEMU_MAX_DOWNTIME_MS = 2_000_000
QEMU_DEFAULT_DOWNTIME_MS = 300


def flag_names(flags: int) -> list[str]:
    """``VIR_MIGRATE_*`` names of the bits set in ``flags``, lowest bit first."""
    return [
        "VIR_MIGRATE_" + info.name
        for info in sorted(MIGRATE_FLAGS.values(), key=lambda i: i.bit)
        if flags & info.bit
    ]
