"""Where did the guest go?  Facts in, a verdict out: the outcome's classification.

Pure: no libvirt, no clock, no I/O.  The monitor gathers the facts
(:mod:`migrator.facts`) and records what it did (:class:`Conduct`); this
module decides, by the first rule of :data:`RULES` that applies, whether the
migration is settled (and how), whether a job of ours still runs and must be
followed, or whether the facts cannot be had yet (a daemon unreachable, a
hand-over in progress) and the monitor must wait and look again.

The principle (DESIGN.md, 4 and 5): the guest's whereabouts are established,
never inferred.  ``completed`` needs the destination to run the guest, or the
source to show it handed the guest over; ``failed`` / ``cancelled`` /
``timed_out`` / ``stalled`` need the source to run it with no job left.  A
verdict that cannot be established before the monitor's bound runs out is
``unknown``: the caller must not roll back.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from migrator import constants
from migrator import outcome as o

RUNNING_JOBS = (constants.VIR_DOMAIN_JOB_BOUNDED, constants.VIR_DOMAIN_JOB_UNBOUNDED)
# A current job of these types is on its way out (libvirt shows CANCELLED while it cancels).
ENDING_JOBS = (constants.VIR_DOMAIN_JOB_COMPLETED, constants.VIR_DOMAIN_JOB_FAILED,
               constants.VIR_DOMAIN_JOB_CANCELLED)


class CallEnd(enum.Enum):
    """How our ``migrateToURI3`` call ended."""

    NONE = "none"  # never made: cancelled or refused before it, or a re-attached job
    PENDING = "pending"  # it has not returned
    OK = "ok"  # it returned 0
    ERROR = "error"  # it raised


class AbortBy(enum.StrEnum):
    """Who asked for the abort that ended the job (decides the status)."""

    USER = "user"  # abort(): cancelled
    TIMEOUT = "timeout"  # the completion timeout: timed_out
    POLICY = "policy"  # the policy gave up on a migration that cannot converge: stalled
    MONITOR = "monitor"  # the monitor could not follow the job: failed


@dataclass
class Conduct:
    """What this driver did and asked for: the monitor's whole record, as plain data."""

    call: CallEnd = CallEnd.PENDING
    call_error: str | None = None
    call_code: int | None = None
    call_lost: bool = False  # it raised because the connection dropped: the job may go on
    reattached: bool = False  # following a job started before a restart (no call to read)
    refused: str | None = None  # why the job was not started although it was due
    cancelled_before_start: bool = False
    seen_running: bool = False  # a running sample of our job was read
    post_copy: bool = False  # the job switched to post-copy
    suspended: bool = False  # we paused the guest to force completion
    abort_by: AbortBy | None = None
    abort_reason: str | None = None
    abort_accepted: bool = False
    monitor_error: str | None = None
    persistent: bool = True  # the guest was persistent on the source when the job started
    undefine_source: bool = True  # our flags undefine the source once the guest moved


@dataclass(frozen=True)
class SourceFacts:
    """The guest on the source, as its libvirt shows it now."""

    reachable: bool = True
    exists: bool = True  # False: NO_DOMAIN
    state: int | None = None
    reason: int | None = None
    job: int | None = None  # the current job's type; None: could not be read
    job_ours: bool = True  # a running job started after our call (or is the re-attached one)
    last_job: int | None = None  # the last completed job's type, as libvirt kept it
    last_error: str | None = None  # and its error message
    last_ours: bool = False  # that record is our job's: it appeared after our call

    @property
    def job_running(self) -> bool:
        return self.reachable and self.job in RUNNING_JOBS


@dataclass(frozen=True)
class DestFacts:
    """The guest on the destination (``asked`` False: the caller gave no way to look)."""

    asked: bool = False
    reachable: bool = False
    exists: bool = False
    state: int | None = None
    reason: int | None = None


UNREACHABLE = SourceFacts(reachable=False)
NOT_ASKED = DestFacts()


@dataclass(frozen=True)
class Facts:
    conduct: Conduct
    source: SourceFacts
    dest: DestFacts = NOT_ASKED
    out_of_time: bool = False  # the monitor's bound on waiting for facts has run out
    waited: float = 0.0  # seconds spent waiting for facts so far


class Next(enum.Enum):
    SETTLE = "settle"  # the status is established
    FOLLOW = "follow"  # a job of ours runs and can be read: follow it (again)
    WAIT = "wait"  # the facts cannot be had yet: look again later


@dataclass(frozen=True)
class Verdict:
    rule: str
    next: Next
    status: str | None = None
    reason: str = ""
    error: str | None = None


@dataclass(frozen=True)
class Rule:
    """One row of the table: when it applies, and the verdict."""

    id: str
    text: str
    applies: Callable[[Facts], bool]
    verdict: Callable[[Facts], Verdict]


# -- what the facts show -------------------------------------------------------------------


def _paused_for(src: SourceFacts | DestFacts, *reasons: int) -> bool:
    return src.state == constants.VIR_DOMAIN_PAUSED and src.reason in reasons


def source_runs_guest(src: SourceFacts) -> bool:
    """The source's copy is the live guest: active, not handed over nor handing over."""
    if not (src.reachable and src.exists) or src.state in (None, constants.VIR_DOMAIN_SHUTOFF):
        return False
    return not _paused_for(src, constants.VIR_DOMAIN_PAUSED_MIGRATION,
                           constants.VIR_DOMAIN_PAUSED_POSTCOPY,
                           constants.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED)


def source_let_go(src: SourceFacts) -> bool:
    """The source no longer has the guest: undefined, or shut off by migration."""
    if not src.reachable:
        return False
    return not src.exists or (src.state == constants.VIR_DOMAIN_SHUTOFF
                              and src.reason == constants.VIR_DOMAIN_SHUTOFF_MIGRATED)


def dest_runs_guest(dst: DestFacts) -> bool:
    """The destination runs the guest on its own (incoming and post-copy are over)."""
    if not (dst.asked and dst.reachable and dst.exists) or dst.state in (
        None, constants.VIR_DOMAIN_SHUTOFF
    ):
        return False
    return not (_paused_for(dst, constants.VIR_DOMAIN_PAUSED_MIGRATION)
                or dst.reason in _POST_COPY_DEST_REASONS)


def dest_lacks_guest(dst: DestFacts) -> bool:
    """The destination answered, and it does not run the guest."""
    return dst.asked and dst.reachable and (not dst.exists or dst.state in (
        None, constants.VIR_DOMAIN_SHUTOFF))


_POST_COPY_DEST_REASONS = (constants.VIR_DOMAIN_RUNNING_POSTCOPY,
                           constants.VIR_DOMAIN_RUNNING_POSTCOPY_FAILED)


def _post_copy_broken(f: Facts) -> bool:
    dst = f.dest
    return _paused_for(f.source, constants.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED) or (
        dst.asked and dst.reachable and dst.exists
        and dst.reason == constants.VIR_DOMAIN_RUNNING_POSTCOPY_FAILED
        and dst.state == constants.VIR_DOMAIN_RUNNING)


def _in_post_copy(f: Facts) -> bool:
    dst = f.dest
    return _paused_for(f.source, constants.VIR_DOMAIN_PAUSED_POSTCOPY) or (
        dst.reachable and dst.state == constants.VIR_DOMAIN_RUNNING
        and dst.reason == constants.VIR_DOMAIN_RUNNING_POSTCOPY)


def _our_job_ran(k: Conduct) -> bool:
    return k.seen_running or k.reattached or k.call is CallEnd.OK


def _handed_over_by_libvirt(f: Facts) -> bool:
    """libvirt itself says our job moved the guest: our call returned 0, or the
    source shut the guest off by migration after our job ran."""
    src = f.source
    if f.conduct.call is CallEnd.OK:
        return True
    # SHUTOFF/MIGRATED is libvirt's own word that the guest migrated; the definition
    # cannot be stale: the guest ran when our job started (startup.check_startable)
    return _our_job_ran(f.conduct) and src.exists and src.state == constants.VIR_DOMAIN_SHUTOFF


def _undefined_by_our_migration(f: Facts) -> bool:
    """Our job ran and the persistent guest is gone from the source: libvirt's
    Confirm phase undefines it (UNDEFINE_SOURCE) only after the destination took it."""
    k = f.conduct
    return (not f.source.exists and k.persistent and k.undefine_source
            and _our_job_ran(k))


# -- verdicts ---------------------------------------------------------------------------------


def _settle(rule: str, status: str, reason: str, error: str | None = None) -> Verdict:
    return Verdict(rule, Next.SETTLE, status, reason, error)


def _stayed(f: Facts, rule: str = "source-runs") -> Verdict:
    """The job is over and the source runs the guest: which of the rollback-safe four."""
    k = f.conduct
    error = k.call_error or f.source.last_error
    if k.refused:
        return _settle(rule, o.FAILED, "the migration was refused before it started", k.refused)
    by = k.abort_by
    if by is AbortBy.TIMEOUT:
        return _settle(rule, o.TIMED_OUT, "the completion timeout aborted the job",
                       error or k.abort_reason)
    if by is AbortBy.POLICY:
        return _settle(rule, o.STALLED, "the policy ended a migration that could not "
                       "converge", f"aborted early: {k.abort_reason}")
    if by is AbortBy.MONITOR:
        return _settle(rule, o.FAILED, "the monitor could not follow the job and "
                       "aborted it", error or k.monitor_error)
    cancelled = _our_record(f.source, constants.VIR_DOMAIN_JOB_CANCELLED)
    if by is AbortBy.USER or k.call_code == constants.VIR_ERR_OPERATION_ABORTED or cancelled:
        why = "cancelled by abort()" if by else "the job was cancelled outside migrator"
        return _settle(rule, o.CANCELLED, why, error)
    if k.call is CallEnd.OK and _our_record(f.source, constants.VIR_DOMAIN_JOB_FAILED):
        return _settle(rule, o.FAILED, "migrateToURI3 returned 0, but libvirt's record of our "
                       "job says it failed; the source runs the guest",
                       error or "the migration job failed")
    if k.call is CallEnd.OK:
        return _settle(rule, o.FAILED, "migrateToURI3 returned success, but the guest "
                       "still runs on the source and no job is left",
                       "libvirt reported success but nothing moved")
    return _settle(rule, o.FAILED, "the job ended and the source runs the guest", error)


def _our_record(src: SourceFacts, *kinds: int) -> bool:
    """libvirt kept the record of our finished job, of one of these types."""
    return src.reachable and src.last_ours and src.last_job in kinds


def _record_settles(f: Facts) -> bool:
    """Our job's record settles it while the source still runs the guest: COMPLETED
    after our call returned 0, the destination not contradicting (not asked, or it
    runs the guest); FAILED or CANCELLED while libvirt still shows the job ending."""
    k, src = f.conduct, f.source
    if not source_runs_guest(src) or k.call is CallEnd.PENDING:
        return False
    if _our_record(src, constants.VIR_DOMAIN_JOB_COMPLETED):
        return k.call is CallEnd.OK and (not f.dest.asked or dest_runs_guest(f.dest))
    return (_our_record(src, constants.VIR_DOMAIN_JOB_FAILED, constants.VIR_DOMAIN_JOB_CANCELLED)
            and src.job in ENDING_JOBS)


def _by_record(f: Facts) -> Verdict:
    if f.source.last_job == constants.VIR_DOMAIN_JOB_COMPLETED:
        return _settle("libvirt-completed-record", o.COMPLETED,
                       "libvirt's record of our job says it completed")
    return _stayed(f, "libvirt-completed-record")


def _left_source(f: Facts) -> Verdict:
    if dest_lacks_guest(f.dest):
        return _settle("left-source-not-on-destination", o.UNKNOWN,
                       "the guest left the source but the destination does not run it",
                       "the guest is on neither host as far as libvirt shows; another job may "
                       "have moved it elsewhere")
    if _handed_over_by_libvirt(f):
        return _settle("source-handed-over", o.COMPLETED,
                       "libvirt reported the hand-over and the source let the guest go")
    if _undefined_by_our_migration(f) and not f.dest.asked:
        return _settle("source-undefined", o.COMPLETED,
                       "the source undefined the guest after our job ran (libvirt does that "
                       "only once the destination runs it)")
    if f.dest.asked and not f.dest.reachable:
        return Verdict("left-source-destination-unreachable", Next.WAIT, None,
                       "the guest left the source; waiting to ask the destination")
    if f.conduct.call is CallEnd.PENDING:
        return Verdict("left-source-call-pending", Next.WAIT, None,
                       "the guest left the source; waiting for migrateToURI3 to return")
    return _settle("left-source-unexplained", o.UNKNOWN,
                   "the guest left the source, but neither libvirt nor the destination "
                   "confirms it arrived", "its whereabouts could not be established")


def _wait(rule: str, reason: str) -> Callable[[Facts], Verdict]:
    return lambda f: Verdict(rule, Next.WAIT, None, reason)


def _follow(rule: str, reason: str) -> Callable[[Facts], Verdict]:
    return lambda f: Verdict(rule, Next.FOLLOW, None, reason)


def _not_started(f: Facts) -> Verdict:
    if f.conduct.cancelled_before_start:
        return _settle("not-started", o.CANCELLED, "cancelled before the job started",
                       "cancelled before the migration started")
    return _settle("not-started", o.FAILED, "the job never started", f.conduct.refused)


def _job_over(f: Facts) -> bool:
    """No job runs: libvirt says so, or our call ended with the job's own error (it
    returns only once the job is over, unless the connection dropped)."""
    k = f.conduct
    return f.source.job == constants.VIR_DOMAIN_JOB_NONE or (
        f.source.job is None and k.call is CallEnd.ERROR and not k.call_lost)


def _both_run(f: Facts) -> bool:
    """Both copies run (a paused source next to a running destination is a hand-over)."""
    return dest_runs_guest(f.dest) and source_runs_guest(f.source) and (
        f.source.state == constants.VIR_DOMAIN_RUNNING)


RULES: tuple[Rule, ...] = (
    Rule("not-started", "No call was made (cancelled in the queue or before the call): "
         "nothing moved.",
         lambda f: f.conduct.call is CallEnd.NONE and not f.conduct.reattached
         and not f.conduct.refused,
         _not_started),
    Rule("post-copy-broken", "The source is paused with POSTCOPY_FAILED (or the destination "
         "runs with it): the guest runs on the destination, part of its memory on the source.",
         _post_copy_broken,
         lambda f: _settle("post-copy-broken", o.POSTCOPY_FAILED,
                           "post-copy failed after the switch; the guest runs on the destination",
                           f.conduct.call_error or f.source.last_error)),
    Rule("both-run", "Both hosts run the guest: never settled as either.",
         _both_run,
         lambda f: _settle("both-run", o.UNKNOWN, "both hosts show the guest running",
                           "the source and the destination both run the guest")),
    Rule("destination-runs", "The destination runs the guest on its own: completed.",
         lambda f: dest_runs_guest(f.dest),
         lambda f: _settle("destination-runs", o.COMPLETED, "the destination runs the guest")),
    Rule("post-copy-running", "The job is in post-copy: follow it (or wait to see it again).",
         _in_post_copy,
         lambda f: Verdict("post-copy-running",
                           Next.FOLLOW if f.source.job_running else Next.WAIT, None,
                           "the job is in post-copy; the guest runs on the destination")),
    Rule("source-unreachable", "The source's libvirt cannot be asked: wait.",
         lambda f: not f.source.reachable,
         _wait("source-unreachable", "the source's libvirt cannot be reached; a peer-to-peer "
               "job goes on without the client")),
    Rule("foreign-job", "A job migrator did not start runs on the domain: never touched; "
         "wait for it to end.",
         lambda f: f.source.job_running and not f.source.job_ours,
         _wait("foreign-job", "a job migrator did not start runs on the domain")),
    Rule("job-running", "Our job still runs in libvirt: follow it.",
         lambda f: f.source.job_running,
         _follow("job-running", "the job goes on in libvirt")),
    Rule("libvirt-completed-record", "libvirt kept the record of our finished job (it "
         "appeared after our call) and the source still runs the guest: COMPLETED, with "
         "migrateToURI3 returned 0 and the destination not contradicting (not asked, or it "
         "runs the guest), is completed; FAILED or CANCELLED, while libvirt still shows the job "
         "ending, is one of the rollback-safe four as for source-runs. A source still running "
         "next to a COMPLETED record is seen only in Nova's test fake (its job completes without "
         "stopping the guest); real libvirt stops the source in its Confirm phase, and the "
         "left-source rules settle that.",
         _record_settles, _by_record),
    Rule("job-ending", "libvirt still shows the job, ending (completed, failed or cancelled "
         "but not gone): wait.",
         lambda f: f.source.reachable and f.source.job in ENDING_JOBS,
         _wait("job-ending", "the job is ending")),
    Rule("handing-over", "The source is paused by the migration: the hand-over is under way.",
         lambda f: _paused_for(f.source, constants.VIR_DOMAIN_PAUSED_MIGRATION),
         _wait("handing-over", "the source is paused for the hand-over")),
    Rule("left-source", "The guest left the source: completed only if the destination runs "
         "it, or libvirt itself reported the hand-over, or (no way to ask the destination) "
         "libvirt undefined the persistent guest after our job ran.",
         lambda f: source_let_go(f.source), _left_source),
    Rule("call-pending", "migrateToURI3 has not returned and the job cannot be seen: wait.",
         lambda f: f.conduct.call is CallEnd.PENDING,
         _wait("call-pending", "migrateToURI3 has not returned")),
    Rule("source-runs", "The job is over and the source runs the guest: failed, cancelled, "
         "timed out or stalled, by who asked for the abort.",
         lambda f: source_runs_guest(f.source) and _job_over(f), _stayed),
    Rule("source-stopped", "The guest stopped on the source for another reason than the "
         "migration: it runs nowhere; failed.",
         lambda f: f.source.exists and f.source.state == constants.VIR_DOMAIN_SHUTOFF,
         lambda f: _settle("source-stopped", o.FAILED, "the guest stopped on the source "
                           f"(shut off, reason {f.source.reason}) and runs nowhere",
                           f.conduct.call_error or "the guest stopped on the source")),
    Rule("undetermined", "Anything else: wait for clearer facts.",
         lambda f: True, _wait("undetermined", "libvirt does not show where the guest runs")),
)


# The service stopped (cleanup_host) while the job ran: it goes on inside libvirt.
SERVICE_STOPPED = Verdict(
    "service-stopped", Next.SETTLE, o.UNKNOWN,
    "the service stopped while the job ran; it goes on inside libvirt",
    "the service stopped while the migration ran and the job goes on inside libvirt: do not "
    "roll back; re-attach it after the restart (LiveMigrationDriver.reattach) to see it "
    "settle, or check which host runs the guest")


def classify(facts: Facts) -> Verdict:
    """The verdict of the first rule that applies; a wait past the bound is ``unknown``."""
    for rule in RULES:
        if rule.applies(facts):
            verdict = rule.verdict(facts)
            if verdict.next is not Next.WAIT or not facts.out_of_time:
                return verdict
            return give_up(verdict, facts.waited)
    raise AssertionError("the last rule always applies")


def give_up(verdict: Verdict, waited: float) -> Verdict:
    """``unknown``, saying what could not be established and what to check."""
    return _settle(verdict.rule, o.UNKNOWN,
                   f"{verdict.reason}; not established within {waited:.0f} s",
                   f"where the guest runs could not be established ({verdict.reason}): "
                   "do not roll back; check which host runs it (virsh domstate on both) and "
                   "whether a migration job is left (virsh domjobinfo on the source)")


def mode_of(status: str, conduct: Conduct) -> str | None:
    """How the guest crossed over: post-copy, paused (force-complete) or pre-copy."""
    if status == o.POSTCOPY_FAILED:
        return o.MODE_POST_COPY
    if status != o.COMPLETED:
        return None
    if conduct.post_copy:
        return o.MODE_POST_COPY
    return o.MODE_PAUSED if conduct.suspended else o.MODE_PRE_COPY
