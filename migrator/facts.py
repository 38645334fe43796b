"""Reading what libvirt shows, for the monitor: the running job, the source, the destination.

Thin I/O around :mod:`migrator.classify`'s plain facts.  Nothing here decides;
every function turns libvirt's answers (and its errors) into data, and never
raises for an answer libvirt may legitimately give.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from migrator import concurrency, constants
from migrator._libvirt import connection_lost, error_code, error_message
from migrator.classify import (
    RUNNING_JOBS,
    UNREACHABLE,
    DestFacts,
    SourceFacts,
    dest_lacks_guest,
)
from migrator.jobstats import JobSample, StatsError, classify_stats_error

KNOWN_JOB_TYPES = frozenset(range(constants.VIR_DOMAIN_JOB_NONE,
                                  constants.VIR_DOMAIN_JOB_CANCELLED + 1))
# A running job that began this much earlier than our migrateToURI3 call (or at a
# time this far from the job we followed so far) is another one.  libvirt's job
# starts inside our call; the slack absorbs the latency of the calls around it.
JOB_START_SLACK = 5.0
VIR_DOMAIN_CONTROL_JOB = 1  # virDomainControlState: a background job is running
# Seconds a look at the destination may take before it counts as unreachable.
DEST_TIMEOUT = 5.0


@dataclass(frozen=True)
class Reading:
    """One look at the running job: a sample, or why there is none."""

    sample: JobSample | None = None
    problem: str | None = None  # what went wrong, for the log (once)
    lost: bool = False  # the connection to the source's libvirt is gone
    finishing: bool = False  # libvirt refuses stats because the job is ending or ended
    failed: bool = False  # an error the monitor cannot explain

    @property
    def running(self) -> bool:
        return self.sample is not None and self.sample.type in RUNNING_JOBS


class JobReader:
    """``jobStats`` (or the legacy ``jobInfo`` where unsupported) as :class:`Reading` s."""

    def __init__(self) -> None:
        self.use_job_info = False

    def read(self, domain: Any) -> Reading:
        try:
            if self.use_job_info:
                sample = JobSample.from_job_info(domain.jobInfo())
            else:
                sample = JobSample.from_stats(domain.jobStats())
        except Exception as exc:  # noqa: BLE001 - libvirtError, without importing libvirt
            return self._error(exc)
        if sample.type not in KNOWN_JOB_TYPES:
            return Reading(problem=f"libvirt reported an unknown job type {sample.type}")
        return Reading(sample=sample)

    def _error(self, exc: BaseException) -> Reading:
        text = error_message(exc)
        code = error_code(exc)
        if code is None:
            return Reading(problem=f"{type(exc).__name__}: {text}", failed=True)
        if connection_lost(exc):
            return Reading(problem=text, lost=True)
        kind = classify_stats_error(code, text)
        if kind is StatsError.NO_SUPPORT and not self.use_job_info:
            self.use_job_info = True
            return Reading(problem="jobStats is not supported; reading jobInfo instead")
        if kind is StatsError.FINISHING:
            return Reading(problem=text, finishing=True)
        if kind is StatsError.NOT_STARTED:
            return Reading(sample=JobSample())
        return Reading(problem=text, failed=True)


def refused_by_job_lock(code: int | None, message: str) -> bool:
    """Our ``migrateToURI3`` never got the domain's job: another job held it."""
    text = message.lower()
    return (code == constants.VIR_ERR_OPERATION_TIMEOUT and "state change lock" in text) or (
        "job is already running" in text or "another migration job" in text)


class NoDomainError(Exception):
    """NO_DOMAIN, as libvirt raises it (for :class:`GoneDomain`)."""

    def get_error_code(self) -> int:
        return constants.VIR_ERR_NO_DOMAIN

    def get_error_message(self) -> str:
        return str(self)


class GoneDomain:
    """Stands for a guest the source no longer has: every call raises NO_DOMAIN.

    A reconnect that finds the guest gone must say so (it moved, or was
    undefined), not look like an unreachable daemon.
    """

    def __init__(self, what: str):
        self._what = what

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def gone(*args: Any, **kwargs: Any) -> Any:
            raise NoDomainError(self._what)

        return gone


class JobIdentity:
    """Tells our job from another one by when each began (``time_elapsed``).

    libvirt's job starts inside our ``migrateToURI3`` call, so a running job that
    began before the call is not ours; once ours has been seen, a job that began
    at another time is not ours either (it ended and somebody started a new one).
    Each reading brackets the start between the clock before and after the call.
    """

    def __init__(self, called_at: float | None = None, started: float | None = None):
        self.called_at = called_at
        self._known = None if started is None else (started, started)
        self.none_ours = False  # our call never got the job: every job is another's

    def disown(self) -> None:
        self.none_ours = True

    def start_window(self, sample: JobSample, before: float, after: float
                     ) -> tuple[float, float] | None:
        if not sample.time_elapsed_ms:
            return None  # libvirt does not say (jobInfo, old libvirt): assume ours
        elapsed = sample.time_elapsed_ms / 1000.0
        return before - elapsed, after - elapsed

    def is_ours(self, sample: JobSample, before: float, after: float) -> bool:
        if self.none_ours:
            return False
        window = self.start_window(sample, before, after)
        if window is None:
            return True
        lo, hi = window[0] - JOB_START_SLACK, window[1] + JOB_START_SLACK
        if self._known is not None:
            return lo <= self._known[1] and self._known[0] <= hi
        return self.called_at is None or hi >= self.called_at

    def seen(self, sample: JobSample, before: float, after: float) -> None:
        """Our job was read: narrow down when it began."""
        window = self.start_window(sample, before, after)
        if window is None:
            return
        if self._known is None:
            self._known = window
        else:
            lo, hi = max(self._known[0], window[0]), min(self._known[1], window[1])
            if lo <= hi:
                self._known = (lo, hi)


def read_source(domain: Any, identify: Callable[[JobSample], bool],
                reader: JobReader | None = None,
                record_before: JobRecord | None = None) -> SourceFacts:
    """The guest on the source now; ``identify(sample)`` tells whether a running job is ours,
    ``record_before`` (read just before our call) whether libvirt's completed record is."""
    try:
        state, reason = domain.state()[:2]
    except Exception as exc:  # noqa: BLE001 - libvirtError
        if error_code(exc) == constants.VIR_ERR_NO_DOMAIN:
            return SourceFacts(exists=False)
        return UNREACHABLE
    job: int | None = constants.VIR_DOMAIN_JOB_NONE
    ours = True
    if state != constants.VIR_DOMAIN_SHUTOFF:
        reading = (reader or JobReader()).read(domain)
        if reading.lost:
            return UNREACHABLE
        sample = reading.sample
        if sample is not None and sample.type == constants.VIR_DOMAIN_JOB_NONE and has_job(domain):
            sample = JobSample(type=constants.VIR_DOMAIN_JOB_UNBOUNDED)  # begun, no stats yet
        job = sample.type if sample is not None else None
        if job in RUNNING_JOBS:
            assert sample is not None
            ours = identify(sample)
    record = None if job in RUNNING_JOBS else read_record(domain)
    return SourceFacts(True, True, state, reason, job, ours,
                       record.kind if record else None, record.error if record else None,
                       record_of_our_job(record, record_before))


def has_job(domain: Any) -> bool:
    """libvirt's control state says a job is on the domain (jobStats may still say NONE
    while it begins); False when libvirt cannot say."""
    try:
        return domain.controlInfo()[0] == VIR_DOMAIN_CONTROL_JOB
    except Exception:  # noqa: BLE001 - libvirtError, or an old libvirt
        return False


@dataclass(frozen=True)
class JobRecord:
    """libvirt's record of the domain's last finished job, as ``jobStats`` with
    VIR_DOMAIN_JOB_STATS_COMPLETED gave it (``{'type': NONE}``: none kept)."""

    stats: dict[str, Any]

    @property
    def kind(self) -> int | None:
        """The job's type, None when there is no record (or libvirt gave garbage)."""
        kind = self.stats.get("type")
        return kind if isinstance(kind, int) and kind != constants.VIR_DOMAIN_JOB_NONE else None

    @property
    def error(self) -> str | None:
        errmsg = self.stats.get("errmsg")
        return errmsg if isinstance(errmsg, str) else None

    @property
    def operation(self) -> int | None:
        """What the job was (libvirt >= 3.3 says; None: not said)."""
        operation = self.stats.get("operation")
        return operation if isinstance(operation, int) else None


def read_record(domain: Any) -> JobRecord | None:
    """libvirt's completed-job record of the domain; None when it cannot be read.

    KEEP_COMPLETED (libvirt >= 6.0) leaves the record for the next reader; an
    older libvirt refuses the flag and hands it out once.
    """
    for flags in (constants.VIR_DOMAIN_JOB_STATS_COMPLETED
                  | constants.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED,
                  constants.VIR_DOMAIN_JOB_STATS_COMPLETED):
        try:
            stats = domain.jobStats(flags)
        except Exception:  # noqa: BLE001 - libvirtError: an old libvirt, or unreachable
            continue
        return JobRecord(dict(stats)) if isinstance(stats, dict) else None
    return None


def record_of_our_job(record: JobRecord | None, before: JobRecord | None) -> bool:
    """Is ``record`` the one our job left?  It must have appeared since ``before``,
    read just before our ``migrateToURI3`` (a job's record carries its own times,
    so a new job's record differs from an old one), and be an outgoing migration
    where libvirt names the operation.  Without a baseline nothing is ours."""
    if record is None or before is None or record.kind is None:
        return False
    if record.operation not in (None, constants.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT):
        return False
    return record.stats != before.stats


class Destination:
    """Looks at the guest on the destination through a URI this process can open.

    ``uri`` None: the caller gave no way to reach it, and nothing is asked.
    Every look opens a fresh connection, closed after it, and is bounded by
    :data:`DEST_TIMEOUT` (a look that hangs closes its connection when it ends).
    """

    def __init__(self, connect: Callable[[str], Any], uri: str | None, uuid: str):
        self._connect, self.uri, self._uuid = connect, uri, uuid

    def facts(self) -> DestFacts:
        if not self.uri:
            return DestFacts()
        finished, result = concurrency.call_with_timeout(self._look, DEST_TIMEOUT,
                                                         "migrator-dest-state")
        if not finished or not isinstance(result, DestFacts):
            return DestFacts(asked=True)
        return result

    def _look(self) -> DestFacts:
        with contextlib.closing(self._connect(self.uri)) as conn:  # type: ignore[arg-type]
            try:
                state, reason = conn.lookupByUUIDString(self._uuid).state()[:2]
            except Exception as exc:  # noqa: BLE001 - libvirtError
                if error_code(exc) == constants.VIR_ERR_NO_DOMAIN:
                    return DestFacts(asked=True, reachable=True)
                raise
        return DestFacts(True, True, True, state, reason)

    def lacks_guest(self) -> bool:
        """True when the destination answered and does not run the guest."""
        return dest_lacks_guest(self.facts())

    def downtime_ms(self) -> int | None:
        """The actual downtime, from the destination's completed-job stats (best effort)."""
        if not self.uri:
            return None

        def read() -> int | None:
            with contextlib.closing(self._connect(self.uri)) as conn:  # type: ignore[arg-type]
                dom = conn.lookupByUUIDString(self._uuid)
                stats = dom.jobStats(constants.VIR_DOMAIN_JOB_STATS_COMPLETED)
            value = stats.get("downtime") if stats else None
            return int(value) if value is not None else None

        finished, result = concurrency.call_with_timeout(read, DEST_TIMEOUT, "migrator-downtime")
        return result if finished and not isinstance(result, BaseException) else None


GONE = object()  # the guest's domain no longer exists on the source


class SourceView:
    """Fresh looks at the guest on the source, for decisions after the job ended.

    Each look opens a new connection (the old ones may have died with the link
    or a daemon restart) and closes it afterwards.
    """

    def __init__(self, connect: Callable[[str], Any], uri: str, uuid: str):
        self._connect, self._uri, self._uuid = connect, uri, uuid

    @contextlib.contextmanager
    def looking(self) -> Iterator[Any]:
        """The guest on the source while the block runs; :data:`GONE` if undefined,
        None when unreachable."""
        try:
            conn = self._connect(self._uri)
        except Exception:  # noqa: BLE001 - unreachable for now
            yield None
            return
        with contextlib.closing(conn):
            try:
                dom = concurrency.blocking(conn.lookupByUUIDString(self._uuid))
            except Exception as exc:  # noqa: BLE001
                dom = GONE if error_code(exc) == constants.VIR_ERR_NO_DOMAIN else None
            yield dom

    def moved(self) -> bool:
        """The guest has left the source (undefined, or shut off by migration).

        Used after the switch to post-copy only: the guest already runs on the
        destination then, so the source letting go means the post-copy finished.
        """
        facts = self.facts()
        return facts.reachable and (not facts.exists or (
            facts.state == constants.VIR_DOMAIN_SHUTOFF
            and facts.reason == constants.VIR_DOMAIN_SHUTOFF_MIGRATED))

    def facts(self) -> SourceFacts:
        with self.looking() as dom:
            if dom is GONE:
                return SourceFacts(exists=False)
            if dom is None:
                return UNREACHABLE
            return read_source(dom, lambda sample: True)

    def undefine_leftover(self) -> str | None:
        """Remove a definition shut off by *our* migration; a note saying what was done."""
        with self.looking() as dom:
            if dom is None or dom is GONE:
                return None
            try:
                state, reason = dom.state()[:2]
                if (state == constants.VIR_DOMAIN_SHUTOFF
                        and reason == constants.VIR_DOMAIN_SHUTOFF_MIGRATED):
                    dom.undefine()
                    return ("removed the source's shut-off definition of the migrated guest "
                            "(libvirt finished the job without the client)")
            except Exception as exc:  # noqa: BLE001 - best effort; say so
                return f"could not remove the source's leftover definition: {exc}"
        return None


def close_all(conns: list[Any]) -> None:
    for conn in conns:
        with contextlib.suppress(Exception):
            conn.close()
    conns.clear()
