"""FakeLibvirtFixture: installs the fake for a test and puts everything back."""

from __future__ import annotations

import sys
import threading

from migrator import _libvirt
from migrator.testing import fakelibvirt as fake
from migrator.testing.fixture import FakeLibvirtFixture
from migrator.testing.model import JobPhase
from migrator.testing.world import GiB, World

from .conftest import BASE_FLAGS, DST_URI


def test_installs_and_restores_the_module() -> None:
    sentinel = object()
    before_module = _libvirt.use(sentinel)  # type: ignore[arg-type]
    before_sys = sys.modules.get("libvirt")
    before_world = fake.set_world(None)
    try:
        fx = FakeLibvirtFixture(autorun=True)
        fx.setUp()
        try:
            assert _libvirt.module() is fake
            import libvirt  # noqa: PLC0415 - the point is what this import gives

            assert libvirt is fake
            assert fake.get_world() is fx.world and fx.clock is fx.world.clock
            assert fx.world.autorun is True
        finally:
            fx.cleanUp()
        assert _libvirt.use(None) is sentinel
        assert sys.modules.get("libvirt") is before_sys
        assert fake.set_world(None) is None
    finally:
        _libvirt.use(before_module)
        fake.set_world(before_world)


def test_each_fixture_gets_a_fresh_world() -> None:
    worlds = []
    for _ in range(2):
        fx = FakeLibvirtFixture()
        fx.setUp()
        fx.world.add_host("h")
        worlds.append(fx.world)
        fx.cleanUp()
    assert worlds[0] is not worlds[1]


def test_cleanup_wakes_a_migration_left_blocked() -> None:
    fx = FakeLibvirtFixture()
    fx.setUp()
    world: World = fx.world
    world.add_host("src")
    world.add_host("dst")
    world.add_guest("src", "vm1", memory=GiB)
    dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
    errors: list[Exception] = []

    def work() -> None:
        try:
            dom.migrateToURI3(DST_URI, {}, BASE_FLAGS)
        except fake.libvirtError as exc:
            errors.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    while not world.jobs:
        threading.Event().wait(0.005)
    fx.cleanUp()  # nobody ever advanced the clock
    thread.join(5)
    assert not thread.is_alive()
    assert errors and errors[0].get_error_code() == 1
    # the job ended as a cancelled one: a monitor still following it sees it over
    rec = world.domain("src", "vm1")
    assert rec.outgoing is None and rec.state == fake.VIR_DOMAIN_RUNNING
    assert rec.completed["type"] == fake.VIR_DOMAIN_JOB_CANCELLED
    assert world.domain("dst", "vm1") is None


def test_cleanup_ends_a_job_past_the_switch_over_on_the_destination() -> None:
    fx = FakeLibvirtFixture()  # no autorun: only this test moves time, so the job is
    fx.setUp()  # still in post-copy when the cleanup comes
    world: World = fx.world
    world.add_host("src")
    world.add_host("dst")
    world.add_guest("src", "vm1", memory=GiB, dirty_rate=4 * GiB)
    dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
    errors: list[Exception] = []

    def work() -> None:
        try:
            dom.migrateToURI3(DST_URI, {}, BASE_FLAGS | fake.VIR_MIGRATE_POSTCOPY)
        except fake.libvirtError as exc:
            errors.append(exc)

    def advance_until(phase: JobPhase) -> None:
        while not world.jobs or world.jobs[0].phase is not phase:
            assert world.clock.now() < 60, f"no {phase.value} phase in 60 virtual seconds"
            world.clock.advance(0.1)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    advance_until(JobPhase.TRANSFER)
    fake.open("qemu+tcp://src/system").lookupByName("vm1").migrateStartPostCopy(0)
    advance_until(JobPhase.POSTCOPY)
    fx.cleanUp()
    thread.join(5)
    assert not thread.is_alive()
    assert errors and errors[0].get_error_code() == 1  # the caller hears of the shutdown
    assert world.domain("dst", "vm1").state == fake.VIR_DOMAIN_RUNNING
    assert world.domain("src", "vm1") is None  # UNDEFINE_SOURCE
