"""Injected faults: failing and hanging calls, dropped connections, dying migrations."""

from __future__ import annotations

import threading
import time

import pytest

from migrator import constants as C
from migrator.testing import errors as E
from migrator.testing import fakelibvirt as fake
from migrator.testing.world import GiB, MiB, World

from .conftest import BASE_FLAGS, DST_URI, add_vm, err_tuple, error_of, start_run

POSTCOPY = BASE_FLAGS | C.VIR_MIGRATE_POSTCOPY
RESUME = POSTCOPY | C.VIR_MIGRATE_POSTCOPY_RESUME


def test_a_call_fails_once_then_works(world: World) -> None:
    add_vm(world)
    dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
    world.faults.fail("jobStats", code=C.VIR_ERR_INTERNAL_ERROR, message="internal error: boom")
    assert err_tuple(error_of(dom.jobStats)) == (1, 10, "internal error: boom")
    assert dom.jobStats() == {"type": 0}


def test_a_call_fails_n_times_or_always(world: World) -> None:
    add_vm(world)
    conn = fake.open("qemu+tcp://src/system")
    dom = conn.lookupByName("vm1")
    world.faults.fail("state", E.domain_not_running(), times=2)
    assert error_of(dom.state).get_error_code() == 55
    assert error_of(dom.state).get_error_code() == 55
    assert dom.state()[0] == C.VIR_DOMAIN_RUNNING
    world.faults.fail("lookupByName", fake.libvirtError("x", 38, 7), times=None)
    for _ in range(5):
        assert err_tuple(error_of(lambda: conn.lookupByName("vm1")))[:2] == (38, 7)
    world.faults.clear()
    assert conn.lookupByName("vm1") == dom


def test_rules_can_target_a_host_or_a_guest(world: World) -> None:
    add_vm(world)
    add_vm(world, "vm2")
    conn = fake.open("qemu+tcp://src/system")
    world.faults.fail("isActive", E.no_job(), guest="vm2", times=None)
    world.faults.fail("getHostname", E.socket_closed(), host="dst")
    assert conn.lookupByName("vm1").isActive() == 1
    assert error_of(conn.lookupByName("vm2").isActive).get_error_code() == 55
    assert conn.getHostname() == "src"
    assert error_of(fake.open(DST_URI).getHostname).get_error_code() == 1


def test_the_no_ram_info_race(world: World) -> None:
    add_vm(world)
    dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
    world.faults.no_ram_info()
    exc = error_of(dom.jobStats)
    assert exc.get_error_code() == C.VIR_ERR_INTERNAL_ERROR
    assert C.NO_RAM_INFO_MESSAGE in exc.get_error_message()


def test_open_can_fail(world: World) -> None:
    world.faults.fail("open", E.connection_refused("src", 16509))
    assert error_of(lambda: fake.open("qemu+tcp://src/system")).get_error_code() == 38
    assert fake.open("qemu+tcp://src/system").isAlive() == 1


def test_abort_that_hangs_in_virtual_time(world: World) -> None:
    add_vm(world, memory=8 * GiB, dirty_rate=2 * GiB)
    world.faults.hang("abortJob", 5.0)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 100})
    returned: list[float] = []

    def abort() -> None:
        run.mdom.abortJob()
        returned.append(world.clock.now())

    def at_10s(now: float, sample) -> None:
        if now == 10.0:
            threading.Thread(target=abort, daemon=True).start()

    run.monitor(action=at_10s)
    assert returned and returned[0] >= 15.0  # it returned only after 5 virtual seconds
    assert run.error is not None and run.error.get_error_code() == 78


def test_hang_in_real_time_then_raise(world: World) -> None:
    add_vm(world)
    dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
    world.faults.hang("abortJob", 0.2, real=True, error=E.state_lock_timeout())
    start = time.monotonic()
    exc = error_of(dom.abortJob)
    assert time.monotonic() - start >= 0.2
    assert exc.get_error_code() == C.VIR_ERR_OPERATION_TIMEOUT
    assert world.clock.now() == 0.0


def test_a_virtual_hang_inside_autorun_moves_the_clock_itself(world: World) -> None:
    add_vm(world)
    dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
    world.autorun = True
    world.faults.hang("suspend", 7.0)
    dom.suspend()
    assert world.clock.now() == 7.0


def test_dropped_connection(world: World) -> None:
    add_vm(world)
    conn = fake.open("qemu+tcp://src/system")
    other = fake.open("qemu+tcp://src/system")
    closed: list[int] = []
    conn.registerCloseCallback(lambda c, reason, opaque: closed.append(reason), None)
    dom = conn.lookupByName("vm1")
    world.faults.drop_connection(conn)
    assert conn.isAlive() == 0
    assert closed == [fake.VIR_CONNECT_CLOSE_REASON_EOF]
    for call in (dom.jobStats, conn.getHostname, lambda: conn.lookupByName("vm1")):
        assert err_tuple(error_of(call)) == (1, 7, "internal error: client socket is closed")
    assert other.lookupByName("vm1").isActive() == 1


def test_dropping_the_connection_of_a_running_migration_does_not_cancel_it(
    world: World,
) -> None:
    add_vm(world, dirty_rate=0)
    run = start_run(world).start()

    def drop_at_2s(now: float, sample) -> None:
        if now == 2.0:
            world.faults.drop_connection(run.dom.connect())

    run.monitor(action=drop_at_2s)
    assert err_tuple(run.error) == (1, 7, "internal error: client socket is closed")
    assert run.samples[-1][0] == 2.0  # the blocked call returned at once
    # the job itself goes on (README: a client disconnect does not cancel P2P)
    world.clock.advance(60)
    assert world.domain("dst", "vm1").state == C.VIR_DOMAIN_RUNNING
    assert world.domain("src", "vm1") is None


def test_destination_fails_mid_way(world: World) -> None:
    add_vm(world, memory=8 * GiB, dirty_rate=100 * MiB)
    world.faults.fail_migration(after=4.0)
    run = start_run(world).start().monitor()
    assert err_tuple(run.error) == (1, 7, "internal error: client socket is closed")
    assert run.mdom.state()[0] == C.VIR_DOMAIN_RUNNING
    assert world.domain("dst", "vm1") is None
    stats = run.mdom.jobStats(C.VIR_DOMAIN_JOB_STATS_COMPLETED)
    assert stats["type"] == C.VIR_DOMAIN_JOB_FAILED
    assert stats["time_elapsed"] == 4000
    assert stats["errmsg"] == "internal error: client socket is closed"


def test_destination_fails_with_a_chosen_error(world: World) -> None:
    add_vm(world)
    world.faults.fail_migration(
        at=2.5, error=E.job_failed("Unable to write to socket: Broken pipe")
    )
    run = start_run(world).start().monitor()
    assert err_tuple(run.error) == (
        9,
        10,
        "operation failed: job 'migration out' failed: Unable to write to socket: Broken pipe",
    )


def test_a_wrong_data_address_fails_at_the_start(world: World) -> None:
    add_vm(world)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_URI: "tcp://127.0.0.2"}).monitor()
    assert run.error is not None and run.error.get_error_code() == C.VIR_ERR_OPERATION_FAILED
    assert "127.0.0.2" in str(run.error)
    ok = start_run(world).start(params={C.VIR_MIGRATE_PARAM_URI: "tcp://127.0.0.3"}).monitor()
    assert ok.error is None


def switch_to_postcopy_at(run, when: float):
    def action(now: float, sample) -> None:
        if now == when:
            run.mdom.migrateStartPostCopy(0)

    return action


def test_postcopy_link_failure_and_recovery(world: World) -> None:
    add_vm(world, memory=8 * GiB, dirty_rate=2 * GiB)
    world.faults.postcopy_link_failure(after=2.0)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 500}, flags=POSTCOPY)
    run.monitor(action=switch_to_postcopy_at(run, 5.0))
    assert err_tuple(run.error) == (
        9,
        10,
        "operation failed: job 'migration out' failed in post-copy phase",
    )
    dst = fake.open(DST_URI).lookupByName("vm1")
    assert run.mdom.state() == [C.VIR_DOMAIN_PAUSED, C.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED]
    assert dst.state() == [C.VIR_DOMAIN_RUNNING, C.VIR_DOMAIN_RUNNING_POSTCOPY_FAILED]
    assert err_tuple(error_of(run.mdom.abortJob))[:2] == (55, 10)
    # the link is still down: resuming cannot reach the destination
    exc = error_of(lambda: run.mdom.migrateToURI3(DST_URI, {}, RESUME))
    assert err_tuple(exc) == (
        38,
        7,
        "unable to connect to server at 'dst:16509': Connection refused",
    )
    world.set_link("src", "dst", True)
    resumed = start_run(world)
    resumed.start(flags=RESUME).monitor()
    assert resumed.error is None
    assert dst.state() == [C.VIR_DOMAIN_RUNNING, C.VIR_DOMAIN_RUNNING_MIGRATED]
    assert world.domain("src", "vm1") is None


def test_postcopy_link_heals_by_itself(world: World) -> None:
    add_vm(world, memory=8 * GiB, dirty_rate=2 * GiB)
    world.faults.postcopy_link_failure(after=1.0, restore_after=10.0)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 500}, flags=POSTCOPY)
    run.monitor(action=switch_to_postcopy_at(run, 5.0))
    assert run.error is not None
    assert not world.link_up(world.host("src"), world.host("dst"))
    world.clock.advance(10.0)
    assert world.link_up(world.host("src"), world.host("dst"))
    resumed = start_run(world).start(flags=RESUME).monitor()
    assert resumed.error is None


def test_abort_job_flags_postcopy_pauses_and_resume_continues(world: World) -> None:
    add_vm(world, memory=8 * GiB, dirty_rate=2 * GiB)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 500}, flags=POSTCOPY)
    found: list = []

    def action(now: float, sample) -> None:
        if now == 3.0:
            found.append(error_of(lambda: run.mdom.abortJobFlags(C.VIR_DOMAIN_ABORT_JOB_POSTCOPY)))
            run.mdom.migrateStartPostCopy(0)
        if now == 6.0:
            assert run.mdom.abortJobFlags(C.VIR_DOMAIN_ABORT_JOB_POSTCOPY) == 0

    run.monitor(action=action)
    assert err_tuple(found[0])[:2] == (55, 10)  # not in post-copy yet
    assert run.error is not None and run.error.get_error_code() == 9
    assert run.mdom.state()[1] == C.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED
    assert run.mdom.jobStats()["type"] == C.VIR_DOMAIN_JOB_UNBOUNDED
    resumed = start_run(world).start(flags=RESUME).monitor()
    assert resumed.error is None
    assert world.domain("dst", "vm1").reason == C.VIR_DOMAIN_RUNNING_MIGRATED


@pytest.mark.parametrize(
    ("flags", "switch", "expected"),
    [
        (
            BASE_FLAGS | C.VIR_MIGRATE_POSTCOPY_RESUME,
            False,
            "argument unsupported: resuming failed post-copy migration requires post-copy to "
            "be enabled",
        ),
        (
            RESUME,
            False,
            "Requested operation is not valid: migration of domain vm1 is not in post-copy phase",
        ),
        (
            RESUME,
            True,
            "Requested operation is not valid: post-copy migration of domain vm1 has not failed",
        ),
    ],
)
def test_resume_is_refused_unless_postcopy_failed(
    world: World, flags: int, switch: bool, expected: str
) -> None:
    add_vm(world, memory=8 * GiB, dirty_rate=2 * GiB)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 500}, flags=POSTCOPY)
    found: list = []

    def action(now: float, sample) -> None:
        if now == 3.0:
            if switch:
                run.mdom.migrateStartPostCopy(0)
            found.append(error_of(lambda: run.mdom.migrateToURI3(DST_URI, {}, flags)))
            if not switch:
                run.mdom.abortJob()

    run.monitor(action=action)
    assert found[0].get_error_message() == expected


def test_shutdown_wakes_blocked_callers(world: World) -> None:
    add_vm(world)
    run = start_run(world).start()
    while not world.jobs:
        threading.Event().wait(0.005)
    world.shutdown()
    assert run.done.wait(5)
    assert run.error is not None and run.error.get_error_code() == 1
