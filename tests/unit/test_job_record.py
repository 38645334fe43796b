"""libvirt's completed-job record as a fact: read, told ours from stale, and what it settles.

The record (``jobStats`` with VIR_DOMAIN_JOB_STATS_COMPLETED) is our job's when it
differs from the one read just before our ``migrateToURI3`` and, where libvirt names
the operation, is an outgoing migration.  Checked on plain dicts, on the simulated
hypervisor (which keeps the record as libvirt does), and through the monitor against
a domain that behaves like Nova's test fake (its job completes or fails without the
source domain changing: only the record says what happened).
"""

from __future__ import annotations

import pytest

from migrator import constants as c
from migrator.concurrency import Worker
from migrator.facts import JobRecord, read_record, read_source, record_of_our_job
from migrator.monitor import LoopConfig, Monitor
from migrator.policy import MonitorSettings, Tunables
from migrator.progress import ProgressTracker
from migrator.steps import StepsPolicy
from migrator.testing import GiB
from tests.unit.helpers.clocks import StepClock
from tests.unit.helpers.driver_run import Run, check_settled, converging_guest

OUT, IN = c.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT, c.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN
NO_RECORD = JobRecord({"type": c.VIR_DOMAIN_JOB_NONE})
DONE = {"type": c.VIR_DOMAIN_JOB_COMPLETED, "operation": OUT, "time_elapsed": 9000}


# -- which record is ours -----------------------------------------------------------------


@pytest.mark.parametrize(("after", "before", "ours"), [
    (JobRecord(DONE), NO_RECORD, True),
    (JobRecord({"type": c.VIR_DOMAIN_JOB_COMPLETED}), NO_RECORD, True),  # Nova's fake: no more
    (JobRecord(DONE), JobRecord(dict(DONE, type=c.VIR_DOMAIN_JOB_FAILED)), True),
    (JobRecord(DONE), JobRecord(dict(DONE, time_elapsed=4000)), True),  # an earlier job's
    (JobRecord(DONE), JobRecord(dict(DONE)), False),  # the same record: stale
    (JobRecord(dict(DONE, operation=IN)), NO_RECORD, False),  # an incoming migration
    (JobRecord(dict(DONE, operation=2)), NO_RECORD, False),  # a save
    (NO_RECORD, NO_RECORD, False),  # nothing appeared
    (JobRecord({"type": "garbage"}), NO_RECORD, False),
    (JobRecord(DONE), None, False),  # no baseline (re-attached, or unreadable)
    (None, NO_RECORD, False),  # unreadable now
], ids=["new", "type-only", "failed-before", "earlier-times", "stale", "incoming", "save",
        "none", "garbage", "no-baseline", "unreadable"])
def test_a_record_is_ours_only_when_it_appeared_since_the_call(after, before, ours):
    assert record_of_our_job(after, before) is ours


class Stats:
    """A domain that answers ``jobStats`` only (and counts how it was asked)."""

    def __init__(self, answer, keep_supported=True):
        self.answer, self.keep_supported, self.flags = answer, keep_supported, []

    def jobStats(self, flags=0):  # noqa: N802 - libvirt's name
        self.flags.append(flags)
        if flags & c.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED and not self.keep_supported:
            raise RuntimeError("unsupported flags")
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_the_record_is_kept_for_the_next_reader_where_libvirt_can():
    dom = Stats(DONE)
    assert read_record(dom) == JobRecord(DONE)
    assert dom.flags == [c.VIR_DOMAIN_JOB_STATS_COMPLETED | c.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED]
    old = Stats(DONE, keep_supported=False)  # libvirt < 6.0
    assert read_record(old) == JobRecord(DONE)
    assert old.flags[-1] == c.VIR_DOMAIN_JOB_STATS_COMPLETED


@pytest.mark.parametrize("answer", [RuntimeError("connection reset"), None, ["garbage"]])
def test_an_unreadable_record_is_none(answer):
    assert read_record(Stats(answer)) is None


def test_read_source_says_whether_the_record_is_ours():
    class Source(Stats):
        def state(self):
            return [c.VIR_DOMAIN_RUNNING, c.VIR_DOMAIN_RUNNING_BOOTED]

    dom = Source(DONE)
    ours = read_source(dom, lambda s: True, record_before=NO_RECORD)
    assert (ours.last_job, ours.last_ours) == (c.VIR_DOMAIN_JOB_COMPLETED, True)
    stale = read_source(dom, lambda s: True, record_before=JobRecord(dict(DONE)))
    assert (stale.last_job, stale.last_ours) == (c.VIR_DOMAIN_JOB_COMPLETED, False)
    assert not read_source(dom, lambda s: True).last_ours  # no baseline


# -- the simulated hypervisor keeps the record as libvirt does ----------------------------


def test_the_simulator_keeps_our_jobs_record_and_a_refused_call_leaves_the_old_one(fake):
    converging_guest(fake)
    dom = fake.module.open("qemu+tcp://src/system").lookupByName("vm1")
    before = read_record(dom)
    assert before == NO_RECORD
    first = Run(fake)
    first.at(3.0, "abort", lambda h: h.abort())
    first.start()
    assert check_settled(first).status == "cancelled"
    record = read_record(dom)
    assert record.kind == c.VIR_DOMAIN_JOB_CANCELLED and record.operation == OUT
    assert record_of_our_job(record, before)
    assert read_record(dom) == record  # kept, and the same on every read: stale next time

    # the next call is refused before libvirt starts a job (the destination has another
    # guest of that name): the cancelled record above is left, and it is not ours
    fake.world.add_guest("dst", "vm1", memory=GiB)
    second = Run(fake)
    second.start()
    outcome = second.handle.wait(30)
    assert outcome.status == "failed", (outcome.status, outcome.reason)  # not 'cancelled'
    assert outcome.rule == "source-runs" and "already" in outcome.error
    assert read_record(dom) == record


# -- through the monitor: a fake whose job ends without the source changing ---------------


class NovaLikeDomain:
    """Behaves as Nova's test fake does: ``jobStats`` answers ``{'type': ...}`` for any
    flags, a test's stub ends the job with ``complete_job()`` / ``fail_job()`` while
    ``migrateToURI3`` returns normally, and the source domain keeps running."""

    def __init__(self, stub, job_type=c.VIR_DOMAIN_JOB_NONE):
        self.stub, self.job_type = stub, job_type

    def migrateToURI3(self, uri, params, flags):  # noqa: N802
        self.stub(self)

    def complete_job(self):
        self.job_type = c.VIR_DOMAIN_JOB_COMPLETED

    def fail_job(self):
        self.job_type = c.VIR_DOMAIN_JOB_FAILED

    def jobStats(self, flags=0):  # noqa: N802
        return {"type": self.job_type}

    def state(self, flags=0):
        return [c.VIR_DOMAIN_RUNNING, 0]


def settle(dom) -> object:
    settings = MonitorSettings(4.0, 500, 10, 75, False, False, 5)
    mon = Monitor(domain=dom, reconnect=lambda: dom, policy=StepsPolicy(settings),
                  clock=StepClock(), tunables=lambda: Tunables(800, "abort"),
                  progress=ProgressTracker(5), worker=Worker(lambda: dom.migrateToURI3(
                      "qemu+tcp://dst/system", {}, 27), "test-op"),
                  config=LoopConfig(poll_interval=0.5, establish_timeout=60.0))
    mon.start()
    return mon.run()


def test_a_completed_record_of_our_job_is_completed():
    outcome = settle(NovaLikeDomain(lambda d: d.complete_job()))
    assert (outcome.status, outcome.rule, outcome.mode) == (
        "completed", "libvirt-completed-record", "pre-copy")


def test_a_failed_record_of_our_job_is_failed_and_safe_to_roll_back():
    outcome = settle(NovaLikeDomain(lambda d: d.fail_job()))
    assert (outcome.status, outcome.rule) == ("failed", "libvirt-completed-record")
    assert outcome.rollback_safe and outcome.error == "the migration job failed"


def test_returned_0_without_a_record_is_failed_nothing_moved():
    outcome = settle(NovaLikeDomain(lambda d: None))
    assert (outcome.status, outcome.rule) == ("failed", "source-runs")
    assert outcome.error == "libvirt reported success but nothing moved"


def test_a_stale_completed_record_is_never_taken_for_ours():
    """An earlier job's record, shown as the current job too (Nova's fake): the call
    returned 0 but nothing new appeared; nothing is settled as completed."""
    outcome = settle(NovaLikeDomain(lambda d: None, job_type=c.VIR_DOMAIN_JOB_COMPLETED))
    assert outcome.status == "unknown" and outcome.rule == "job-ending"
    assert not outcome.rollback_safe
