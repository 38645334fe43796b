"""The outcome's classification, case by case: facts in, a verdict out (no libvirt, no clock).

One case per row of the table (``classify.RULES``), plus the cases each rule must *not*
take; the last test checks that every rule has a case here.
"""

from __future__ import annotations

import pytest

from migrator import constants as c
from migrator.classify import (
    NOT_ASKED,
    RULES,
    UNREACHABLE,
    AbortBy,
    CallEnd,
    Conduct,
    DestFacts,
    Facts,
    Next,
    SourceFacts,
    classify,
    mode_of,
)

NONE, RUNNING_JOB = c.VIR_DOMAIN_JOB_NONE, c.VIR_DOMAIN_JOB_UNBOUNDED
RUNS = SourceFacts(state=c.VIR_DOMAIN_RUNNING, reason=c.VIR_DOMAIN_RUNNING_BOOTED, job=NONE)
MIGRATING = SourceFacts(state=c.VIR_DOMAIN_RUNNING, reason=1, job=RUNNING_JOB)
FOREIGN = SourceFacts(state=c.VIR_DOMAIN_RUNNING, reason=1, job=RUNNING_JOB, job_ours=False)
GONE = SourceFacts(exists=False)
SHUT_OFF_MIGRATED = SourceFacts(state=c.VIR_DOMAIN_SHUTOFF, reason=c.VIR_DOMAIN_SHUTOFF_MIGRATED,
                                job=NONE)
HANDING_OVER = SourceFacts(state=c.VIR_DOMAIN_PAUSED, reason=c.VIR_DOMAIN_PAUSED_MIGRATION)
POST_COPY = SourceFacts(state=c.VIR_DOMAIN_PAUSED, reason=c.VIR_DOMAIN_PAUSED_POSTCOPY,
                        job=RUNNING_JOB)
POST_COPY_BROKEN = SourceFacts(state=c.VIR_DOMAIN_PAUSED,
                               reason=c.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED, job=RUNNING_JOB)
CRASHED = SourceFacts(state=c.VIR_DOMAIN_SHUTOFF, reason=c.VIR_DOMAIN_SHUTOFF_DESTROYED, job=NONE)


def record(kind, ours=True, job=None, **source):
    """The source still runs the guest next to libvirt's record of a finished job (as
    Nova's test fake shows it: its current job keeps the final type unless ``job``)."""
    return SourceFacts(state=c.VIR_DOMAIN_RUNNING, reason=c.VIR_DOMAIN_RUNNING_BOOTED,
                       job=kind if job is None else job, last_job=kind, last_ours=ours,
                       **source)


COMPLETED_REC, FAILED_REC = c.VIR_DOMAIN_JOB_COMPLETED, c.VIR_DOMAIN_JOB_FAILED
CANCELLED_REC = c.VIR_DOMAIN_JOB_CANCELLED

DEST_RUNS = DestFacts(True, True, True, c.VIR_DOMAIN_RUNNING, c.VIR_DOMAIN_RUNNING_MIGRATED)
DEST_INCOMING = DestFacts(True, True, True, c.VIR_DOMAIN_PAUSED, c.VIR_DOMAIN_PAUSED_MIGRATION)
DEST_EMPTY = DestFacts(asked=True, reachable=True)
DEST_DOWN = DestFacts(asked=True)
DEST_POST_COPY_BROKEN = DestFacts(True, True, True, c.VIR_DOMAIN_RUNNING,
                                  c.VIR_DOMAIN_RUNNING_POSTCOPY_FAILED)

SOCKET_CLOSED = dict(call=CallEnd.ERROR, call_error="client socket is closed",
                     call_code=c.VIR_ERR_INTERNAL_ERROR, call_lost=True)
JOB_FAILED = dict(call=CallEnd.ERROR, call_error="job failed",
                  call_code=c.VIR_ERR_OPERATION_FAILED)
ABORTED = dict(call=CallEnd.ERROR, call_error="operation aborted",
               call_code=c.VIR_ERR_OPERATION_ABORTED)


def verdict(source, dest=NOT_ASKED, out_of_time=False, **conduct):
    conduct.setdefault("seen_running", True)
    return classify(Facts(Conduct(**conduct), source, dest, out_of_time, 42.0))


# (id, facts -> expected rule, next, status)
CASES = [
    # nothing was started
    ("queued cancel", dict(source=UNREACHABLE, call=CallEnd.NONE, cancelled_before_start=True),
     "not-started", Next.SETTLE, "cancelled"),
    # completed: libvirt said so and the source agrees, or the destination runs it
    ("returned 0, source undefined", dict(source=GONE, call=CallEnd.OK),
     "source-handed-over", Next.SETTLE, "completed"),
    ("returned 0, destination runs it", dict(source=GONE, dest=DEST_RUNS, call=CallEnd.OK),
     "destination-runs", Next.SETTLE, "completed"),
    ("cut, persistent guest undefined by our job", dict(source=GONE, **SOCKET_CLOSED),
     "source-undefined", Next.SETTLE, "completed"),
    ("cut, shut off by our migration", dict(source=SHUT_OFF_MIGRATED, **SOCKET_CLOSED),
     "source-handed-over", Next.SETTLE, "completed"),
    ("cut, source unreachable, destination runs it",
     dict(source=UNREACHABLE, dest=DEST_RUNS, **SOCKET_CLOSED),
     "destination-runs", Next.SETTLE, "completed"),
    ("paused source (forced), destination runs it",
     dict(source=HANDING_OVER, dest=DEST_RUNS, **SOCKET_CLOSED),
     "destination-runs", Next.SETTLE, "completed"),
    # libvirt's record of our job, the source still running the guest (Nova's test fake)
    ("returned 0, our record completed", dict(source=record(COMPLETED_REC), call=CallEnd.OK),
     "libvirt-completed-record", Next.SETTLE, "completed"),
    ("returned 0, our record completed, no current job",
     dict(source=record(COMPLETED_REC, job=NONE), call=CallEnd.OK, seen_running=False),
     "libvirt-completed-record", Next.SETTLE, "completed"),
    ("returned 0, our record failed", dict(source=record(FAILED_REC), call=CallEnd.OK),
     "libvirt-completed-record", Next.SETTLE, "failed"),
    ("returned 0, our record cancelled", dict(source=record(CANCELLED_REC), call=CallEnd.OK),
     "libvirt-completed-record", Next.SETTLE, "cancelled"),
    ("record completed but stale (an earlier job's), no current job",
     dict(source=record(COMPLETED_REC, ours=False, job=NONE), call=CallEnd.OK),
     "source-runs", Next.SETTLE, "failed"),
    ("record completed but stale, libvirt still shows it as the job",
     dict(source=record(COMPLETED_REC, ours=False), call=CallEnd.OK),
     "job-ending", Next.WAIT, None),
    ("returned 0, no record appeared", dict(source=RUNS, call=CallEnd.OK, seen_running=False),
     "source-runs", Next.SETTLE, "failed"),
    ("our record completed but the call raised",
     dict(source=record(COMPLETED_REC), **JOB_FAILED), "job-ending", Next.WAIT, None),
    ("our record completed but the call is pending",
     dict(source=record(COMPLETED_REC), call=CallEnd.PENDING), "job-ending", Next.WAIT, None),
    ("our record completed, the destination answers without the guest",
     dict(source=record(COMPLETED_REC), dest=DEST_EMPTY, call=CallEnd.OK),
     "job-ending", Next.WAIT, None),
    ("our record completed, the destination runs the guest too",
     dict(source=record(COMPLETED_REC), dest=DEST_RUNS, call=CallEnd.OK),
     "both-run", Next.SETTLE, "unknown"),
    ("our record failed, the call's own error ended it, no current job",
     dict(source=record(FAILED_REC, job=NONE), **JOB_FAILED),
     "source-runs", Next.SETTLE, "failed"),
    ("our record completed, shut off by our migration",
     dict(source=SourceFacts(state=c.VIR_DOMAIN_SHUTOFF, reason=c.VIR_DOMAIN_SHUTOFF_MIGRATED,
                             job=NONE, last_job=COMPLETED_REC, last_ours=True),
          call=CallEnd.OK),
     "source-handed-over", Next.SETTLE, "completed"),
    # left the source, not established as arrived
    ("gone, destination answers without it", dict(source=GONE, dest=DEST_EMPTY, call=CallEnd.OK),
     "left-source-not-on-destination", Next.SETTLE, "unknown"),
    ("gone, destination unreachable", dict(source=GONE, dest=DEST_DOWN, **SOCKET_CLOSED),
     "left-source-destination-unreachable", Next.WAIT, None),
    ("gone while the call is pending", dict(source=GONE, call=CallEnd.PENDING,
                                            seen_running=False),
     "left-source-call-pending", Next.WAIT, None),
    ("transient guest gone after a cut", dict(source=GONE, persistent=False, **SOCKET_CLOSED),
     "left-source-unexplained", Next.SETTLE, "unknown"),
    ("gone although our job never ran (another one moved it)",
     dict(source=GONE, seen_running=False, **JOB_FAILED),
     "left-source-unexplained", Next.SETTLE, "unknown"),
    ("shut off by migration, our job never ran (a stale definition)",
     dict(source=SHUT_OFF_MIGRATED, seen_running=False, **JOB_FAILED),
     "left-source-unexplained", Next.SETTLE, "unknown"),
    # the job is over and the source runs the guest: which of the four
    ("job failed", dict(source=RUNS, **JOB_FAILED), "source-runs", Next.SETTLE, "failed"),
    ("user abort", dict(source=RUNS, abort_by=AbortBy.USER, **ABORTED),
     "source-runs", Next.SETTLE, "cancelled"),
    ("aborted outside migrator", dict(source=RUNS, **ABORTED),
     "source-runs", Next.SETTLE, "cancelled"),
    ("completion timeout", dict(source=RUNS, abort_by=AbortBy.TIMEOUT, **ABORTED),
     "source-runs", Next.SETTLE, "timed_out"),
    ("policy stall", dict(source=RUNS, abort_by=AbortBy.POLICY, abort_reason="stalled",
                          **ABORTED), "source-runs", Next.SETTLE, "stalled"),
    ("monitor failure", dict(source=RUNS, abort_by=AbortBy.MONITOR, **ABORTED),
     "source-runs", Next.SETTLE, "failed"),
    ("returned 0 but nothing moved", dict(source=RUNS, call=CallEnd.OK),
     "source-runs", Next.SETTLE, "failed"),
    ("job unreadable, the call's own error ended it",
     dict(source=SourceFacts(state=c.VIR_DOMAIN_RUNNING, reason=1, job=None), **JOB_FAILED),
     "source-runs", Next.SETTLE, "failed"),
    ("refused at the start, another job ended and the guest stayed",
     dict(source=RUNS, call=CallEnd.NONE, refused="it has a job", seen_running=False),
     "source-runs", Next.SETTLE, "failed"),
    ("stopped for another reason", dict(source=CRASHED, **JOB_FAILED),
     "source-stopped", Next.SETTLE, "failed"),
    # the job still runs, or cannot be seen
    ("cut, job goes on", dict(source=MIGRATING, **SOCKET_CLOSED),
     "job-running", Next.FOLLOW, None),
    ("another job runs", dict(source=FOREIGN, **JOB_FAILED), "foreign-job", Next.WAIT, None),
    ("source unreachable", dict(source=UNREACHABLE, **SOCKET_CLOSED),
     "source-unreachable", Next.WAIT, None),
    ("source unreachable, destination has it incoming",
     dict(source=UNREACHABLE, dest=DEST_INCOMING, **SOCKET_CLOSED),
     "source-unreachable", Next.WAIT, None),
    ("cancelling", dict(source=SourceFacts(state=c.VIR_DOMAIN_RUNNING, reason=1,
                                           job=c.VIR_DOMAIN_JOB_CANCELLED),
                        abort_by=AbortBy.USER, **SOCKET_CLOSED),
     "job-ending", Next.WAIT, None),
    ("hand-over under way", dict(source=HANDING_OVER, **SOCKET_CLOSED),
     "handing-over", Next.WAIT, None),
    ("call pending, no job yet", dict(source=RUNS, call=CallEnd.PENDING, seen_running=False),
     "call-pending", Next.WAIT, None),
    ("cut, job type unreadable", dict(source=SourceFacts(state=c.VIR_DOMAIN_RUNNING, reason=1,
                                                         job=None), **SOCKET_CLOSED),
     "undetermined", Next.WAIT, None),
    # post-copy
    ("post-copy goes on", dict(source=POST_COPY, **SOCKET_CLOSED),
     "post-copy-running", Next.FOLLOW, None),
    ("post-copy, source unreadable", dict(source=SourceFacts(
        state=c.VIR_DOMAIN_PAUSED, reason=c.VIR_DOMAIN_PAUSED_POSTCOPY, job=None),
        **SOCKET_CLOSED), "post-copy-running", Next.WAIT, None),
    ("post-copy broken (source)", dict(source=POST_COPY_BROKEN, **SOCKET_CLOSED),
     "post-copy-broken", Next.SETTLE, "postcopy_failed"),
    ("post-copy broken (destination), source unreachable",
     dict(source=UNREACHABLE, dest=DEST_POST_COPY_BROKEN, **SOCKET_CLOSED),
     "post-copy-broken", Next.SETTLE, "postcopy_failed"),
    # never both
    ("both run", dict(source=RUNS, dest=DEST_RUNS, **JOB_FAILED),
     "both-run", Next.SETTLE, "unknown"),
]


@pytest.mark.parametrize(("facts", "rule", "next_", "status"),
                         [c_[1:] for c_ in CASES], ids=[c_[0] for c_ in CASES])
def test_case(facts, rule, next_, status):
    got = verdict(**facts)
    assert (got.rule, got.next, got.status) == (rule, next_, status), got


def _first_rule(facts: dict) -> str:
    facts = dict(facts)
    source, dest = facts.pop("source"), facts.pop("dest", NOT_ASKED)
    facts.setdefault("seen_running", True)
    f = Facts(Conduct(**facts), source, dest)
    return next(rule.id for rule in RULES if rule.applies(f))


def test_every_rule_has_a_case():
    covered = {_first_rule(case[1]) for case in CASES}
    ids = {rule.id for rule in RULES}
    assert ids - covered == set(), "rules without a case in this table"


@pytest.mark.parametrize("source", [UNREACHABLE, FOREIGN, HANDING_OVER])
def test_a_wait_past_the_bound_is_unknown_and_says_what_to_check(source):
    got = verdict(source, out_of_time=True, **SOCKET_CLOSED)
    assert got.next is Next.SETTLE and got.status == "unknown"
    assert "not established within 42 s" in got.reason
    assert "do not roll back" in got.error and "virsh domstate" in got.error


def test_a_followed_job_is_never_given_up_by_the_table():
    assert verdict(MIGRATING, out_of_time=True, **SOCKET_CLOSED).next is Next.FOLLOW


def test_errors_name_what_happened():
    assert verdict(RUNS, **JOB_FAILED).error == "job failed"
    stalled = verdict(RUNS, abort_by=AbortBy.POLICY, abort_reason="no progress", **ABORTED)
    assert stalled.error == "aborted early: no progress"
    assert "nothing moved" in verdict(RUNS, call=CallEnd.OK).error
    assert verdict(record(FAILED_REC), call=CallEnd.OK).error == "the migration job failed"
    failed = verdict(record(FAILED_REC, last_error="disk full"), call=CallEnd.OK)
    assert failed.error == "disk full" and "record of our job says it failed" in failed.reason


def test_the_completed_record_rule_says_where_a_running_source_comes_from():
    (rule,) = [r for r in RULES if r.id == "libvirt-completed-record"]
    assert "Nova's test fake" in rule.text and "Confirm phase" in rule.text
    ids = [r.id for r in RULES]
    assert ids.index("libvirt-completed-record") < ids.index("job-ending")


@pytest.mark.parametrize(("status", "conduct", "mode"), [
    ("completed", Conduct(), "pre-copy"),
    ("completed", Conduct(suspended=True), "paused"),
    ("completed", Conduct(post_copy=True, suspended=True), "post-copy"),
    ("postcopy_failed", Conduct(), "post-copy"),
    ("failed", Conduct(post_copy=True), None),
    ("unknown", Conduct(), None),
])
def test_mode(status, conduct, mode):
    assert mode_of(status, conduct) == mode
