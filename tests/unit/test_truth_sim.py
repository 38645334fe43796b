"""Truthful outcomes on the simulated hypervisor: the classes of issue 10, each as a hostile
user would meet it.

1. the service loses the source daemon (the daemons still talk) mid pre-copy, at the
   switch-over and in post-copy, for a while or for good;
2. a job migrator did not start;
3. "left the source" taken as "arrived";
4. hooks that raise a BaseException;
5. jobStats that returns garbage or fails for good;
6. futures and handles that never settle.

Each test checks where the guest really is against what the outcome says: ``completed``
only when the destination runs it, a rollback-safe status only when the source runs it
with no job left, ``unknown`` (never rolled back) when that could not be established.
"""

from __future__ import annotations

import logging
import math
import threading

import pytest

from migrator import concurrency, exception
from migrator import constants as C
from migrator.testing import GiB, MiB
from migrator.testing import fakelibvirt as fl
from migrator.testing.config import make_conf
from tests.unit.helpers.driver_run import (
    Calls,
    Run,
    actions,
    check_settled,
    converging_guest,
    hopeless_guest,
    open_driver,
    post_copy_conf,
    running_on,
    wait_for_threads,
)

DEST_URI = "qemu+tcp://dst/system"
SWITCH = 9.6  # converging_guest: the switch-over (the job ends ~0.5 s later)


def settled(run, timeout=30):
    outcome = run.handle.wait(timeout)
    assert outcome is not None, f"no outcome (status {run.handle.status})"
    calls = run.calls
    assert len(calls.post) + len(calls.recover) == 1, "exactly one callback"
    assert (calls.post if outcome.succeeded else calls.recover) == [outcome]
    return outcome


def unknown_and_left_alone(run, outcome):
    """``unknown``: recover_method told not to roll back; nothing was torn down."""
    assert outcome.status == "unknown" and not outcome.rollback_safe
    assert "do not roll back" in outcome.error
    assert run.calls.recover == [outcome]


# -- 1. the service loses the source daemon ----------------------------------------------


@pytest.mark.parametrize("dest_uri", [None, DEST_URI], ids=["source-only", "dest-asked"])
@pytest.mark.parametrize("at", [3.0, SWITCH + 0.01, SWITCH + 0.3],
                         ids=["mid-pre-copy", "switch-over", "finish"])
def test_source_cut_for_a_while_the_job_goes_on_and_completes(fake, at, dest_uri):
    converging_guest(fake)
    run = Run(fake, dest_connect_uri=dest_uri)
    run.at(at, "cut", lambda h: fake.world.faults.cut_client("src", 20))
    run.start()
    settled(run)
    fake.clock.advance(5)  # the destination may settle it while libvirt finishes the job
    outcome = check_settled(run)
    assert outcome.status == "completed", outcome.error
    assert outcome.rule == ("destination-runs" if dest_uri else "source-undefined")
    if not dest_uri:
        assert any("waiting: the source's libvirt cannot be reached" in n for n in outcome.notes)


def test_source_cut_for_a_while_mid_pre_copy_the_policy_takes_over_again(fake):
    """The job outlives the cut; once the source answers, the monitor follows it again and
    its completion timeout (counted from the start) fires: timed_out, the guest at home."""
    hopeless_guest(fake)
    run = Run(fake, make_conf(live_migration_completion_timeout=10))  # 40 s
    run.at(3, "cut", lambda h: fake.world.faults.cut_client("src", 15))
    run.start()
    outcome = check_settled(run)
    assert outcome.status == "timed_out" and outcome.rollback_safe
    (abort,) = actions(outcome, "abort")
    assert 40 < abort.at < 42 and "completion timeout 40 s" in abort.reason
    assert any("following it to its end" in n for n in outcome.notes)


def test_source_cut_for_good_with_the_destination_asked_completes(fake):
    converging_guest(fake)
    run = Run(fake, dest_connect_uri=DEST_URI)
    run.at(3, "cut", lambda h: fake.world.faults.cut_client("src"))
    run.start()
    outcome = settled(run)
    assert outcome.status == "completed" and outcome.rule == "destination-runs"
    assert running_on(fake.world, "vm1") == ["dst"]


@pytest.mark.parametrize(("guest", "at"), [(converging_guest, 3.0), (hopeless_guest, 3.0),
                                           (converging_guest, SWITCH + 0.01)],
                         ids=["converging-mid-pre-copy", "hopeless-mid-pre-copy", "switch-over"])
def test_source_cut_for_good_is_unknown_after_the_bound(fake, guest, at):
    """Nobody can tell where the guest ends up: unknown, never a rollback, whatever happens."""
    guest(fake)
    run = Run(fake, make_conf(live_migration_establish_timeout=120))
    run.at(at, "cut", lambda h: fake.world.faults.cut_client("src"))
    run.start()
    outcome = settled(run)
    unknown_and_left_alone(run, outcome)
    assert outcome.rule == "source-unreachable"
    assert "not established within 12" in outcome.reason
    assert fake.world.domain("src", "vm1") is None or running_on(fake.world, "vm1") == ["src"]
    assert wait_for_threads() == []


@pytest.mark.parametrize("seconds", [10, None], ids=["for-a-while", "for-good"])
def test_source_cut_in_post_copy_with_the_destination_asked(fake, seconds):
    hopeless_guest(fake)
    run = Run(fake, post_copy_conf(), dest_connect_uri=DEST_URI)
    run.at(21.5, "cut", lambda h: fake.world.faults.cut_client("src", seconds))
    run.start()
    outcome = settled(run)
    assert outcome.status == "completed" and outcome.mode == "post-copy"
    assert running_on(fake.world, "vm1") == ["dst"]


def test_source_cut_for_good_in_post_copy_without_a_way_to_look_is_unknown(fake):
    hopeless_guest(fake)
    run = Run(fake, post_copy_conf(live_migration_establish_timeout=60))
    run.at(21.5, "cut", lambda h: fake.world.faults.cut_client("src"))
    run.start()
    outcome = settled(run)
    unknown_and_left_alone(run, outcome)
    assert running_on(fake.world, "vm1") == ["dst"]  # and it was not torn down


# -- 2. a job migrator did not start ---------------------------------------------------


def test_a_guest_with_a_job_is_refused_and_its_job_untouched(fake):
    hopeless_guest(fake)
    fake.world.add_host("dst2")
    fake.world.faults.foreign_migration("src", "vm1", "dst2")
    calls = Calls()
    run = Run(fake, calls=calls)
    with pytest.raises(exception.MigrationRefused, match="already has a .*migrator did not"):
        run.start()
    assert calls.post == calls.recover == []
    (job,) = fake.world.jobs
    assert job.dst_host.name == "dst2" and not job.abort_pending
    assert run.driver.active_migrations() == [] and wait_for_threads() == []


def another_job_wins_the_race(fake, monkeypatch):
    """Somebody starts migrating vm1 to dst2 just as our migrateToURI3 is called."""
    real = fl.virDomain.migrateToURI3

    def race(self, *args, **kwargs):
        if not fake.world.jobs:
            fake.world.faults.foreign_migration("src", "vm1", "dst2")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(fl.virDomain, "migrateToURI3", race)


def test_a_job_started_between_the_check_and_the_call_is_never_touched(fake, monkeypatch):
    """Someone else's job wins the race: our call is refused by libvirt; the monitor never
    steers nor aborts the other job, and never reports 'completed' for where it went."""
    hopeless_guest(fake)
    fake.world.add_host("dst2")
    another_job_wins_the_race(fake, monkeypatch)
    run = Run(fake, make_conf(live_migration_completion_timeout=1), dest_connect_uri=DEST_URI)
    run.at(3, "abort", lambda h: h.abort())
    run.start()
    outcome = settled(run)
    assert outcome.status == "unknown" and outcome.rule == "foreign-job"
    (job,) = fake.world.jobs  # still running, towards dst2, never aborted nor tuned
    assert job.dst_host.name == "dst2" and not job.abort_pending
    assert job.rec.max_downtime_ms == C.QEMU_DEFAULT_DOWNTIME_MS
    assert not any(a.ok for a in actions(outcome, "abort"))
    assert any("not ours" in n or "did not start" in n for n in outcome.notes)


def test_a_job_that_moved_the_guest_elsewhere_is_not_completed(fake, monkeypatch):
    converging_guest(fake)
    fake.world.add_host("dst2")
    another_job_wins_the_race(fake, monkeypatch)
    run = Run(fake, dest_connect_uri=DEST_URI)
    run.start()
    outcome = settled(run)
    assert outcome.status == "unknown" and outcome.rule == "left-source-not-on-destination"
    assert running_on(fake.world, "vm1") == ["dst2"]


def foreign_migration_once_queued(fake, guest):
    """At 1 s of virtual time, once the test set the event: somebody migrates ``guest``."""
    queued = threading.Event()

    def start():
        assert queued.wait(10)
        fake.world.faults.foreign_migration("src", guest, "dst2")

    fake.world.at(1, start)
    return queued


def test_queued_migration_whose_guest_got_a_job_meanwhile_is_not_started(fake):
    hopeless_guest(fake, "vm0")
    converging_guest(fake, "vm1")
    fake.world.add_host("dst2")
    conf = make_conf(max_concurrent_live_migrations=1, live_migration_completion_timeout=5)
    first = Run(fake, conf, name="vm0")
    queued = foreign_migration_once_queued(fake, "vm1")
    first.start()
    second_calls = Calls()
    second = first.driver.live_migration(
        first.conn.lookupByName("vm1"), "dst", post_method=second_calls.post_method,
        recover_method=second_calls.recover_method)
    queued.set()
    assert check_settled(first).status == "timed_out"
    outcome = second.wait(30)
    # when its turn came the guest had gone to dst2: never started, never 'completed'
    assert outcome.status == "unknown" and outcome.rule == "left-source-unexplained"
    assert second_calls.recover == [outcome] and not outcome.actions
    assert running_on(fake.world, "vm1") == ["dst2"]


def test_queued_migration_waits_for_another_job_and_never_touches_it(fake):
    hopeless_guest(fake, "vm0")
    hopeless_guest(fake, "vm1")
    fake.world.add_host("dst2")
    conf = make_conf(max_concurrent_live_migrations=1, live_migration_completion_timeout=2,
                     live_migration_establish_timeout=30)
    first = Run(fake, conf, name="vm0")
    queued = foreign_migration_once_queued(fake, "vm1")
    first.start()
    second = first.driver.live_migration(first.conn.lookupByName("vm1"), "dst",
                                         post_method=lambda o: None,
                                         recover_method=lambda o: None)
    queued.set()
    outcome = second.wait(30)
    assert outcome.status == "unknown" and outcome.rule == "foreign-job", (
        outcome.rule, outcome.reason, outcome.error, outcome.notes)
    assert "migrator did not start" in " ".join(outcome.notes + [outcome.error])
    (job,) = [j for j in fake.world.jobs if j.rec.name == "vm1"]
    assert job.dst_host.name == "dst2" and not job.abort_pending


# -- 3. "left the source" is not "arrived" -----------------------------------------------


def test_a_definition_left_by_an_earlier_migration_is_refused_and_kept(fake):
    converging_guest(fake)
    fake.world.faults.leave_migrated_definition("src", "vm1")
    run = Run(fake)
    with pytest.raises(exception.MigrationRefused, match="not running"):
        run.start()
    rec = fake.world.domain("src", "vm1")
    assert rec is not None and rec.persistent  # never undefined
    assert run.calls.post == run.calls.recover == []


def test_success_returned_while_nothing_moved_is_failed(fake, monkeypatch):
    converging_guest(fake)
    monkeypatch.setattr(fl.virDomain, "migrateToURI3", lambda self, *a, **k: 0)
    run = Run(fake)
    run.start()
    outcome = check_settled(run)
    assert outcome.status == "failed" and outcome.rule == "source-runs"
    assert "nothing moved" in outcome.error


def test_guest_gone_from_the_source_but_not_on_the_destination_is_unknown(fake, monkeypatch):
    """The source undefines the guest, the destination does not run it: never 'completed'."""
    converging_guest(fake)
    run = Run(fake, dest_connect_uri=DEST_URI)

    def vanish(h):  # somebody undefines it everywhere; our call is cut off
        fake.world.shutdown()
        with fake.world._lock:
            fake.world.host("src").domains.clear()
            fake.world.host("dst").domains.clear()

    run.at(5, "vanish", vanish)
    run.start()
    outcome = settled(run)
    assert outcome.status == "unknown" and outcome.rule == "left-source-not-on-destination"


# -- 4. hooks that raise a BaseException ---------------------------------------------------


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt(), GeneratorExit()],
                         ids=["SystemExit", "KeyboardInterrupt", "GeneratorExit"])
@pytest.mark.parametrize("hook", ["on_progress", "on_sample", "on_post_copy"])
def test_hook_raising_a_base_exception_is_reported_and_the_job_settles(fake, hook, exc):
    hopeless_guest(fake)

    def boom(*args):
        raise exc

    run = Run(fake, post_copy_conf(live_migration_monitor_interval=1), **{hook: boom})
    run.start()
    outcome = check_settled(run)
    assert outcome.status == "completed"
    assert any(type(exc).__name__ in n for n in outcome.notes)


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt()])
def test_callback_raising_a_base_exception_still_settles_the_handle(fake, exc):
    converging_guest(fake)
    calls = Calls()
    seen = []

    def post(outcome):
        seen.append(outcome)
        raise exc

    calls.post_method = post
    run = Run(fake, calls=calls)
    handle = run.start()
    outcome = handle.wait(30)
    assert outcome is not None and seen == [outcome] and handle.done()
    assert outcome.callback_error.startswith(type(exc).__name__)


def test_eventlet_timeout_in_a_hook(fake):
    eventlet = pytest.importorskip("eventlet")
    converging_guest(fake)

    def slow(progress):
        raise eventlet.Timeout(0.01)

    run = Run(fake, on_progress=slow)
    run.start()
    assert check_settled(run).status == "completed"


# -- 5. jobStats that returns garbage or fails for good ------------------------------------


GARBAGE = {
    "empty": lambda: {},
    "wrong-types": lambda: {"type": "2", "memory_remaining": "lots", "time_elapsed": None},
    "unknown-type": lambda: {"type": 9},
    "not-running-for-good": lambda: (_ for _ in ()).throw(fl.libvirtError(
        "Requested operation is not valid: domain is not running",
        C.VIR_ERR_OPERATION_INVALID, C.VIR_FROM_QEMU)),
    "no-domain-for-good": lambda: (_ for _ in ()).throw(fl.libvirtError(
        "Domain not found", C.VIR_ERR_NO_DOMAIN, C.VIR_FROM_QEMU)),
}


def garbage_stats(fake, monkeypatch, kind):
    """From 2 s on (our job runs), jobStats answers ``kind``."""
    real = fl.virDomain.jobStats

    def stats(self, flags=0):
        if flags or fake.clock.now() < 2:
            return real(self, flags)
        return GARBAGE[kind]()

    monkeypatch.setattr(fl.virDomain, "jobStats", stats)


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_stats_the_completion_timeout_fires_on_the_clock(fake, monkeypatch, kind):
    hopeless_guest(fake)
    garbage_stats(fake, monkeypatch, kind)
    run = Run(fake, make_conf(live_migration_completion_timeout=5))  # 20 s
    run.start()
    outcome = check_settled(run)
    assert outcome.status == "timed_out"
    (abort,) = actions(outcome, "abort")
    assert abort.ok and "could not be read" in abort.reason and 20 < abort.at < 30


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_stats_without_a_timeout_the_monitor_gives_up_on_the_clock(
        fake, monkeypatch, kind):
    hopeless_guest(fake)
    garbage_stats(fake, monkeypatch, kind)
    run = Run(fake, make_conf(live_migration_completion_timeout=0))
    run.start()
    outcome = check_settled(run)
    assert outcome.status == "failed" and "no usable reading" in outcome.monitor_error


def test_an_unknown_job_type_is_logged_once_then_summarised(fake, monkeypatch, caplog):
    hopeless_guest(fake)
    garbage_stats(fake, monkeypatch, "unknown-type")
    run = Run(fake, make_conf(live_migration_completion_timeout=5))
    with caplog.at_level(logging.INFO, logger="migrator"):
        run.start()
        outcome = check_settled(run)
    lines = [r.getMessage() for r in caplog.records if "unknown job type 9" in r.getMessage()]
    assert len(lines) == 2, lines  # once, then the summary
    assert "seen" in lines[1] and "times over" in lines[1]
    assert sum("unknown job type" in n for n in outcome.notes) == 2


# -- 6. every handle settles, every future resolves -----------------------------------------


def test_controls_from_recover_method_after_a_queued_cancel_resolve(fake):
    hopeless_guest(fake, "vm0")
    hopeless_guest(fake, "vm1")
    conf = make_conf(max_concurrent_live_migrations=1, live_migration_completion_timeout=2)
    first = Run(fake, conf, name="vm0")
    first.start()
    futures = []
    done = threading.Event()

    def recover(outcome):
        futures.extend([second.abort(), second.force_complete()])
        done.set()

    second = first.driver.live_migration(first.conn.lookupByName("vm1"), "dst",
                                         post_method=recover, recover_method=recover)
    assert second.abort().result(5) is True
    assert done.wait(10) and second.wait(10).status == "cancelled"
    for fut in futures:
        with pytest.raises(exception.NoActiveMigration):
            fut.result(5)
    check_settled(first)


def thread_cannot_start(monkeypatch, guest):
    """The migration thread of ``guest`` fails to start, as when the process has no more."""
    real = concurrency.spawn

    def spawn(target, name):
        if name == f"migrator-{guest}":
            raise RuntimeError("can't start new thread")
        return real(target, name)

    monkeypatch.setattr(concurrency, "spawn", spawn)


def test_a_thread_that_cannot_start_now_is_an_error_and_no_ghost(fake, monkeypatch):
    converging_guest(fake, "vm0")
    converging_guest(fake, "vm1")
    thread_cannot_start(monkeypatch, "vm0")
    run = Run(fake, make_conf(max_concurrent_live_migrations=1), name="vm0")
    with pytest.raises(exception.MigratorError, match="can't start new thread"):
        run.start()
    assert run.calls.post == run.calls.recover == [] and run.driver.active_migrations() == []
    later = Run(fake, name="vm1")
    later.driver = run.driver  # the same driver: its only slot is free again
    later.start()
    assert check_settled(later).status == "completed"


def test_a_queued_migration_whose_thread_cannot_start_settles(fake, monkeypatch):
    """Its callback runs; controls from it resolve; the queue goes on with the next one."""
    hopeless_guest(fake, "vm0")
    converging_guest(fake, "vm1")
    converging_guest(fake, "vm2")
    thread_cannot_start(monkeypatch, "vm1")
    conf = make_conf(max_concurrent_live_migrations=1, live_migration_completion_timeout=5)
    first = Run(fake, conf, name="vm0")
    first.start()
    futures, outcomes = [], []

    def recover(outcome):
        outcomes.append(outcome)
        futures.extend([handles[0].abort(), handles[0].force_complete()])

    handles = [first.driver.live_migration(first.conn.lookupByName(name), "dst",
                                           post_method=outcomes.append,
                                           recover_method=recover if name == "vm1"
                                           else outcomes.append)
               for name in ("vm1", "vm2")]
    bad, good = (h.wait(30) for h in handles)
    assert check_settled(first).status == "timed_out"
    assert bad.status == "failed" and "can't start new thread" in bad.error
    for fut in futures:
        with pytest.raises(exception.NoActiveMigration):
            fut.result(5)
    assert good.status == "completed" and running_on(fake.world, "vm2") == ["dst"]


def test_queued_migrations_hold_no_thread(fake):
    for i in range(6):
        hopeless_guest(fake, f"vm{i}")
    conf = make_conf(max_concurrent_live_migrations=1, live_migration_completion_timeout=1)
    first = Run(fake, conf, name="vm0")
    first.start()
    handles = [first.driver.live_migration(first.conn.lookupByName(f"vm{i}"), "dst",
                                           post_method=lambda o: None,
                                           recover_method=lambda o: None) for i in range(1, 6)]
    names = {t.name for t in threading.enumerate()}
    assert not any(f"migrator-vm{i}" in names for i in range(1, 6))
    assert [h.status for h in handles] == ["queued"] * 5
    for h in [first.handle, *handles]:
        assert h.wait(60) is not None


# -- 10. the API refuses bad arguments before anything starts --------------------------------


@pytest.mark.parametrize(("fields", "match"), [
    (dict(block_migration=True, disks="vda"), "not the string 'vda'"),
    (dict(block_migration=True, disks=("vda", "vda")), "more than once"),
    (dict(block_migration=True, disks=("vdz",)), "no disk vdz"),
    (dict(block_migration=True, disks=("vda",), disk_sizes=(math.nan,)), "nan"),
    (dict(block_migration=True, disks=("vda",), disk_sizes=(-1,)), "-1"),
    (dict(block_migration=True, disks=("vda",), disk_sizes=(True,)), "True"),
    (dict(block_migration=True, disks=("vda",), disk_sizes=(1, 2)), "2 value"),
    (dict(block_migration=True, disks=("vda",), disk_sizes="10G"), "list of byte counts"),
    (dict(block_migration="yes"), "True or False"),
    (dict(inbound_adr="10.0.0.2"), "unknown live_migration"),
])
def test_bad_arguments_are_refused_before_anything_starts(fake, fields, match):
    fake.world.add_guest("src", "vm1", memory=1 * GiB, dirty_rate=10 * MiB,
                         disks={"vda": 10 * GiB})
    run = Run(fake, **fields)
    with pytest.raises(exception.InvalidRequest, match=match) as err:
        run.start()
    assert isinstance(err.value, ValueError)
    assert fake.world.jobs == [] and run.driver.active_migrations() == []
    assert run.calls.post == run.calls.recover == []


# -- a compute service that stops and starts again -------------------------------------------


def wait_until(pred, what, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def stop_service_mid_migration(fake, conf, at=5.0, **fields):
    """vm0 migrates, vm1 waits in the queue; the service stops at ``at`` s of virtual time."""
    first = Run(fake, conf, name="vm0", **fields)
    stopped: list = []
    first.at(at, "stop", lambda h: stopped.extend(first.driver.cleanup_host(timeout=0)))
    first.start()
    queued = Calls()
    second = first.driver.live_migration(first.conn.lookupByName("vm1"), "dst",
                                         post_method=queued.post_method,
                                         recover_method=queued.recover_method)
    assert first.handle.wait(30) is not None and second.wait(30) is not None
    return first, second, queued, stopped


def test_cleanup_host_cancels_the_queue_and_leaves_running_jobs_to_libvirt(fake):
    hopeless_guest(fake, "vm0")
    converging_guest(fake, "vm1")
    conf = make_conf(max_concurrent_live_migrations=1)
    first, second, queued, stopped = stop_service_mid_migration(fake, conf)
    assert second.outcome.status == "cancelled" and queued.recover == [second.outcome]
    assert "service is stopping" in second.outcome.error
    outcome = first.handle.outcome
    assert stopped == [first.handle]
    assert outcome.status == "unknown" and outcome.rule == "service-stopped"
    assert "re-attach" in outcome.error and first.calls.recover == [outcome]
    (job,) = fake.world.jobs  # the job goes on inside libvirt, untouched
    assert job.rec.name == "vm0" and not job.abort_pending
    # only the call libvirt still blocks in is left (a process that exits drops it)
    assert wait_for_threads() == ["migrator-op-vm0"]
    assert first.driver.active_migrations() == []


def restarted(fake, conf):
    """A new service process: a new connection and driver, init_host() run."""

    driver, conn = open_driver(fake, conf)
    return driver, conn


@pytest.mark.parametrize("dest_uri", [None, DEST_URI], ids=["source-only", "dest-asked"])
def test_reattached_after_a_restart_a_converging_job_completes(fake, dest_uri):
    converging_guest(fake, "vm0")
    converging_guest(fake, "vm1")
    conf = make_conf(max_concurrent_live_migrations=1)
    first, *_ = stop_service_mid_migration(fake, conf, at=3.0)
    driver, conn = restarted(fake, conf)
    (found,) = driver.running_at_start
    assert found.name == "vm0" and 2.5 < found.elapsed < 4.5
    calls = Calls()
    handle = driver.reattach(conn.lookupByName("vm0"), "dst", dest_connect_uri=dest_uri,
                             post_method=calls.post_method, recover_method=calls.recover_method)
    outcome = handle.wait(30)
    assert outcome.status == "completed" and calls.post == [outcome]
    assert outcome.rule == ("destination-runs" if dest_uri else "source-undefined")
    assert outcome.total_seconds > found.elapsed  # counted from the job's start
    assert running_on(fake.world, "vm0") == ["dst"]


def test_reattached_policy_counts_from_the_job_start(fake):
    """The completion timeout (10 s/GiB x 4 GiB = 40 s) fires 40 s after the job began,
    not 40 s after the re-attach."""
    hopeless_guest(fake, "vm0")
    converging_guest(fake, "vm1")
    conf = make_conf(max_concurrent_live_migrations=1, live_migration_completion_timeout=10)
    stop_service_mid_migration(fake, conf, at=15.0)
    driver, conn = restarted(fake, conf)
    calls = Calls()
    handle = driver.reattach(conn.lookupByName("vm0"), "dst", post_method=calls.post_method,
                             recover_method=calls.recover_method)
    outcome = handle.wait(30)
    assert outcome.status == "timed_out" and calls.recover == [outcome]
    (abort,) = actions(outcome, "abort")
    assert 40 < abort.at < 42
    assert running_on(fake.world, "vm0") == ["src"] and fake.world.jobs == []


def test_reattached_in_post_copy_completes_in_post_copy(fake):
    hopeless_guest(fake, "vm0")
    converging_guest(fake, "vm1")
    conf = post_copy_conf(max_concurrent_live_migrations=1)
    stop_service_mid_migration(fake, conf, at=21.0)
    driver, conn = restarted(fake, conf)
    calls = Calls()
    handle = driver.reattach(conn.lookupByName("vm0"), "dst", post_method=calls.post_method,
                             recover_method=calls.recover_method)
    outcome = handle.wait(30)
    assert outcome.status == "completed" and outcome.mode == "post-copy"
    assert running_on(fake.world, "vm0") == ["dst"]


def test_reattach_refuses_a_guest_without_a_migration(fake):
    converging_guest(fake, "vm0")
    driver, conn = restarted(fake, make_conf())
    assert driver.running_at_start == []
    with pytest.raises(exception.MigrationRefused, match="no outgoing migration runs on vm0"):
        driver.reattach(conn.lookupByName("vm0"), "dst", post_method=print,
                        recover_method=print)
    assert driver.active_migrations() == []
