"""Faults on the simulated hypervisor: the driver either completes or leaves the guest running.

Every test injects one failure (``world.faults``, dropped connections, hung or racing
calls, callers' hooks that raise) into a migration run by the real driver and monitor,
then checks the promise after the fault (:func:`check_settled`):

* the caller hears exactly one outcome: the right callback ran exactly once, with it;
* the guest runs on exactly one host, and it is the one the outcome names (the
  destination for ``completed`` and ``postcopy_failed``, the source otherwise);
* no libvirt job, thread (``migrator-*``) or driver connection is left behind (a failed
  post-copy keeps its paused job on purpose: it is resumable).

test_driver.py covers the plain cases (completion, timeout actions, one abort, the first
post-copy recovery cases); this file covers what goes wrong around them.
"""

from __future__ import annotations

import time

import pytest

from migrator import constants as C
from migrator import exception
from migrator.testing import GiB, MiB
from migrator.testing import fakelibvirt as fl
from migrator.testing.config import make_conf
from migrator.testing.fixture import FakeLibvirtFixture
from tests.unit.helpers.driver_run import (
    Calls,
    Run,
    actions,
    check_settled,
    converging_guest,
    hopeless_guest,
    post_copy_conf,
    wait_for_threads,
)

# -- the destination fails -------------------------------------------------------------


@pytest.mark.parametrize("when", ["pre-copy", "disk copy", "switch-over"])
def test_destination_fails_mid_migration(fake, end_times, when):
    if when == "disk copy":
        fake.world.add_guest("src", "vm1", memory=2 * GiB, working_set=256 * MiB,
                             dirty_rate=50 * MiB, disks={"vda": 20 * GiB})
        fake.world.faults.fail_migration(after=5)  # NBD copy takes ~17 s
        run = Run(fake, block_migration=True, disks=("vda",), disk_sizes=(20 * GiB,))
    else:
        converging_guest(fake)
        switch, _end = end_times  # the stop-and-copy lasts ~40 ms, then Finish
        fake.world.faults.fail_migration(after=5 if when == "pre-copy" else switch + 0.005)
        run = Run(fake)
    run.start()
    outcome = check_settled(run)
    assert outcome.status == "failed" and outcome.mode is None
    assert "client socket is closed" in outcome.error
    assert not actions(outcome, "abort")


def test_destination_fails_with_libvirt_job_error(fake):
    hopeless_guest(fake)
    fake.world.faults.fail_migration(
        after=30, error=fl.libvirtError("operation failed: job 'migration out' failed: "
                                        "qemu unexpectedly closed the monitor",
                                        C.VIR_ERR_OPERATION_FAILED, C.VIR_FROM_QEMU))
    run = Run(fake)
    run.start()
    outcome = check_settled(run)
    assert outcome.status == "failed"
    assert outcome.error_code == C.VIR_ERR_OPERATION_FAILED
    assert "unexpectedly closed" in outcome.error


def test_destination_unreachable(fake):
    converging_guest(fake)
    fake.world.faults.unreachable("dst")
    run = Run(fake)
    run.start()
    outcome = check_settled(run)
    assert outcome.status == "failed" and "Connection refused" in outcome.error
    assert fake.world.domain("src", "vm1").reason == C.VIR_DOMAIN_RUNNING_BOOTED  # untouched


def test_destination_unreachable_for_the_final_stats_only(fake):
    """Reading the downtime from the destination afterwards fails: still 'completed'."""
    converging_guest(fake)
    fake.world.faults.fail("lookupByUUIDString", code=C.VIR_ERR_SYSTEM_ERROR,
                           domain=C.VIR_FROM_RPC, message="unable to connect to server",
                           host="dst", times=None)
    run = Run(fake, dest_connect_uri="qemu+tcp://dst/system")
    run.start()
    outcome = check_settled(run)
    assert outcome.status == "completed" and outcome.downtime_ms is None
    assert fake.world.connections("dst") == []


# -- jobStats fails ----------------------------------------------------------------------


def stats_error(times):
    return dict(code=C.VIR_ERR_INTERNAL_ERROR, domain=C.VIR_FROM_QEMU,
                message="internal error: unable to execute QEMU command "
                "'query-migrate': transient failure", times=times, guest="vm1")


def test_job_stats_failing_transiently(fake):
    converging_guest(fake)
    run = Run(fake)
    # four failures in a row, then it recovers (five would give up)
    run.at(3, "arm", lambda h: fake.world.faults.fail("jobStats", **stats_error(4)))
    run.start()
    outcome = check_settled(run)
    assert outcome.status == "completed" and outcome.monitor_error is None
    assert not actions(outcome, "abort")


def test_job_stats_failing_for_good_aborts_then_reports(fake):
    """A monitor that cannot read the job aborts it, and says so: 'failed', not 'cancelled'
    (which means cancelled by the user; Nova maps a monitor crash to an error too)."""
    hopeless_guest(fake)
    run = Run(fake)
    run.at(3, "arm", lambda h: fake.world.faults.fail("jobStats", **stats_error(None)))
    run.start()
    outcome = check_settled(run)
    assert outcome.status == "failed"  # not a user cancel
    assert "jobStats failed 5 times" in outcome.monitor_error
    (abort,) = actions(outcome, "abort")
    assert abort.ok and "monitor failed" in abort.reason


def test_job_stats_failing_for_good_but_libvirt_finishes_anyway(fake):
    """The abort fails too, and the job completes: the outcome follows libvirt."""
    converging_guest(fake)
    run = Run(fake)
    run.at(3, "arm", lambda h: fake.world.faults.fail("jobStats", **stats_error(None)))
    fake.world.faults.fail("abortJob", code=C.VIR_ERR_INTERNAL_ERROR, domain=C.VIR_FROM_QEMU,
                           message="internal error: QEMU monitor is busy", times=None)
    run.start()
    outcome = check_settled(run)
    assert outcome.status == "completed" and outcome.mode == "pre-copy"
    assert outcome.monitor_error and "jobStats failed" in outcome.monitor_error
    (abort,) = actions(outcome, "abort")
    assert not abort.ok and "busy" in abort.error


# -- the monitor's connection drops -----------------------------------------------------


def monitor_connection(run):
    """The driver's own connection that is not blocked in migrateToURI3."""
    conns = [c for c in run.fake.world.connections("src")
             if c is not run.conn and not c._blocked_in_migration]
    assert len(conns) == 1, conns
    return conns[0]


def test_monitor_connection_dropped_is_reopened(fake):
    converging_guest(fake)
    run = Run(fake)
    run.at(3, "drop", lambda h: fake.world.faults.drop_connection(monitor_connection(run)))
    run.start()
    outcome = check_settled(run)
    assert run.results["drop"] is None
    assert outcome.status == "completed" and outcome.monitor_error is None
    assert not actions(outcome, "abort")
    assert len(run.opened) == 3  # migration + monitor + the monitor's new one


def _arm_abort_fails_transiently(fake, run):
    fake.world.faults.fail("abortJob", code=C.VIR_ERR_INTERNAL_ERROR, domain=C.VIR_FROM_QEMU,
                           message="internal error: QEMU monitor is busy", times=3)
    fake.world.faults.fail("jobStats", **stats_error(None))


def _arm_dead_connection(fake, run):
    # The monitor cannot reconnect for a while (5 attempts, one per failed poll), then could.
    fake.world.faults.fail("open", code=C.VIR_ERR_SYSTEM_ERROR, domain=C.VIR_FROM_RPC,
                           message="unable to connect to server: Connection refused", times=8)
    fake.world.faults.drop_connection(monitor_connection(run))


@pytest.mark.parametrize(("arm", "status"), [(_arm_abort_fails_transiently, "failed"),
                                             (_arm_dead_connection, "timed_out")],
                         ids=["abort-fails-transiently", "dead-monitor-connection"])
def test_monitor_failure_with_a_failed_abort_still_settles(fake, arm, status):
    """A monitor that cannot read the job aborts it (failed); one that cannot reach the
    source waits for it with backoff, then follows the job again (its timeout fires)."""
    hopeless_guest(fake)
    run = Run(fake)
    run.at(3, "arm", lambda h: arm(fake, run))
    run.start()
    outcome = check_settled(run)
    assert outcome.status == status
    if status == "timed_out":
        assert any("waiting: the source's libvirt cannot be reached" in n for n in outcome.notes)


def test_all_source_connections_dropped(fake):
    converging_guest(fake)
    run = Run(fake)
    run.at(3, "drop", lambda h: fake.world.faults.drop_connections("src"))
    run.start()
    check_settled(run)


# -- abortJob hangs (KubeVirt's watchdog) ------------------------------------------------

HANG = 0.8  # real seconds abortJob blocks; the watchdog gives up after 0.3


def test_hung_abort_is_reported_and_the_late_abort_cancels(fake):
    hopeless_guest(fake)
    fake.world.faults.hang("abortJob", HANG, real=True)
    run = Run(fake, make_conf(live_migration_completion_timeout=0), abort_timeout=0.3)
    run.at(5, "abort", lambda h: h.abort())
    run.start()
    outcome = check_settled(run, grace=HANG + 3)
    fut = run.future("abort")
    assert isinstance(fut, exception.AbortFailed) and "within 0.3 s" in str(fut)
    (abort,) = actions(outcome, "abort")
    assert not abort.ok and "did not return within 0.3 s" in abort.error
    # the hung call got through in the end: libvirt cancelled the job
    assert outcome.status == "cancelled"


def test_hung_abort_while_the_job_completes(fake):
    converging_guest(fake)
    fake.world.faults.hang("abortJob", HANG, real=True)
    run = Run(fake, abort_timeout=0.3)
    run.at(3, "abort", lambda h: h.abort())
    run.start()
    outcome = check_settled(run, grace=HANG + 3)
    assert outcome.status == "completed"
    assert isinstance(run.future("abort"), exception.AbortFailed)
    (abort,) = actions(outcome, "abort")
    assert not abort.ok and "did not return" in abort.error


def test_hung_timeout_abort(fake):
    hopeless_guest(fake)
    fake.world.faults.hang("abortJob", HANG, real=True)
    run = Run(fake, make_conf(live_migration_completion_timeout=5), abort_timeout=0.3)
    run.start()
    outcome = check_settled(run, grace=HANG + 3)
    assert outcome.status == "timed_out"
    first = actions(outcome, "abort")[0]
    assert not first.ok and "did not return within 0.3 s" in first.error


# -- abort and force-complete racing the start and the end ---------------------------------


@pytest.mark.parametrize("kind", ["abort", "force_complete"])
def test_control_right_after_live_migration_returns(fake, kind):
    hopeless_guest(fake)
    run = Run(fake)
    handle = run.start()
    fut = getattr(handle, kind)()
    outcome = check_settled(run)
    assert fut.result(5) is True
    if kind == "abort":
        assert outcome.status == "cancelled"
    else:
        assert outcome.status == "completed" and outcome.mode == "paused"


def test_abort_while_preparing_never_calls_migrate(fake, monkeypatch):
    hopeless_guest(fake)
    started = []
    real = fl.virDomain.migrateToURI3
    monkeypatch.setattr(fl.virDomain, "migrateToURI3",
                        lambda self, *a, **k: started.append(self.name()) or real(self, *a, **k))
    # the driver's second lookup (its monitor connection) takes a while
    fake.world.faults.hang("lookupByUUIDString", 0.4, real=True, times=1)
    run = Run(fake)
    handle = run.start()
    deadline = time.monotonic() + 5
    while handle.status != "preparing" and time.monotonic() < deadline:
        time.sleep(0.005)
    assert handle.status == "preparing"
    fut = handle.abort()
    outcome = check_settled(run)
    assert outcome.status == "cancelled" and fut.result(5) is True
    assert started == []


PREPARE, SETUP = 1.0, 0.1  # Timings(): the job is {type: 0} until 1.0, running from 1.1


@pytest.mark.parametrize("kind", ["abort", "force_complete"])
@pytest.mark.parametrize("when", [0.0, PREPARE / 2, PREPARE, PREPARE + SETUP / 2,
                                  PREPARE + SETUP])
def test_control_at_the_moment_the_job_starts(fake, kind, when):
    hopeless_guest(fake)
    run = Run(fake)
    run.at(when, "control", lambda h: getattr(h, kind)())
    run.start()
    outcome = check_settled(run)
    assert run.future("control") is True
    if kind == "abort":
        assert outcome.status == "cancelled"
        assert fake.world.domain("src", "vm1").state == C.VIR_DOMAIN_RUNNING
    else:
        assert outcome.status == "completed" and outcome.mode == "paused"
        assert len(actions(outcome, "suspend")) == 1


def job_times(fake):
    """Virtual times of the switch-over and the end of the converging guest's migration."""
    jobs = []
    run = Run(fake)
    run.at(1.5, "job", lambda h: jobs.extend(fake.world.jobs))
    run.start()
    outcome = check_settled(run)
    assert outcome.status == "completed"
    (job,) = jobs
    return job.switch_time, job.end_time


@pytest.fixture(scope="module")
def end_times():
    fx = FakeLibvirtFixture(require_event_loop=False)
    fx.setUp()
    try:
        fx.world.add_host("src")
        fx.world.add_host("dst")
        converging_guest(fx)
        return job_times(fx)
    finally:
        fx.cleanUp()


@pytest.mark.parametrize("kind", ["abort", "force_complete"])
@pytest.mark.parametrize("moment", ["before switch-over", "switch-over", "mid switch-over",
                                    "just before the end", "the end", "just after the end"])
def test_control_around_completion(fake, end_times, kind, moment):
    switch, end = end_times
    when = {"before switch-over": switch - 0.01, "switch-over": switch,
            "mid switch-over": (switch + end) / 2, "just before the end": end - 0.01,
            "the end": end, "just after the end": end + 0.01}[moment]
    converging_guest(fake)
    run = Run(fake)
    run.at(when, "control", lambda h: getattr(h, kind)())
    run.start()
    outcome = check_settled(run)
    result = run.future("control")
    if kind == "abort":
        # The abort wins (True, cancelled) or is refused with a reason (and it completed).
        if result is True:
            assert outcome.status == "cancelled"
        else:
            assert isinstance(result, exception.AbortFailed | exception.NoActiveMigration)
            assert outcome.status == "completed"
        if moment in ("before switch-over", "switch-over"):
            assert outcome.status == "cancelled"
        if moment in ("just before the end", "the end", "just after the end"):
            assert outcome.status == "completed"
    else:
        assert outcome.status == "completed"
        assert result is True or isinstance(result, exception.NoActiveMigration)


def test_force_complete_then_abort_resumes_the_guest_on_the_source(fake):
    hopeless_guest(fake)
    run = Run(fake)
    run.at(3, "fc", lambda h: h.force_complete())
    run.at(3.2, "abort", lambda h: h.abort())
    run.start()
    outcome = check_settled(run)  # checks the source guest is RUNNING again
    assert run.future("fc") is True and run.future("abort") is True
    assert outcome.status == "cancelled"
    assert [a.action for a in actions(outcome) if a.action != "set_max_downtime"] == [
        "suspend", "abort"]
    assert any("resumed the guest" in n for n in outcome.notes)


def test_abort_twice(fake):
    hopeless_guest(fake)
    run = Run(fake)
    run.at(3, "a1", lambda h: h.abort())
    run.at(3, "a2", lambda h: h.abort())
    run.start()
    outcome = check_settled(run)
    assert outcome.status == "cancelled"
    assert run.future("a1") is True
    assert run.future("a2") is True or isinstance(run.future("a2"), exception.NoActiveMigration)


# -- the caller's own code raises ---------------------------------------------------------


def test_recover_callback_raises(fake):
    converging_guest(fake)
    fake.world.faults.fail_migration(after=3)
    calls = Calls()

    def recover(outcome):
        calls.recover.append(outcome)
        raise ValueError("caller bug in recover")

    calls.recover_method = recover
    run = Run(fake, calls=calls)
    run.start()
    outcome = check_settled(run)
    assert outcome.status == "failed"
    assert outcome.callback_error == "ValueError: caller bug in recover"


def test_progress_hook_raises_every_time(fake):
    converging_guest(fake)
    seen = []

    def hook(progress):
        seen.append(progress)
        raise RuntimeError("caller bug in on_progress")

    run = Run(fake, make_conf(live_migration_monitor_interval=1), on_progress=hook)
    run.start()
    outcome = check_settled(run)
    assert outcome.status == "completed" and outcome.monitor_error is None
    assert len(seen) >= 2 and seen[-1].final
    assert any("caller bug in on_progress" in n for n in outcome.notes)


def test_abort_from_inside_the_progress_hook(fake):
    hopeless_guest(fake)
    box = {}

    def hook(progress):
        box.setdefault("fut", run.handle.abort())

    run = Run(fake, make_conf(live_migration_monitor_interval=1), on_progress=hook)
    run.start()
    outcome = check_settled(run)
    assert outcome.status == "cancelled" and box["fut"].result(5) is True


def test_sample_hook_raises(fake):
    converging_guest(fake)

    def hook(t, sample):
        raise RuntimeError("caller bug in on_sample")

    run = Run(fake, on_sample=hook)
    run.start()
    outcome = check_settled(run)
    assert outcome.status == "completed"
    assert any("caller bug in on_sample" in n for n in outcome.notes)


# -- post-copy failures -----------------------------------------------------------------


def test_post_copy_resume_attempts_fail_then_succeed(fake):
    hopeless_guest(fake)
    fake.world.faults.postcopy_link_failure(after=0.5, restore_after=3)
    run = Run(fake, post_copy_conf())
    # the first two resume calls are refused by libvirt itself
    run.at(20.6, "arm", lambda h: fake.world.faults.fail(
        "migrateToURI3", code=C.VIR_ERR_INTERNAL_ERROR, domain=C.VIR_FROM_QEMU,
        message="internal error: migration resume refused", times=2, host="src"))
    run.start()
    outcome = check_settled(run)
    assert outcome.status == "completed" and outcome.mode == "post-copy"
    assert any("resumed after" in n and "3 attempts" in n for n in outcome.notes)


def test_post_copy_breaks_again_after_a_resume(fake):
    fake.world.hosts["src"].link_rate = fake.world.hosts["dst"].link_rate = 1e9 / 8
    fake.world.add_guest("src", "vm1", memory=8 * GiB, dirty_rate=2 * GiB)
    fake.world.faults.postcopy_link_failure(after=0.5, restore_after=3)
    run = Run(fake, post_copy_conf())
    state = {"resumed": 0, "broken": False}

    def watch(_handle):
        rec = fake.world.domain("src", "vm1")
        running_pc = rec is not None and rec.reason == C.VIR_DOMAIN_PAUSED_POSTCOPY
        if running_pc and fake.world.now > 45 and not state["broken"]:
            # post-copy was resumed once; the link fails again mid-way, back 20 s later
            state["broken"] = True
            fake.world.set_link("src", "dst", False)
            run.conn.lookupByName("vm1").abortJobFlags(C.VIR_DOMAIN_ABORT_JOB_POSTCOPY)
            fake.world.after(20, lambda: fake.world.set_link("src", "dst", True))
        elif rec is not None and fake.world.now < 300:
            run.at(fake.world.now + 0.5, "watch", watch)

    run.at(1, "watch", watch)
    run.start()
    outcome = check_settled(run)
    assert state["broken"]
    assert outcome.status == "completed" and outcome.mode == "post-copy"
    (note,) = [n for n in outcome.notes if "resumed after" in n]
    assert int(note.split("(")[-1].split()[0]) >= 3  # attempts


def test_post_copy_link_back_only_after_the_recovery_timeout(fake):
    hopeless_guest(fake)
    fake.world.faults.postcopy_link_failure(after=0.5, restore_after=100)
    run = Run(fake, post_copy_conf(live_migration_postcopy_recovery_timeout=30))
    run.start()
    outcome = check_settled(run)
    assert outcome.status == "postcopy_failed" and outcome.mode == "post-copy"
    assert "could not be resumed within 30 s" in outcome.error
    assert not actions(outcome, "abort")
    (job,) = fake.world.jobs  # paused, resumable by the operator
    assert job.phase.value == "postcopy-paused"


def test_destination_destroyed_during_post_copy_recovery(fake):
    hopeless_guest(fake)
    fake.world.faults.postcopy_link_failure(after=0.5)  # not restored by the fault
    dconn = fake.module.open("qemu+tcp://dst/system")
    run = Run(fake, post_copy_conf(live_migration_postcopy_recovery_timeout=40),
              dest_connect_uri="qemu+tcp://dst/system")
    run.at(25, "destroy", lambda h: dconn.lookupByName("vm1").destroy())
    run.at(30, "link", lambda h: fake.world.set_link("src", "dst", True))
    run.start()
    outcome = run.handle.wait(30)
    assert outcome is not None and outcome.status == "postcopy_failed"
    assert run.calls.recover == [outcome] and not run.calls.post
    src = fake.world.domain("src", "vm1")
    # the source is never resumed: its memory is partly on the (dead) destination
    assert src.state == C.VIR_DOMAIN_PAUSED
    assert src.reason == C.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED
    assert "domain is not running" in outcome.error  # the last attempt's reason
    # the destination was checked: the message no longer says the guest runs there
    assert "runs on the destination" not in outcome.error
    assert "no longer running on the destination" in outcome.error
    assert "must not be resumed" in outcome.error
    assert wait_for_threads() == []
    dconn.close()


def test_post_copy_not_resumable_in_time_says_where_the_guest_is(fake):
    # The destination still has the guest (paused on missing pages): the message says so.
    hopeless_guest(fake)
    fake.world.faults.postcopy_link_failure(after=0.5)  # never restored
    run = Run(fake, post_copy_conf(live_migration_postcopy_recovery_timeout=20),
              dest_connect_uri="qemu+tcp://dst/system")
    run.start()
    outcome = run.handle.wait(30)
    assert outcome is not None and outcome.status == "postcopy_failed"
    assert "the guest runs on the destination, paused on missing memory" in outcome.error
    assert wait_for_threads() == []


def test_controls_during_post_copy_recovery_are_refused(fake, monkeypatch):
    hopeless_guest(fake)
    fake.world.faults.postcopy_link_failure(after=0.5, restore_after=20)
    aborts = []
    real = fl.virDomain.abortJob
    monkeypatch.setattr(fl.virDomain, "abortJob",
                        lambda self: aborts.append(fake.world.now) or real(self))
    run = Run(fake, post_copy_conf())
    run.at(30, "status", lambda h: h.status)
    run.at(30, "abort", lambda h: h.abort())
    run.at(30, "fc", lambda h: h.force_complete())
    run.start()
    outcome = check_settled(run)
    assert run.results["status"] == "recovering"
    assert isinstance(run.future("abort"), exception.AbortFailed | exception.NoActiveMigration)
    assert isinstance(run.future("fc"), exception.NoActiveMigration)
    assert outcome.status == "completed" and aborts == []
