"""Whole migrations through the fake: what a polling driver sees, and where the guest ends."""

from __future__ import annotations

import threading

import pytest

from migrator import constants as C
from migrator.testing import fakelibvirt as fake
from migrator.testing.world import (
    GiB,
    MiB,
    SharedConnectionHang,
    SimulationStalled,
    Timings,
    World,
)
from tests.unit.helpers.precopy_reference import reference

from .conftest import (
    BASE_FLAGS,
    DST_URI,
    add_vm,
    err_tuple,
    error_of,
    make_fixture,
    start_run,
    wait_until,
)

GBIT = 1e9 / 8


def listen(world: World, host: str) -> list[tuple]:
    """Record LIFECYCLE, MIGRATION_ITERATION and JOB_COMPLETED events on ``host``."""
    conn = fake.open(f"qemu+tcp://{host}/system")
    seen: list[tuple] = []
    conn.domainEventRegisterAny(
        None,
        C.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
        lambda c, d, event, detail, o: seen.append(("lifecycle", d.name(), event, detail)),
        None,
    )
    conn.domainEventRegisterAny(
        None,
        C.VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION,
        lambda c, d, n, o: seen.append(("iteration", d.name(), n)),
        None,
    )
    conn.domainEventRegisterAny(
        None,
        C.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED,
        lambda c, d, stats, o: seen.append(("completed", d.name(), stats)),
        None,
    )
    return seen


def lifecycle(events: list[tuple]) -> list[tuple[int, int]]:
    return [(e[2], e[3]) for e in events if e[0] == "lifecycle"]


def test_what_the_monitor_sees_from_start_to_end(world: World) -> None:
    add_vm(world, memory=8 * GiB, working_set=2 * GiB, dirty_rate=400 * MiB)
    run = start_run(world).start().monitor()
    assert run.error is None and run.returned == 0
    values = [s for _, s in run.samples]
    # {type: 0} before the job starts, then type 2 with every counter 0 (setup)
    assert values[0] == {"type": 0}
    setup = next(s for s in values if isinstance(s, dict) and s["type"] == 2)
    assert setup["memory_total"] == 0 and setup["data_remaining"] == 0
    assert "memory_bps" not in setup
    live = [s for s in values if isinstance(s, dict) and s.get("memory_total")]
    assert live, "no live sample"
    first = live[0]
    assert first["operation"] == C.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT
    assert first["memory_total"] == 8 * GiB and first["memory_page_size"] == 4096
    assert first["memory_iteration"] == 1 and first["memory_dirty_rate"] == 0
    assert first["downtime"] == C.QEMU_DEFAULT_DOWNTIME_MS  # expected, until a pass ends
    assert first["memory_bps"] == pytest.approx(10 * GBIT)
    assert first["data_total"] == first["memory_total"] + first["disk_total"]
    later = [s for s in live if s["memory_iteration"] >= 2]
    assert later and later[0]["memory_dirty_rate"] > 0
    assert later[0]["downtime"] == round(later[0]["memory_remaining"] / (10 * GBIT) * 1000)
    assert all(a["time_elapsed"] < b["time_elapsed"] for a, b in zip(live, live[1:], strict=False))
    # after the switch-over: "domain is not running", then the domain is gone
    errors = [err_tuple(s)[:2] for s in values if isinstance(s, fake.libvirtError)]
    assert errors and errors[0] == (55, 20)


def test_completion_moves_the_guest(world: World) -> None:
    vm = add_vm(world)
    run = start_run(world).start().monitor()
    assert run.error is None
    dst = fake.open("qemu+tcp://dst/system").lookupByName("vm1")
    assert dst.UUIDString() == vm.uuid
    assert dst.state() == [C.VIR_DOMAIN_RUNNING, C.VIR_DOMAIN_RUNNING_MIGRATED]
    assert dst.isPersistent() == 1  # PERSIST_DEST
    # UNDEFINE_SOURCE: the source handle now says NO_DOMAIN
    exc = error_of(run.dom.jobStats)
    assert err_tuple(exc) == (
        42,
        10,
        f"Domain not found: no domain with matching uuid '{vm.uuid}' (vm1)",
    )


def test_without_undefine_source_a_shut_off_definition_stays(world: World) -> None:
    add_vm(world)
    flags = C.VIR_MIGRATE_LIVE | C.VIR_MIGRATE_PEER2PEER
    run = start_run(world).start(flags=flags).monitor()
    assert run.error is None
    assert run.dom.state() == [C.VIR_DOMAIN_SHUTOFF, C.VIR_DOMAIN_SHUTOFF_MIGRATED]
    assert run.dom.isPersistent() == 1
    assert error_of(run.dom.jobStats).get_error_code() == 55
    dst = fake.open(DST_URI).lookupByName("vm1")
    assert dst.isPersistent() == 0  # no PERSIST_DEST: transient on the destination
    assert run.dom.jobStats(C.VIR_DOMAIN_JOB_STATS_COMPLETED)["type"] == C.VIR_DOMAIN_JOB_COMPLETED


def test_completed_stats_on_the_destination(world: World) -> None:
    add_vm(world, memory=8 * GiB, dirty_rate=400 * MiB)
    run = start_run(world).start().monitor()
    dst = fake.open(DST_URI).lookupByName("vm1")
    keep = C.VIR_DOMAIN_JOB_STATS_COMPLETED | C.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED
    stats = dst.jobStats(keep)
    assert stats["type"] == C.VIR_DOMAIN_JOB_COMPLETED
    assert stats["operation"] == C.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN
    assert stats["memory_remaining"] == 0 and stats["data_remaining"] == 0
    assert stats["memory_processed"] > 8 * GiB  # the dirty pages went again
    assert 0 < stats["downtime"] <= C.QEMU_DEFAULT_DOWNTIME_MS
    assert stats["downtime_net"] == stats["downtime"]
    assert stats["time_elapsed"] == stats["time_elapsed_net"]
    assert stats["memory_iteration"] >= 2
    t = world.timings
    assert stats["time_elapsed"] / 1000 == pytest.approx(
        t.prepare + t.setup + stats["memory_processed"] / (10 * GBIT) + t.finish, abs=0.01
    )
    # without KEEP_COMPLETED, reading consumes them (libvirt >= 6.0)
    assert dst.jobStats(C.VIR_DOMAIN_JOB_STATS_COMPLETED) == stats
    assert dst.jobStats(C.VIR_DOMAIN_JOB_STATS_COMPLETED) == {"type": 0}
    assert run.error is None


def test_closed_form_through_the_libvirt_api(fx) -> None:
    """The same physics check, measured the way a driver would: completed stats and events."""
    world = fx.world
    world.timings = Timings(prepare=0.0, setup=0.0, finish=0.0)
    world.add_host("src")
    world.add_host("dst")
    fake.virEventRegisterDefaultImpl()
    V, R, D = 8 * GiB, 10 * GBIT, 400 * MiB
    world.add_guest("src", "vm1", memory=V, working_set=V, dirty_rate=D)
    events = listen(world, "src")
    run = start_run(world).start().monitor(interval=0.5)
    assert run.error is None
    stats = fake.open(DST_URI).lookupByName("vm1").jobStats(C.VIR_DOMAIN_JOB_STATS_COMPLETED)
    passes, total, downtime = reference(V, V, R, D)
    assert stats["time_elapsed"] / 1000 == pytest.approx(total, abs=0.002)
    assert stats["downtime"] / 1000 == pytest.approx(downtime, abs=0.002)
    assert stats["memory_processed"] == pytest.approx(sum(passes), rel=1e-3)
    # + ram_save_complete's sync with the guest stopped
    assert [e[2] for e in events if e[0] == "iteration"] == list(range(1, len(passes) + 2))


def test_events_on_both_hosts(world: World) -> None:
    add_vm(world)
    src_events = listen(world, "src")
    dst_events = listen(world, "dst")
    start_run(world).start().monitor()
    assert lifecycle(src_events) == [
        (C.VIR_DOMAIN_EVENT_SUSPENDED, C.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED),
        (C.VIR_DOMAIN_EVENT_STOPPED, C.VIR_DOMAIN_EVENT_STOPPED_MIGRATED),
        (C.VIR_DOMAIN_EVENT_UNDEFINED, fake.VIR_DOMAIN_EVENT_UNDEFINED_REMOVED),
    ]
    assert lifecycle(dst_events) == [
        (C.VIR_DOMAIN_EVENT_STARTED, C.VIR_DOMAIN_EVENT_STARTED_MIGRATED),
        (C.VIR_DOMAIN_EVENT_DEFINED, fake.VIR_DOMAIN_EVENT_DEFINED_ADDED),
        (C.VIR_DOMAIN_EVENT_RESUMED, C.VIR_DOMAIN_EVENT_RESUMED_MIGRATED),
    ]
    iterations = [e[2] for e in src_events if e[0] == "iteration"]
    assert iterations[0] == 1 and iterations == sorted(iterations)
    completed = [e for e in src_events if e[0] == "completed"]
    assert len(completed) == 1
    stats = completed[0][2]
    assert stats["type"] == C.VIR_DOMAIN_JOB_COMPLETED
    assert stats["operation"] == C.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT
    assert stats["memory_iteration"] == iterations[-1]


def non_converging(world: World, **kwargs) -> None:
    """96 MiB rewritten continuously at 20 MiB/s: expected downtime ~4.8 s (README §3)."""
    kwargs.setdefault("memory", 128 * MiB)
    kwargs.setdefault("working_set", 96 * MiB)
    kwargs.setdefault("dirty_rate", 1 * GiB)
    add_vm(world, **kwargs)


def test_a_non_converging_guest_keeps_iterating(world: World) -> None:
    non_converging(world)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 20})
    seen = {}

    def stop_at_60s(now: float, sample) -> None:
        if isinstance(sample, dict) and sample.get("memory_iteration"):
            seen.update(sample)
        if now >= 60 and not seen.get("aborted"):
            seen["aborted"] = True
            run.mdom.abortJob()

    run.monitor(action=stop_at_60s)
    assert seen["memory_iteration"] > 8
    assert seen["memory_bps"] == 20 * MiB
    # expected downtime (remaining / bandwidth) saw-tooths far above the 300 ms limit
    expected = [s["downtime"] for _, s in run.stats() if s.get("memory_dirty_rate")]
    assert max(expected) == 4800


def test_raising_max_downtime_completes_in_the_same_iteration(world: World) -> None:
    non_converging(world)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 20})
    marks: dict[str, float] = {}

    def raise_it(now: float, sample) -> None:
        if now >= 10 and "raised" not in marks:
            marks["raised"] = now
            marks["iteration"] = sample["memory_iteration"]
            run.mdom.migrateSetMaxDowntime(10_000, 0)

    run.monitor(interval=0.5, action=raise_it)
    assert run.error is None
    stats = fake.open(DST_URI).lookupByName("vm1").jobStats(C.VIR_DOMAIN_JOB_STATS_COMPLETED)
    assert stats["memory_iteration"] == marks["iteration"] + 2  # the switch's and the final sync
    # the final phase is not bandwidth-capped: ~100 ms at 10 Gbit/s, not ~5 s
    assert stats["downtime"] < 200


def test_suspend_during_migration_completes_and_the_destination_runs(world: World) -> None:
    non_converging(world)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 20})
    # the job exists before time moves: a guest paused before its migration starts stays
    # paused on the destination (another test), which a slow thread start would turn this into
    wait_until(lambda: world.jobs, "the migration job to start")
    marks: dict[str, float] = {}

    def suspend_at_3s(now: float, sample) -> None:
        if now >= 3 and "suspended" not in marks:
            marks["suspended"] = now
            run.mdom.suspend()

    run.monitor(action=suspend_at_3s)
    assert run.error is None
    dst = fake.open(DST_URI).lookupByName("vm1")
    assert dst.state() == [C.VIR_DOMAIN_RUNNING, C.VIR_DOMAIN_RUNNING_MIGRATED]
    stats = dst.jobStats(C.VIR_DOMAIN_JOB_STATS_COMPLETED)
    end = stats["time_elapsed"] / 1000 - world.timings.finish
    # downtime counts from the pause (README: ~6.6 s after a pause at 3 s)
    assert stats["downtime"] / 1000 == pytest.approx(end - marks["suspended"], abs=0.002)


def test_a_paused_guest_stays_paused_on_the_destination(world: World) -> None:
    add_vm(world, state="paused")
    dst_events = listen(world, "dst")
    run = start_run(world).start().monitor()
    assert run.error is None
    dst = fake.open(DST_URI).lookupByName("vm1")
    assert dst.state() == [C.VIR_DOMAIN_PAUSED, C.VIR_DOMAIN_PAUSED_USER]
    assert (C.VIR_DOMAIN_EVENT_SUSPENDED, C.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED) in lifecycle(
        dst_events
    )


def test_abort_cancels_and_the_guest_stays(world: World) -> None:
    non_converging(world)
    dst_events = listen(world, "dst")
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 20})

    def abort_at_3s(now: float, sample) -> None:
        if now == 3.0:
            assert run.mdom.abortJob() == 0

    run.monitor(interval=0.25, action=abort_at_3s)
    assert err_tuple(run.error) == (
        78,
        10,
        "operation aborted: job 'migration out' canceled by client",
    )
    # type 5 while libvirt cancels (world.timings.abort), then no job at all
    cancelling = [s["type"] for t, s in run.stats() if t > 3.0]
    assert cancelling and set(cancelling) == {C.VIR_DOMAIN_JOB_CANCELLED}
    assert run.samples[-1][0] < 3.0 + world.timings.abort + 0.25
    assert run.mdom.state() == [C.VIR_DOMAIN_RUNNING, C.VIR_DOMAIN_RUNNING_BOOTED]
    assert world.domain("dst", "vm1") is None
    assert lifecycle(dst_events)[-1] == (
        C.VIR_DOMAIN_EVENT_STOPPED,
        C.VIR_DOMAIN_EVENT_STOPPED_FAILED,
    )
    assert run.mdom.jobStats() == {"type": 0}
    assert run.mdom.jobStats(C.VIR_DOMAIN_JOB_STATS_COMPLETED)["type"] == (
        C.VIR_DOMAIN_JOB_CANCELLED
    )


def test_abort_before_the_job_started(world: World) -> None:
    add_vm(world)
    run = start_run(world).start()
    while not world.jobs:
        threading.Event().wait(0.005)
    assert run.poll() == {"type": 0}
    run.mdom.abortJob()
    run.monitor()
    assert err_tuple(run.error) == (78, 10, "operation aborted: migration out: canceled by client")
    assert world.domain("dst", "vm1") is None


def test_abort_during_switchover_resumes_the_source(world: World) -> None:
    add_vm(world, memory=GiB, dirty_rate=0)
    world.timings = Timings(switchover_overhead=5.0)  # a long stop-and-copy phase
    run = start_run(world).start()

    def abort_in_switchover(now: float, sample) -> None:
        if isinstance(sample, fake.libvirtError) and run.mdom.state()[1] == 2:
            run.mdom.abortJob()

    run.monitor(action=abort_in_switchover)
    assert run.error is not None and run.error.get_error_code() == 78
    assert run.mdom.state() == [C.VIR_DOMAIN_RUNNING, C.VIR_DOMAIN_RUNNING_MIGRATION_CANCELED]


def test_postcopy(world: World) -> None:
    non_converging(world, memory=4 * GiB, working_set=2 * GiB)
    src_events = listen(world, "src")
    dst_events = listen(world, "dst")
    run = start_run(world).start(
        params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 100, C.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY: 100},
        flags=BASE_FLAGS | C.VIR_MIGRATE_POSTCOPY,
    )
    marks: dict[str, object] = {}

    def switch(now: float, sample) -> None:
        if now >= 60 and "switched" not in marks:
            marks["switched"] = now
            assert run.mdom.migrateStartPostCopy(0) == 0
            marks["abort"] = error_of(run.mdom.abortJob)
            marks["again"] = error_of(lambda: run.mdom.migrateStartPostCopy(0))
            marks["src_state"] = run.mdom.state()
            marks["dst_state"] = fake.open(DST_URI).lookupByName("vm1").state()

    run.monitor(action=switch)
    assert run.error is None
    assert err_tuple(marks["abort"]) == (
        55,
        10,
        "Requested operation is not valid: cannot abort migration in post-copy mode",
    )
    assert err_tuple(marks["again"])[0] == 55
    assert marks["src_state"] == [C.VIR_DOMAIN_PAUSED, C.VIR_DOMAIN_PAUSED_POSTCOPY]
    assert marks["dst_state"] == [C.VIR_DOMAIN_RUNNING, C.VIR_DOMAIN_RUNNING_POSTCOPY]
    during = [s for t, s in run.stats() if t > marks["switched"]]
    requests = [s["memory_postcopy_requests"] for s in during]
    assert requests == sorted(requests) and requests[-1] > requests[0] > 0
    assert (C.VIR_DOMAIN_EVENT_SUSPENDED, C.VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY) in lifecycle(
        src_events
    )
    assert lifecycle(dst_events)[-2:] == [
        (C.VIR_DOMAIN_EVENT_RESUMED, C.VIR_DOMAIN_EVENT_RESUMED_POSTCOPY),
        (C.VIR_DOMAIN_EVENT_RESUMED, C.VIR_DOMAIN_EVENT_RESUMED_MIGRATED),
    ]
    dst = fake.open(DST_URI).lookupByName("vm1")
    assert dst.state() == [C.VIR_DOMAIN_RUNNING, C.VIR_DOMAIN_RUNNING_MIGRATED]
    # after post-copy the destination has no completed stats; the event carries them
    assert dst.jobStats(C.VIR_DOMAIN_JOB_STATS_COMPLETED) == {"type": 0}
    completed = [e[2] for e in src_events if e[0] == "completed"]
    assert completed[0]["memory_postcopy_requests"] > 0


def test_postcopy_needs_the_flag(world: World) -> None:
    non_converging(world)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 20})
    found: list = []

    def try_switch(now: float, sample) -> None:
        if now == 5.0:
            found.append(error_of(lambda: run.mdom.migrateStartPostCopy(0)))
            run.mdom.abortJob()

    run.monitor(action=try_switch)
    assert err_tuple(found[0])[:2] == (55, 10)
    assert "VIR_MIGRATE_POSTCOPY" in str(found[0])


def test_auto_converge_throttle_rises(world: World) -> None:
    add_vm(world, memory=4 * GiB, dirty_rate=2 * GBIT)
    run = start_run(world).start(
        params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 125},
        flags=BASE_FLAGS | C.VIR_MIGRATE_AUTO_CONVERGE,
    )
    run.monitor()
    assert run.error is None
    throttles = [s.get("auto_converge_throttle") for _, s in run.stats() if "memory_total" in s]
    assert throttles[0] is None  # only present once throttling starts
    levels = sorted({t for t in throttles if t})
    assert levels[:3] == [20, 30, 40]


def test_auto_converge_params(world: World) -> None:
    add_vm(world, memory=4 * GiB, dirty_rate=50 * GBIT)
    run = start_run(world).start(
        params={
            C.VIR_MIGRATE_PARAM_BANDWIDTH: 125,
            C.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL: 60,
            C.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT: 20,
        },
        flags=BASE_FLAGS | C.VIR_MIGRATE_AUTO_CONVERGE,
    )

    def stop_at_99(now: float, sample) -> None:
        if isinstance(sample, dict) and sample.get("auto_converge_throttle") == 99:
            run.mdom.abortJob()

    run.monitor(action=stop_at_99)
    levels = sorted({s.get("auto_converge_throttle") for _, s in run.stats()} - {None})
    assert levels == [60, 80, 99]


def test_no_throttle_field_without_auto_converge(world: World) -> None:
    non_converging(world)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 20})
    run.monitor(action=lambda now, s: run.mdom.abortJob() if now == 40 else None)
    assert all("auto_converge_throttle" not in s for _, s in run.stats())


def test_max_speed_changes_the_rate_mid_flight(world: World) -> None:
    add_vm(world, memory=4 * GiB, dirty_rate=0)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 10})

    def speed_up(now: float, sample) -> None:
        if now == 5.0:
            run.mdom.migrateSetMaxSpeed(1000, 0)
            assert run.mdom.migrateGetMaxSpeed(0) == 1000

    run.monitor(action=speed_up)
    rates = {s["memory_bps"] for _, s in run.stats() if "memory_bps" in s}
    assert rates == {10 * MiB, 1000 * MiB}
    assert run.error is None


def test_block_migration_reports_disk_progress(world: World) -> None:
    add_vm(world, memory=GiB, dirty_rate=0, disks={"vda": 20 * GiB, "vdb": 5 * GiB})
    flags = BASE_FLAGS | C.VIR_MIGRATE_NON_SHARED_INC
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ["vda"]}, flags=flags)
    run.monitor()
    # vdb is local and not copied: libvirt calls that unsafe unless told VIR_MIGRATE_UNSAFE
    assert run.error is not None and run.error.get_error_code() == 81
    run = start_run(world).start(
        params={C.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ["vda"]}, flags=flags | C.VIR_MIGRATE_UNSAFE
    )
    run.monitor()
    assert run.error is None
    disk = [s for _, s in run.stats() if s.get("disk_total")]
    assert disk[0]["disk_total"] == 20 * GiB
    assert disk[0]["memory_processed"] == 0  # disks first
    assert disk[-1]["disk_remaining"] == 0
    assert disk[-1]["data_total"] == 20 * GiB + GiB


def test_bandwidth_parameter_caps_the_transfer(world: World) -> None:
    add_vm(world, memory=GiB, dirty_rate=0)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 100}).monitor()
    stats = fake.open(DST_URI).lookupByName("vm1").jobStats(C.VIR_DOMAIN_JOB_STATS_COMPLETED)
    t = world.timings
    fixed = t.prepare + t.setup + t.finish
    # live at the cap until the rest fits 300 ms of it; the rest at link speed, paused
    live = (GiB - 0.3 * 100 * MiB) / (100 * MiB)
    assert fixed + live <= stats["time_elapsed"] / 1000 <= fixed + GiB / (100 * MiB)
    assert run.error is None


def test_dest_name_renames_the_guest(world: World) -> None:
    add_vm(world, dirty_rate=0)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_DEST_NAME: "vm1-moved"}).monitor()
    assert run.error is None
    assert fake.open(DST_URI).lookupByName("vm1-moved").isActive() == 1


def test_incoming_domain_has_no_stats_and_cannot_be_aborted(world: World) -> None:
    non_converging(world)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 20})
    found: dict[str, fake.libvirtError] = {}

    def on_destination(now: float, sample) -> None:
        if now == 5.0:
            dst = fake.open(DST_URI).lookupByName("vm1")
            found["stats"] = error_of(dst.jobStats)
            found["info"] = error_of(dst.jobInfo)
            found["abort"] = error_of(dst.abortJob)
            run.mdom.abortJob()

    run.monitor(action=on_destination)
    assert err_tuple(found["stats"]) == (
        84,
        10,
        "Operation not supported: migration statistics are available only on the source host",
    )
    assert found["info"].get_error_code() == 84
    assert found["abort"].get_error_code() == 55


def test_job_info_mirrors_job_stats(world: World) -> None:
    non_converging(world)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 20})
    pairs = []

    def both(now: float, sample) -> None:
        if now == 4.0:
            pairs.append((run.mdom.jobStats(), run.mdom.jobInfo()))
            run.mdom.abortJob()

    run.monitor(action=both)
    stats, info = pairs[0]
    assert len(info) == 12 and info[0] == 2 and info[2] == 0
    assert info[1] == stats["time_elapsed"]
    assert info[6:9] == [
        stats["memory_total"],
        stats["memory_processed"],
        stats["memory_remaining"],
    ]


def test_autorun_lets_a_test_call_migrate_directly() -> None:
    for fx in make_fixture(autorun=True):
        world = fx.world
        world.add_host("src")
        world.add_host("dst")
        world.add_guest("src", "vm1", memory=8 * GiB, dirty_rate=100 * MiB)
        dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
        assert dom.migrateToURI3(DST_URI, {}, BASE_FLAGS) == 0
        assert world.clock.now() > 8 * GiB / (10 * GBIT)
        assert world.domain("dst", "vm1") is not None


def test_autorun_with_a_scripted_abort() -> None:
    for fx in make_fixture(autorun=True):
        world = fx.world
        world.add_host("src")
        world.add_host("dst")
        world.add_guest("src", "vm1", memory=8 * GiB, dirty_rate=100 * MiB)
        dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
        world.at(3.0, dom.abortJob)
        exc = error_of(lambda dom=dom: dom.migrateToURI3(DST_URI, {}, BASE_FLAGS))
        assert exc.get_error_code() == 78
        assert world.clock.now() == pytest.approx(3.0 + world.timings.abort, abs=0.5)


def test_a_blocked_call_with_nobody_moving_time_is_reported() -> None:
    for fx in make_fixture(stall_timeout=0.3):
        world = fx.world
        world.add_host("src")
        world.add_host("dst")
        world.add_guest("src", "vm1", memory=GiB)
        dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
        with pytest.raises(SimulationStalled, match="autorun"):
            dom.migrateToURI3(DST_URI, {}, BASE_FLAGS)


def test_destroying_the_source_fails_the_migration(world: World) -> None:
    non_converging(world)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 20})
    run.monitor(action=lambda now, s: run.mdom.destroy() if now == 4.0 else None)
    assert err_tuple(run.error)[:2] == (55, 20)
    assert run.mdom.state() == [C.VIR_DOMAIN_SHUTOFF, C.VIR_DOMAIN_SHUTOFF_DESTROYED]
    assert world.domain("dst", "vm1") is None


def test_destroying_the_destination_fails_the_migration(world: World) -> None:
    non_converging(world)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 20})

    def kill_dst(now: float, sample) -> None:
        if now == 4.0:
            fake.open(DST_URI).lookupByName("vm1").destroy()

    run.monitor(action=kill_dst)
    assert run.error is not None and run.error.get_error_code() == 1
    assert run.mdom.state()[0] == C.VIR_DOMAIN_RUNNING
    assert world.domain("dst", "vm1") is None


def test_destroying_the_destination_in_postcopy_loses_the_guest(world: World) -> None:
    non_converging(world, memory=4 * GiB, working_set=2 * GiB)
    run = start_run(world).start(
        params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 100}, flags=BASE_FLAGS | C.VIR_MIGRATE_POSTCOPY
    )

    def action(now: float, sample) -> None:
        if now == 5.0:
            run.mdom.migrateStartPostCopy(0)
        if now == 6.0:
            fake.open(DST_URI).lookupByName("vm1").destroy()

    run.monitor(action=action)
    assert err_tuple(run.error)[:2] == (9, 10)
    assert run.mdom.state() == [C.VIR_DOMAIN_PAUSED, C.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED]
    resume = BASE_FLAGS | C.VIR_MIGRATE_POSTCOPY | C.VIR_MIGRATE_POSTCOPY_RESUME
    assert error_of(lambda: run.mdom.migrateToURI3(DST_URI, {}, resume)).get_error_code() == 9


def test_max_speed_zero_means_no_limit(world: World) -> None:
    add_vm(world, memory=4 * GiB, dirty_rate=0)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 10})
    run.monitor(action=lambda now, s: run.mdom.migrateSetMaxSpeed(0, 0) if now == 3.0 else None)
    assert run.error is None
    assert {s["memory_bps"] for _, s in run.stats() if "memory_bps" in s} == {10 * MiB, 10 * GBIT}


def test_qemu_style_data_uri_is_accepted(world: World) -> None:
    add_vm(world, dirty_rate=0)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_URI: "tcp:127.0.0.3:49152"})
    assert run.monitor().error is None


def test_non_live_migration_pauses_the_guest_for_the_whole_copy(world: World) -> None:
    add_vm(world, memory=4 * GiB, dirty_rate=100 * MiB)
    src_events = listen(world, "src")
    run = start_run(world).start(flags=C.VIR_MIGRATE_PEER2PEER | C.VIR_MIGRATE_PERSIST_DEST)
    run.monitor()
    assert run.error is None
    stats = fake.open(DST_URI).lookupByName("vm1").jobStats(C.VIR_DOMAIN_JOB_STATS_COMPLETED)
    assert stats["downtime"] / 1000 == pytest.approx(4 * GiB / (10 * GBIT), rel=1e-3)
    assert stats["memory_iteration"] == 3  # one pass, its sync, the final sync
    assert lifecycle(src_events)[0] == (
        C.VIR_DOMAIN_EVENT_SUSPENDED,
        C.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED,
    )


def test_paused_flag_leaves_the_destination_paused(world: World) -> None:
    add_vm(world, dirty_rate=0)
    run = start_run(world).start(flags=BASE_FLAGS | C.VIR_MIGRATE_PAUSED).monitor()
    assert run.error is None
    assert fake.open(DST_URI).lookupByName("vm1").state()[0] == C.VIR_DOMAIN_PAUSED


def test_two_guests_migrate_at_once(world: World) -> None:
    add_vm(world, "a", memory=2 * GiB, dirty_rate=0)
    add_vm(world, "b", memory=6 * GiB, dirty_rate=0)
    first = start_run(world, "a").start()
    second = start_run(world, "b").start()
    while len(world.jobs) < 2:
        threading.Event().wait(0.005)
    second.monitor()
    first.done.wait(5)
    assert first.error is None and second.error is None
    a = fake.open(DST_URI).lookupByName("a").jobStats(C.VIR_DOMAIN_JOB_STATS_COMPLETED)
    b = fake.open(DST_URI).lookupByName("b").jobStats(C.VIR_DOMAIN_JOB_STATS_COMPLETED)
    assert a["time_elapsed"] < b["time_elapsed"]


def test_event_callbacks_may_call_back_into_libvirt(world: World) -> None:
    add_vm(world, dirty_rate=0)
    conn = fake.open("qemu+tcp://src/system")
    states: list[list[int]] = []

    def on_event(c, dom, event, detail, opaque) -> None:
        try:
            states.append(dom.state())
        except fake.libvirtError as exc:  # the domain may be gone already
            states.append([exc.get_error_code()])

    conn.domainEventRegisterAny(None, C.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_event, None)
    assert start_run(world).start().monitor().error is None
    assert states[0] == [C.VIR_DOMAIN_PAUSED, fake.VIR_DOMAIN_PAUSED_MIGRATION]


def test_sharing_the_migrating_connection_is_refused(world: World) -> None:
    """libvirt 9.0's client hangs there (README §5); the fake says so instead."""
    add_vm(world, dirty_rate=0)
    run = start_run(world)
    run.mdom = run.dom  # poll on the connection that migrateToURI3 blocks
    run.start()
    while not run.dom.connect()._blocked_in_migration:  # the worker is blocked
        threading.Event().wait(0.005)
    with pytest.raises(SharedConnectionHang, match="second connection"):
        run.dom.jobStats()
    world.strict_connections = False
    assert run.dom.jobStats() == {"type": 0}
    run.monitor()
    assert run.error is None
