"""LiveMigrationDriver end to end on the simulated hypervisor (fake libvirt, virtual clock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from migrator import constants as C
from migrator import exception
from migrator.driver import LiveMigrationDriver, MigrationRequest, migrate_and_wait
from migrator.testing import GiB, MiB
from migrator.testing.config import make_conf
from migrator.testing.fixture import FakeLibvirtFixture
from tests.unit.helpers.driver_run import Calls, open_driver, post_copy_conf

ROOT = Path(__file__).resolve().parents[2]



def start(fake, conf, name="vm1", dest="dst", calls=None, **fields):
    driver, conn = open_driver(fake, conf)
    calls = calls or Calls()
    handle = driver.live_migration(conn.lookupByName(name), dest,
                                   post_method=calls.post_method,
                                   recover_method=calls.recover_method, **fields)
    return driver, handle, calls


def finish(handle, calls, timeout=30):
    outcome = handle.wait(timeout)
    assert outcome is not None, "the migration did not settle"
    assert len(calls.post) + len(calls.recover) == 1, "exactly one callback"
    return outcome


def where(fake, name="vm1"):
    return {h: fake.world.domain(h, name) for h in ("src", "dst")}


def test_converging_guest_completes(fake):
    fake.world.add_guest("src", "vm1", memory=8 * GiB, working_set=2 * GiB,
                         dirty_rate=400 * MiB)
    before = len(fake.world.connections())
    _, handle, calls = start(fake, make_conf(), dest_connect_uri="qemu+tcp://dst/system")
    outcome = finish(handle, calls)
    assert outcome.status == "completed" and outcome.mode == "pre-copy"
    assert calls.post == [outcome] and not calls.recover
    assert outcome.downtime_ms is not None and outcome.downtime_ms <= 300
    loc = where(fake)
    assert loc["src"] is None and loc["dst"].active and loc["dst"].persistent
    assert outcome.progress.percent == 100
    assert handle.progress.final
    assert len(fake.world.connections()) == before + 1  # all but the test's own closed


def test_no_connection_to_destination_unless_asked(fake):
    fake.world.add_guest("src", "vm1", memory=1 * GiB)
    opened = []
    real_open = fake.module.open

    def spy(uri):
        opened.append(uri)
        return real_open(uri)

    conn = real_open("qemu+tcp://src/system")
    driver = LiveMigrationDriver(make_conf(), conn, clock=fake.clock, open_connection=spy)
    driver.init_host()
    outcome = migrate_and_wait(driver, conn.lookupByName("vm1"), "dst", timeout=30)
    assert outcome.status == "completed" and outcome.downtime_ms is None
    assert opened and all("//src/" in u for u in opened)


def test_hopeless_guest_aborted_at_timeout(fake):
    fake.world.add_guest("src", "vm1", memory=4 * GiB, dirty_rate=2 * GiB)
    _, handle, calls = start(fake, make_conf(live_migration_completion_timeout=50))
    outcome = finish(handle, calls)
    assert outcome.status == "timed_out"
    assert calls.recover == [outcome] and not calls.post
    assert 200 < outcome.total_seconds < 205  # 50 s/GiB x 4 GiB
    loc = where(fake)
    assert loc["src"].active and loc["dst"] is None


def test_timeout_force_complete_suspends_and_completes(fake):
    fake.world.add_guest("src", "vm1", memory=4 * GiB, dirty_rate=2 * GiB)
    conf = make_conf(live_migration_completion_timeout=10,
                     live_migration_timeout_action="force_complete")
    _, handle, calls = start(fake, conf)
    outcome = finish(handle, calls)
    assert outcome.status == "completed" and outcome.mode == "paused"
    assert [a.action for a in outcome.actions].count("suspend") == 1
    assert where(fake)["dst"].active  # libvirt resumes the guest on the destination


def test_timeout_force_complete_post_copy(fake):
    fake.world.add_guest("src", "vm1", memory=4 * GiB, dirty_rate=2 * GiB)
    conf = make_conf(live_migration_completion_timeout=10,
                     live_migration_timeout_action="force_complete",
                     live_migration_permit_post_copy=True)
    _, handle, calls = start(fake, conf)
    outcome = finish(handle, calls)
    assert outcome.status == "completed" and outcome.mode == "post-copy"
    assert [a.action for a in outcome.actions].count("start_post_copy") == 1
    assert "suspend" not in [a.action for a in outcome.actions]


def test_auto_converge_raises_throttle_until_it_converges(fake):
    fake.world.add_guest("src", "vm1", memory=4 * GiB, dirty_rate=1600 * MiB)
    driver, conn = open_driver(fake, make_conf(live_migration_permit_auto_converge=True))
    throttles = []
    outcome = migrate_and_wait(driver, conn.lookupByName("vm1"), "dst", timeout=30,
                               on_sample=lambda t, s: throttles.append(s.auto_converge_throttle))
    assert outcome.status == "completed"
    seen = sorted({t for t in throttles if t})
    assert seen[0] == 20 and len(seen) >= 3 and seen == sorted(seen)


def test_block_migration_copies_disk(fake):
    fake.world.add_guest("src", "vm1", memory=2 * GiB, working_set=256 * MiB,
                         dirty_rate=50 * MiB, disks={"vda": 10 * GiB})
    _, handle, calls = start(fake, make_conf(), block_migration=True, disks=("vda",),
                             disk_sizes=(10 * GiB,))
    outcome = finish(handle, calls)
    assert outcome.status == "completed"
    assert handle.plan.flags == 155 and handle.plan.params["migrate_disks"] == ["vda"]


def test_inbound_addr_data_uri(fake):
    fake.world.hosts["dst"].aliases = frozenset({"10.20.0.3"})
    fake.world.add_guest("src", "vm1", memory=1 * GiB, dirty_rate=10 * MiB)
    _, handle, calls = start(fake, make_conf(), inbound_addr="10.20.0.3")
    outcome = finish(handle, calls)
    assert outcome.status == "completed"
    assert handle.plan.migrate_uri == "tcp://10.20.0.3"


def test_paused_guest_with_post_copy_permitted(fake):
    fake.world.add_guest("src", "vm1", memory=2 * GiB, state="paused")
    _, handle, calls = start(fake, make_conf(live_migration_permit_post_copy=True))
    outcome = finish(handle, calls)
    assert outcome.status == "completed"
    assert not handle.plan.post_copy


def test_unreachable_destination_fails_cleanly(fake):
    fake.world.add_guest("src", "vm1", memory=1 * GiB)
    _, handle, calls = start(fake, make_conf(), dest="nowhere")
    outcome = finish(handle, calls)
    assert outcome.status == "failed" and calls.recover
    assert "unable to connect" in outcome.error
    assert where(fake)["src"].active


def test_refused_plan_raises_and_calls_nothing(fake):
    fake.world.add_guest("src", "vm1", memory=1 * GiB, disks={"vda": GiB})
    calls = Calls()
    with pytest.raises(exception.MigrationRefused):
        start(fake, make_conf(live_migration_tunnelled=True), calls=calls,
              block_migration=True, disks=("vda",))
    with pytest.raises(exception.InvalidAddress):
        start(fake, make_conf(), dest="dst/evil", calls=calls)
    assert not calls.post and not calls.recover


def test_init_host_fails_fast():
    fx = FakeLibvirtFixture()
    fx.setUp()
    try:
        fx.world.add_host("src", qemu_version=(9, 1, 0))
        conn = fx.module.open("qemu+tcp://src/system")
        driver = LiveMigrationDriver(make_conf(live_migration_parallel_connections=4,
                                               live_migration_permit_post_copy=True), conn)
        with pytest.raises(exception.UnsupportedByHost, match="10.1.0"):
            driver.init_host()
        with pytest.raises(exception.MigratorError, match="init_host"):
            driver.plan(None, MigrationRequest(dest="dst"))
    finally:
        fx.cleanUp()


# --- abort and force-complete at every moment ------------------------------------


def slow_guest(fake):
    fake.world.add_guest("src", "vm1", memory=4 * GiB, dirty_rate=2 * GiB)


def test_abort_during_pre_copy(fake):
    slow_guest(fake)
    _, handle, calls = start(fake, make_conf())
    fake.world.after(30, handle.abort)
    outcome = finish(handle, calls)
    assert outcome.status == "cancelled" and calls.recover
    assert where(fake)["src"].active and where(fake)["dst"] is None


def _domains_reachable_from(root) -> list:
    """The fake virDomain objects that ``root`` keeps alive (breadth-first over referents)."""
    import gc
    import types

    from migrator.testing import fakelibvirt

    seen, queue, found = {id(root)}, [root], []
    while queue:
        obj = queue.pop()
        if isinstance(obj, fakelibvirt.virDomain):
            found.append(obj)
        if isinstance(obj, (type, types.ModuleType)):
            continue  # classes and modules lead to everything
        for ref in gc.get_referents(obj):
            if id(ref) not in seen:
                seen.add(id(ref))
                queue.append(ref)
    return found


@pytest.mark.parametrize("ending", ["completed", "cancelled"])
def test_settled_handle_keeps_no_libvirt_object_of_the_migration(fake, ending):
    # A libvirtError kept with its traceback keeps the frames of migrateToURI3, whose
    # virDomain keeps its connection (a libvirtd client slot, on real libvirt) open.
    if ending == "completed":
        fake.world.add_guest("src", "vm1", memory=1 * GiB)
    else:
        slow_guest(fake)
    _, handle, calls = start(fake, make_conf())
    if ending == "cancelled":
        fake.world.after(30, handle.abort)
    outcome = finish(handle, calls)
    assert outcome.status == ending
    assert _domains_reachable_from(handle) == []


def test_abort_before_start_in_queue(fake):
    slow_guest(fake)
    fake.world.add_guest("src", "vm2", memory=4 * GiB, dirty_rate=2 * GiB)
    conf = make_conf(max_concurrent_live_migrations=1, live_migration_completion_timeout=20)
    driver, first, calls1 = start(fake, conf)
    calls2 = Calls()
    conn = fake.module.open("qemu+tcp://src/system")
    second = driver.live_migration(conn.lookupByName("vm2"), "dst",
                                   post_method=calls2.post_method,
                                   recover_method=calls2.recover_method)
    fut = second.abort()
    out2 = finish(second, calls2)
    assert out2.status == "cancelled" and "queued" in out2.error
    assert fut.result(5) is True
    assert finish(first, calls1).status == "timed_out"
    assert fake.world.domain("src", "vm2").active


def test_force_complete_during_pre_copy_without_post_copy(fake):
    slow_guest(fake)
    _, handle, calls = start(fake, make_conf())
    fake.world.after(20, handle.force_complete)
    outcome = finish(handle, calls)
    assert outcome.status == "completed" and outcome.mode == "paused"


def test_force_complete_then_abort_in_post_copy(fake):
    slow_guest(fake)
    _, handle, calls = start(fake, make_conf(live_migration_permit_post_copy=True))
    results = {}

    def force_then_abort():
        # the abort comes once the switch to post-copy has been made
        results["fc"] = handle.force_complete()
        results["fc"].add_done_callback(lambda f: results.setdefault("abort", handle.abort()))

    fake.world.after(20, force_then_abort)
    outcome = finish(handle, calls)
    assert outcome.status == "completed" and outcome.mode == "post-copy"
    with pytest.raises((exception.AbortFailed, exception.NoActiveMigration)):
        results["abort"].result(5)


def test_controls_after_completion(fake):
    fake.world.add_guest("src", "vm1", memory=1 * GiB)
    _, handle, calls = start(fake, make_conf())
    finish(handle, calls)
    with pytest.raises(exception.NoActiveMigration):
        handle.abort().result(1)
    with pytest.raises(exception.NoActiveMigration):
        handle.force_complete().result(1)


def test_callback_exception_is_reported(fake):
    fake.world.add_guest("src", "vm1", memory=1 * GiB)
    driver, conn = open_driver(fake)

    def explode(outcome):
        raise RuntimeError("caller bug")

    handle = driver.live_migration(conn.lookupByName("vm1"), "dst", post_method=explode,
                                   recover_method=explode)
    outcome = handle.wait(30)
    assert outcome.status == "completed"
    assert outcome.callback_error == "RuntimeError: caller bug"


def test_same_guest_twice_refused(fake):
    slow_guest(fake)
    driver, handle, calls = start(fake, make_conf(live_migration_completion_timeout=20))
    conn = fake.module.open("qemu+tcp://src/system")
    with pytest.raises(exception.MigrationRefused, match="already being migrated"):
        driver.live_migration(conn.lookupByName("vm1"), "dst", post_method=print,
                              recover_method=print)
    finish(handle, calls)


def test_connections_closed_afterwards(fake):
    fake.world.add_guest("src", "vm1", memory=1 * GiB)
    before = len(fake.world.connections())
    _, handle, calls = start(fake, make_conf())
    finish(handle, calls)
    # only the test's own connection stays open
    assert len(fake.world.connections()) == before + 1


def test_two_hour_migration_runs_in_virtual_time(fake):
    # 64 GiB over 1 Gbit/s that never converges: aborted after 7168 s of virtual time.
    # (How fast in wall time is the sim benchmark's figure, printed here for a look.)
    fake.world.hosts["src"].link_rate = fake.world.hosts["dst"].link_rate = 1e9 / 8
    fake.world.add_guest("src", "vm1", memory=64 * GiB, dirty_rate=200 * MiB)
    t0 = time.perf_counter()
    _, handle, calls = start(fake, make_conf(live_migration_completion_timeout=112))
    outcome = finish(handle, calls, timeout=60)
    print(f"\n7168 s of migration simulated in {time.perf_counter() - t0:.2f} s wall")
    assert outcome.status == "timed_out" and outcome.total_seconds > 7000


EVENTLET_SCRIPT = textwrap.dedent(
    """
    import eventlet
    eventlet.monkey_patch()
    import json, time
    from oslo_config import cfg
    import migrator.conf
    from migrator.driver import LiveMigrationDriver
    from migrator.testing import GiB, MiB
    from migrator.testing.fixture import FakeLibvirtFixture

    fx = FakeLibvirtFixture(require_event_loop=False)
    fx.setUp()
    fx.world.add_host("src"); fx.world.add_host("dst")
    for i in range(20):
        fx.world.add_guest("src", f"vm{i}", memory=2 * GiB, working_set=GiB // 2,
                           dirty_rate=200 * MiB)
    conf = cfg.ConfigOpts(); migrator.conf.register_opts(conf); conf([], default_config_files=[])
    conf.set_override("max_concurrent_live_migrations", 20)
    conn = fx.module.open("qemu+tcp://src/system")
    driver = LiveMigrationDriver(conf, conn, clock=fx.clock)
    driver.init_host()
    ticks = []
    def ticker():
        while True:
            ticks.append(time.monotonic()); eventlet.sleep(0.001)
    eventlet.spawn(ticker)
    handles = [driver.live_migration(conn.lookupByName(f"vm{i}"), "dst",
                                     post_method=lambda o: None, recover_method=lambda o: None)
               for i in range(20)]
    outcomes = [h.wait(60) for h in handles]
    print(json.dumps({"statuses": sorted({o.status for o in outcomes}), "ticks": len(ticks)}))
    fx.cleanUp()
    """
)


def test_under_eventlet_monkey_patching():
    proc = subprocess.run([sys.executable, "-c", EVENTLET_SCRIPT], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env={**os.environ,
                                                                  "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["statuses"] == ["completed"]
    assert result["ticks"] > 0  # other green threads ran while migrations were monitored


def test_adaptive_policy_chosen_by_option_and_stall_is_its_own_outcome(fake):
    slow_guest(fake)
    _, handle, calls = start(fake, make_conf(live_migration_convergence="adaptive"))
    outcome = finish(handle, calls)
    assert outcome.status == "stalled" and calls.recover
    assert outcome.total_seconds < 200  # steps would wait for the 3200 s timeout
    assert "needs >=" in outcome.error and "dirty rate" in outcome.error
    assert where(fake)["src"].active and where(fake)["dst"] is None


def test_adaptive_sets_needed_downtime_at_once(fake):
    # 2 GiB working set that fits a ~300 ms switchover at 10 Gbit/s only after a few passes
    fake.world.add_guest("src", "vm1", memory=16 * GiB, working_set=256 * MiB,
                         dirty_rate=900 * MiB)
    _, handle, calls = start(fake, make_conf(live_migration_convergence="adaptive"))
    outcome = finish(handle, calls)
    assert outcome.status == "completed"
    downtimes = [a.value for a in outcome.actions if a.action == "set_max_downtime"]
    assert max(downtimes) <= 500 and len(downtimes) >= 2


# --- post-copy failure and recovery --------------------------------------------------


def test_post_copy_link_failure_is_resumed_when_the_link_returns(fake):
    slow_guest(fake)
    fake.world.faults.postcopy_link_failure(after=0.5, restore_after=30)
    _, handle, calls = start(fake, post_copy_conf())
    outcome = finish(handle, calls)
    assert outcome.status == "completed" and outcome.mode == "post-copy"
    assert calls.post == [outcome]
    assert any("resumed after" in n for n in outcome.notes)
    loc = where(fake)
    assert loc["src"] is None and loc["dst"].active


def test_post_copy_failure_not_resumable_in_time(fake):
    slow_guest(fake)
    fake.world.faults.postcopy_link_failure(after=0.5)  # never restored
    _, handle, calls = start(fake, post_copy_conf(live_migration_postcopy_recovery_timeout=60))
    outcome = finish(handle, calls)
    assert outcome.status == "postcopy_failed" and outcome.mode == "post-copy"
    assert calls.recover == [outcome]  # told, never rolled back: the guest is not on the source
    assert "could not be resumed within 60 s" in outcome.error
    assert not any(a.action == "abort" for a in outcome.actions)


def test_post_copy_failure_without_resume_support(fake):
    fake.world.hosts["src"].libvirt_version = (8, 4, 0)
    slow_guest(fake)
    fake.world.faults.postcopy_link_failure(after=0.5, restore_after=5)
    _, handle, calls = start(fake, post_copy_conf())
    outcome = finish(handle, calls)
    assert outcome.status == "postcopy_failed"
    assert "needs libvirt 8.5.0" in outcome.error


def test_post_copy_recovery_off(fake):
    slow_guest(fake)
    fake.world.faults.postcopy_link_failure(after=0.5, restore_after=5)
    _, handle, calls = start(fake, post_copy_conf(live_migration_postcopy_recovery_timeout=0))
    outcome = finish(handle, calls)
    assert outcome.status == "postcopy_failed" and "automatic resume is off" in outcome.error


def test_outcome_time_is_when_the_job_ended_not_the_next_poll(fake):
    # The virtual clock stops when migrateToURI3 returns, as real time would: the
    # monitor wakes on it, so the total is the job's end, not a multiple of the poll.
    fake.world.add_guest("src", "vm1", memory=1 * GiB, dirty_rate=10 * MiB)
    jobs: list = []
    fake.world.at(1.5, lambda: jobs.extend(fake.world.jobs))
    _, handle, calls = start(fake, make_conf())
    outcome = finish(handle, calls)
    (job,) = jobs
    assert outcome.status == "completed"
    assert outcome.total_seconds == pytest.approx(job.end_time, abs=1e-6)


@pytest.mark.parametrize("hook_raises", [False, True])
def test_post_copy_hook_runs_once_at_the_switch(fake, hook_raises):
    slow_guest(fake)
    seen = []

    def on_post_copy():
        # called at the switch: the guest is already paused on the source for post-copy
        seen.append(fake.world.domain("src", "vm1").state)
        if hook_raises:
            raise RuntimeError("database down")

    conf = make_conf(live_migration_permit_post_copy=True)
    _, handle, calls = start(fake, conf, on_post_copy=on_post_copy)
    fake.world.after(20, handle.force_complete)
    outcome = finish(handle, calls)
    assert outcome.status == "completed" and outcome.mode == "post-copy"
    assert seen == [C.VIR_DOMAIN_PAUSED]
    assert any("post-copy hook raised RuntimeError" in n for n in outcome.notes) == hook_raises


def test_post_copy_hook_not_called_without_post_copy(fake):
    slow_guest(fake)
    seen = []
    _, handle, calls = start(fake, make_conf(), on_post_copy=lambda: seen.append(1))
    fake.world.after(20, handle.force_complete)
    assert finish(handle, calls).mode == "paused" and seen == []


@pytest.mark.parametrize("job_type,status", [(C.VIR_DOMAIN_JOB_FAILED, "failed"),
                                             (C.VIR_DOMAIN_JOB_CANCELLED, "cancelled")])
def test_job_record_overrides_a_returned_migrate_call(fake, monkeypatch, job_type, status):
    """migrateToURI3 returns, the source's finished-job record says otherwise (how Nova's
    test double fails a migration): the record wins, and the guest is still on the source."""
    from migrator.testing import fakelibvirt as fl

    fake.world.add_guest("src", "vm1", memory=1 * GiB)
    real_stats = fl.virDomain.jobStats
    monkeypatch.setattr(fl.virDomain, "migrateToURI3", lambda self, *a, **k: 0)
    monkeypatch.setattr(
        fl.virDomain, "jobStats",
        lambda self, flags=0: {"type": job_type} if flags & C.VIR_DOMAIN_JOB_STATS_COMPLETED
        else real_stats(self, flags))
    _, handle, calls = start(fake, make_conf())
    outcome = finish(handle, calls)
    assert outcome.rollback_safe and calls.recover == [outcome]
    assert status == "cancelled" or outcome.status == status
    assert where(fake)["src"].active
