"""Dirty-rate measurement and prediction against real libvirt 9.0 and a real (TCG) QEMU guest."""

from __future__ import annotations

import time

import pytest

from migrator import exception, measure
from migrator.driver import LiveMigrationDriver
from migrator.testing.config import make_conf
from tests.functional.helpers import scaled

libvirt = pytest.importorskip("libvirt")

MiB = 1024**2


def running(rig, name: str, **guest) -> object:
    rig.define_guest("a", name, tick_ms=250, **guest)
    rig.wait_heartbeat("a", name, above=3, timeout=60)
    return rig.connect("a").lookupByName(name)


def test_measures_what_the_guest_writes_and_leaves_it_running(rig) -> None:
    dom = running(rig, "meas-busy", mb=64, rate=40)
    tick = rig.heartbeat("a", "meas-busy")
    rate = measure.measure(dom)
    # page sampling of a 128 MiB guest sees 64 pages: a coarse, unbiased figure
    assert 20 * MiB <= rate.bytes_per_second <= 60 * MiB, rate.describe()
    assert rate.source == "page-sampling" and len(rate.windows) == 4
    assert rate.working_set is None or rate.working_set >= 32 * MiB, rate.describe()
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    rig.wait_heartbeat("a", "meas-busy", above=tick + 4, timeout=30)  # still dirtying


def test_an_idle_guest_measures_nothing(rig) -> None:
    dom = running(rig, "meas-idle", mb=0)
    assert measure.measure(dom, windows=(1, 2)).bytes_per_second <= 2 * MiB


def test_a_migrating_guest_is_refused_at_once(rig) -> None:
    dom = running(rig, "meas-mig", mb=64, rate=40)
    dom.migrateSetMaxSpeed(10)  # ~10 s of pre-copy at least
    migration = rig.start_migration("meas-mig", "a")
    try:
        deadline = time.monotonic() + scaled(30)
        while dom.jobStats().get("type", 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        # refused from the job it reads (jobStats takes no job lock), before the
        # calculation would wait for the migration's lock and fail with libvirt's words
        with pytest.raises(exception.MeasurementFailed, match="meas-mig is migrating"):
            measure.measure(dom)
    finally:
        with pytest.raises(libvirt.libvirtError):
            dom.abortJob()
            migration.wait(60)
            raise libvirt.libvirtError("aborted")  # abortJob may race the job's end


def test_a_paused_or_stopped_guest_is_refused(rig) -> None:
    dom = running(rig, "meas-paused", mb=8)
    dom.suspend()
    with pytest.raises(exception.MeasurementFailed, match="meas-paused is paused"):
        measure.measure(dom)
    dom.destroy()
    with pytest.raises(exception.MeasurementFailed, match="meas-paused is not running"):
        measure.measure(dom)


def test_driver_predicts_a_hopeless_and_a_quick_guest(rig) -> None:
    conn = rig.connect("a")
    driver = LiveMigrationDriver(make_conf(live_migration_bandwidth=20), conn)
    driver.init_host()
    hopeless = driver.predict(running(rig, "pred-never", mb=64, rate=40))
    assert not hopeless.configured.completes, hopeless.summary()
    assert "pre-copy cannot finish" in hopeless.estimates["pre-copy"].reason
    quick = driver.predict(running(rig, "pred-quick", mb=8, rate=2))
    assert quick.configured.completes, quick.summary()
    assert quick.workload.memory == 128 * MiB
