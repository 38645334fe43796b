"""Dirty-rate measurement: the fake libvirt's calculation and migrator.measure on top of it."""

from __future__ import annotations

import threading

import pytest

from migrator import constants as C
from migrator import exception, forecast, measure
from migrator.testing import GiB, MiB, Piecewise

STATS = C.VIR_DOMAIN_STATS_DIRTYRATE


def guest(fake, name="vm", **kw):
    kw.setdefault("memory", 4 * GiB)
    fake.world.add_guest("src", name, **kw)
    conn = fake.module.open("qemu+tcp://src/system")
    return conn, conn.lookupByName(name)


def calc(fake, conn, dom, seconds, flags=0):
    dom.startDirtyRateCalc(seconds, flags)
    during = conn.domainListGetStats([dom], STATS)[0][1]
    fake.clock.advance(seconds)
    return during, conn.domainListGetStats([dom], STATS)[0][1]


# -- the fake's calculation -------------------------------------------------------------


def test_fake_counts_distinct_pages_per_second(fake) -> None:
    conn, dom = guest(fake, working_set=64 * MiB, dirty_rate=40 * MiB)
    assert conn.domainListGetStats([dom], STATS)[0][1]["dirtyrate.calc_status"] == 0
    during, done = calc(fake, conn, dom, 1)
    assert during["dirtyrate.calc_status"] == C.VIR_DOMAIN_DIRTYRATE_MEASURING
    assert "dirtyrate.megabytes_per_second" not in during
    assert done == {"dirtyrate.calc_status": 2, "dirtyrate.calc_start_time": 0,
                    "dirtyrate.calc_period": 1, "dirtyrate.calc_mode": "page-sampling",
                    "dirtyrate.megabytes_per_second": 40}
    # 3 s write 120 MiB into the 64 MiB working set: 64 distinct MiB, 21 MiB/s
    assert calc(fake, conn, dom, 3)[1]["dirtyrate.megabytes_per_second"] == 21


def test_fake_follows_a_rate_that_changes_and_a_paused_guest(fake) -> None:
    conn, dom = guest(fake, dirty_rate=Piecewise([(0, 10 * MiB), (1, 50 * MiB)]))
    assert calc(fake, conn, dom, 2)[1]["dirtyrate.megabytes_per_second"] == 30
    dom.suspend()
    assert calc(fake, conn, dom, 1)[1]["dirtyrate.megabytes_per_second"] == 0


@pytest.mark.parametrize("seconds, flags, code, text", [
    (0, 0, C.VIR_ERR_CONFIG_UNSUPPORTED,
     "unsupported configuration: seconds=0 is invalid, please choose value within [1, 60]."),
    (61, 0, C.VIR_ERR_CONFIG_UNSUPPORTED, "seconds=61 is invalid"),
    (1, C.VIR_DOMAIN_DIRTYRATE_MODE_DIRTY_RING, C.VIR_ERR_OPERATION_UNSUPPORTED,
     "dirty-ring calculation mode requires dirty-ring feature enabled"),
    (1, 8, C.VIR_ERR_INVALID_ARG, "unsupported flags (0x8)"),
])
def test_fake_refuses_what_libvirt_refuses(fake, seconds, flags, code, text) -> None:
    _, dom = guest(fake)
    with pytest.raises(fake.module.libvirtError, match=text.replace("[", r"\[").replace(
            "(", r"\(").replace(")", r"\)").replace(".", r"\.")) as err:
        dom.startDirtyRateCalc(seconds, flags)
    assert err.value.get_error_code() == code


def test_fake_calculation_needs_a_running_domain_and_libvirt_7_2(fake) -> None:
    conn, dom = guest(fake, state="shutoff")
    with pytest.raises(fake.module.libvirtError, match="domain is not running"):
        dom.startDirtyRateCalc(1)
    assert conn.domainListGetStats([dom], STATS) == [(dom, {})]
    fake.world.add_host("old", libvirt_version=(7, 1, 0))
    fake.world.add_guest("old", "vm2", memory=GiB)
    old = fake.module.open("qemu+tcp://old/system")
    dom2 = old.lookupByName("vm2")
    with pytest.raises(fake.module.libvirtError, match="not supported by the connection driver"):
        dom2.startDirtyRateCalc(1)
    assert old.domainListGetStats([dom2], STATS) == [(dom2, {})]  # unknown group: ignored
    with pytest.raises(fake.module.libvirtError, match="Stats types bits 0x200 are not supported"):
        old.domainListGetStats([dom2], STATS, C.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ENFORCE_STATS)


def test_fake_all_domain_stats_filters_by_state(fake) -> None:
    conn, _ = guest(fake, "up")
    guest(fake, "down", state="shutoff")
    running = conn.getAllDomainStats(C.VIR_DOMAIN_STATS_STATE,
                                     fake.module.VIR_CONNECT_LIST_DOMAINS_RUNNING)
    assert [(d.name(), s) for d, s in running] == [("up", {"state.state": 1, "state.reason": 1})]
    assert len(conn.getAllDomainStats()) == 2


def test_fake_memory_stats(fake) -> None:
    _, dom = guest(fake, memory=2 * GiB)
    assert dom.memoryStats() == {"actual": 2 * 1024**2, "rss": 2 * 1024**2}


@pytest.fixture
def migrating(fake):
    """A guest in the middle of a migration (blocked migrateToURI3 in a thread)."""
    conn, dom = guest(fake, dirty_rate=2 * GiB)
    flags = C.VIR_MIGRATE_LIVE | C.VIR_MIGRATE_PEER2PEER
    worker = threading.Thread(target=lambda: _quietly(dom.migrateToURI3, "qemu+tcp://dst/system",
                                                      {}, flags))
    worker.start()
    while not fake.world.jobs:
        threading.Event().wait(0.01)
    fake.clock.advance(3)  # past prepare and setup: RAM is moving
    yield fake.module.open("qemu+tcp://src/system").lookupByName("vm")
    fake.world.shutdown()
    worker.join(10)


def _quietly(fn, *args):
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - the world is shut down under it
        pass


def test_fake_refuses_a_calculation_during_a_migration(migrating) -> None:
    with pytest.raises(Exception, match="cannot acquire state change lock") as err:
        migrating.startDirtyRateCalc(1)
    assert err.value.get_error_code() == C.VIR_ERR_OPERATION_TIMEOUT


# -- migrator.measure ----------------------------------------------------------------


def test_measure_finds_the_rate_and_the_working_set(fake) -> None:
    _, dom = guest(fake, working_set=256 * MiB, dirty_rate=200 * MiB)
    before = fake.clock.now()
    rate = measure.measure(dom, clock=fake.clock)
    assert fake.clock.now() - before == pytest.approx(6, abs=0.5)  # 1 + 1 + 1 + 3 s
    assert rate.bytes_per_second == 200 * MiB
    assert rate.working_set == 85 * MiB * 3  # 256 MiB seen in 3 s (integer MiB/s)
    assert not rate.at_least and rate.source == "page-sampling"
    assert rate.describe() == (
        "dirties 200.0 MiB/s into a working set of ~255.0 MiB (measured: libvirt page "
        "sampling, 1 s: 200 MiB/s, 1 s: 200 MiB/s, 1 s: 200 MiB/s, 3 s: 85 MiB/s)")
    assert rate.to_dict()["windows"][3] == [3, 85 * MiB]


def test_measure_without_a_working_set_and_a_saturated_short_window(fake) -> None:
    _, dom = guest(fake, "wide", dirty_rate=50 * MiB)
    wide = measure.measure(dom, clock=fake.clock)
    assert wide.working_set is None and wide.bytes_per_second == 50 * MiB
    _, dom = guest(fake, "small", working_set=32 * MiB, dirty_rate=500 * MiB)
    small = measure.measure(dom, windows=(1, 4), clock=fake.clock)
    assert small.at_least and small.working_set == 32 * MiB
    assert small.describe().startswith("dirties at least 32.0 MiB/s into a working set")


def test_measure_uses_page_sampling_only(fake, monkeypatch) -> None:
    _, dom = guest(fake, dirty_rate=MiB)
    modes = []
    real = fake.module.virDomain.startDirtyRateCalc
    monkeypatch.setattr(fake.module.virDomain, "startDirtyRateCalc",
                        lambda self, s, f=0: (modes.append(f), real(self, s, f))[1])
    measure.measure(dom, windows=(1, 2), clock=fake.clock)
    assert modes == [C.VIR_DOMAIN_DIRTYRATE_MODE_PAGE_SAMPLING] * 2


def test_measure_refuses_a_migrating_guest_before_calling_libvirt(migrating, monkeypatch) -> None:
    monkeypatch.setattr(type(migrating), "startDirtyRateCalc",
                        lambda *a: pytest.fail("must not be called"))
    with pytest.raises(exception.MeasurementFailed, match="vm is migrating: measuring now"):
        measure.measure(migrating)


@pytest.mark.parametrize("state, text", [
    ("paused", "vm is paused: a paused guest writes nothing"),
    ("shutoff", "vm is not running: only a running guest can be measured"),
])
def test_measure_refuses_a_guest_that_does_not_run(fake, state, text) -> None:
    _, dom = guest(fake, state=state)
    with pytest.raises(exception.MeasurementFailed, match=text):
        measure.measure(dom, clock=fake.clock)


def test_measure_says_when_libvirt_lacks_the_api(fake) -> None:
    fake.world.add_host("old", libvirt_version=(7, 1, 0))
    fake.world.add_guest("old", "vm", memory=GiB)
    dom = fake.module.open("qemu+tcp://old/system").lookupByName("vm")
    with pytest.raises(exception.MeasurementFailed,
                       match="libvirt of vm cannot measure dirty rates "
                             r"\(virDomainStartDirtyRateCalc needs libvirt >= 7.2"):
        measure.measure(dom, clock=fake.clock)
    fake.world.client_version = (7, 1, 0)
    _, dom = guest(fake)
    with pytest.raises(exception.MeasurementFailed,
                       match="this libvirt-python has no startDirtyRateCalc"):
        measure.measure(dom, clock=fake.clock)


def test_measure_reports_a_calculation_that_never_ends(fake, monkeypatch) -> None:
    conn, dom = guest(fake)
    monkeypatch.setattr(type(conn), "domainListGetStats",
                        lambda self, doms, stats=0, flags=0: [(dom, {"dirtyrate.calc_status": 1})])
    with pytest.raises(exception.MeasurementFailed, match="did not finish a 1 s dirty-rate"):
        measure.measure(dom, windows=(1,), clock=fake.clock)


def test_measure_rejects_windows_libvirt_would_refuse(fake) -> None:
    _, dom = guest(fake)
    for windows in ((), (0,), (1, 61)):
        with pytest.raises(ValueError, match="windows must be 1-60 s"):
            measure.measure(dom, windows=windows, clock=fake.clock)


def test_interpret_needs_a_window() -> None:
    with pytest.raises(ValueError, match="no measurement windows"):
        forecast.interpret(())


def test_long_windows_that_saw_nothing_tell_no_working_set() -> None:
    """A slow guest's few sampled pages can read 0 in a long window although the short
    ones saw writes (seen on the rig): no working set, never one of zero bytes."""
    windows = (forecast.Window(1, 2 * MiB), forecast.Window(1, 0.0), forecast.Window(3, 0.0))
    dirty = forecast.interpret(windows)
    assert dirty.working_set is None and dirty.bytes_per_second == MiB
    facts = forecast.GuestFacts("quick", 128 * MiB, dirty)
    assert facts.workload().working_set is None


def test_unsaturated_long_windows_count_towards_the_rate_by_their_length() -> None:
    """Page sampling's error shrinks with the seconds measured: when the long windows saw
    no working set, they measured the rate too, and weigh by their length."""
    windows = (forecast.Window(1, 10 * MiB), forecast.Window(1, 14 * MiB),
               forecast.Window(3, 9 * MiB))
    dirty = forecast.interpret(windows)
    assert dirty.working_set is None and not dirty.at_least
    assert dirty.bytes_per_second == pytest.approx((10 + 14 + 27) / 5 * MiB)
    # saturated long windows: a working set, and the rate from the short ones alone
    saturated = forecast.interpret(windows[:2] + (forecast.Window(3, 4 * MiB),))
    assert saturated.working_set == 12 * MiB and saturated.bytes_per_second == 12 * MiB


def test_a_shortfall_within_sampling_noise_is_no_working_set() -> None:
    """At 4 MiB/s a 4 s window holds ~8 sampled pages (one per 2 MiB written), so reading
    14 MiB where 16 were written is noise (seen on the rig: a 64 MiB region read as a
    14 MiB working set); the same shortfall at 40 MiB/s over a small region is real."""
    slow = (forecast.Window(1, 4 * MiB),) * 8 + (forecast.Window(4, 3.5 * MiB),) * 2
    dirty = forecast.interpret(slow)
    assert dirty.working_set is None
    assert dirty.bytes_per_second == pytest.approx((32 + 28) / 16 * MiB)
    fast = (forecast.Window(1, 24 * MiB),) * 8 + (forecast.Window(4, 6 * MiB),) * 2
    dirty = forecast.interpret(fast)
    assert dirty.working_set == 24 * MiB and dirty.at_least
    assert dirty.bytes_per_second == 24 * MiB
    # a large guest writing fast: the noise is small, the 0.75 threshold decides alone
    wide = (forecast.Window(1, 400 * MiB),) * 3 + (forecast.Window(3, 290 * MiB),)
    assert forecast.interpret(wide).working_set == 870 * MiB


def test_measure_many_guests_in_the_same_windows(fake) -> None:
    conn, _ = guest(fake, "a", dirty_rate=10 * MiB)
    guest(fake, "b", dirty_rate=30 * MiB, working_set=32 * MiB)
    guest(fake, "c", state="paused")
    before = fake.clock.now()
    out = measure.measure_many([conn.lookupByName(n) for n in "abc"], windows=(1, 3),
                               clock=fake.clock)
    assert fake.clock.now() - before == pytest.approx(4, abs=0.5)  # not 3 x 4 s
    assert out["a"].bytes_per_second == 10 * MiB and out["a"].working_set is None
    assert out["b"].working_set == 30 * MiB  # 10 MiB/s over 3 s: 32 MiB (integer MiB/s)
    assert isinstance(out["c"], exception.MeasurementFailed) and "c is paused" in str(out["c"])
