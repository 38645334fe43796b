"""The libvirt-shaped surface: module functions, connections, domains, errors."""

from __future__ import annotations

import pytest

from migrator import constants as C
from migrator.testing import fakelibvirt as fake
from migrator.testing.world import UNLIMITED_MIBPS, GiB, World

from .conftest import add_vm, err_tuple, error_of


def test_constants_are_libvirts() -> None:
    for name, value in vars(C).items():
        if name.startswith("VIR_"):
            assert getattr(fake, name) == value, name
    assert fake.VIR_MIGRATE_LIVE == 1
    assert fake.VIR_MIGRATE_PARAM_BANDWIDTH == "bandwidth"
    assert fake.VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE == "memory_dirty_rate"


def test_constants_not_in_migrator_match_libvirt_python() -> None:
    libvirt = pytest.importorskip("libvirt")
    extra = [
        n for n in vars(fake) if n.startswith("VIR_") and not hasattr(C, n) and hasattr(libvirt, n)
    ]
    assert len(extra) > 30
    for name in extra:
        assert getattr(fake, name) == getattr(libvirt, name), name


def test_libvirt_error_surface() -> None:
    bare = fake.libvirtError("boom")
    assert str(bare) == "boom"
    assert bare.get_error_code() is None and bare.get_error_message() is None
    err = fake.libvirtError("x", fake.VIR_ERR_NO_DOMAIN, fake.VIR_FROM_QEMU)
    assert (err.get_error_code(), err.get_error_domain(), err.get_error_level()) == (42, 10, 2)


def test_module_functions(world: World) -> None:
    assert fake.getVersion() == 9_000_000
    assert fake.virEventRegisterDefaultImpl() == 0
    assert fake.virEventRunDefaultImpl() == 0


def test_the_error_handler_sees_every_error(world: World) -> None:
    seen: list[tuple] = []
    assert fake.registerErrorHandler(lambda ctx, err: seen.append((ctx, err[:3])), "ctx") == 1
    try:
        exc = error_of(lambda: fake.open("qemu+tcp://nowhere/system"))
        assert seen == [("ctx", (38, 7, exc.get_error_message()))]
    finally:
        fake.registerErrorHandler(None, None)
    error_of(lambda: fake.open("qemu+tcp://nowhere/system"))
    assert len(seen) == 1


def test_open_resolves_names_addresses_and_local(world: World) -> None:
    world.add_host("c", hostname="compute-3.example.org", aliases=["c3"], qemu_version=(7, 2, 22))
    assert fake.open("qemu+tcp://src/system").getHostname() == "src"
    assert fake.open("qemu+tcp://127.0.0.3:16509/system").getHostname() == "dst"
    assert fake.open("qemu:///system").getHostname() == "src"  # the first host is local
    assert fake.open(None).getHostname() == "src"
    conn = fake.open("qemu+tls://compute-3.example.org/system")
    assert conn.getVersion() == 7_002_022
    assert conn.getLibVersion() == 9_000_000
    assert fake.openReadOnly("qemu+ssh://root@c3/system").getHostname() == "compute-3.example.org"
    assert conn.getURI() == "qemu+tls://compute-3.example.org/system"


def test_open_unknown_or_dead_host_is_connection_refused(world: World) -> None:
    exc = error_of(lambda: fake.open("qemu+tcp://127.0.0.9/system"))
    assert err_tuple(exc) == (
        38,
        7,
        "unable to connect to server at '127.0.0.9:16509': Connection refused",
    )
    exc = error_of(lambda: fake.open("qemu+tcp://dst:1/system"))  # nothing listens there
    assert "dst:1" in str(exc)
    world.faults.unreachable("dst")
    assert error_of(lambda: fake.open("qemu+tcp://dst/system")).get_error_code() == 38


def test_two_opens_are_independent_connections(world: World) -> None:
    a = fake.open("qemu+tcp://src/system")
    b = fake.open("qemu+tcp://src/system")
    assert a is not b
    a.close()
    assert a.isAlive() == 0 and b.isAlive() == 1
    exc = error_of(a.getHostname)
    assert exc.get_error_code() == fake.VIR_ERR_INVALID_CONN
    assert b.getHostname() == "src"


def test_lookups_and_listing(world: World) -> None:
    vm = add_vm(world)
    world.add_guest("src", "off", memory=GiB, state="shutoff")
    world.add_guest("src", "tmp", memory=GiB, persistent=False)
    conn = fake.open("qemu+tcp://src/system")
    dom = conn.lookupByName("vm1")
    assert dom.name() == "vm1" and dom.UUIDString() == vm.uuid
    assert conn.lookupByUUIDString(vm.uuid) == dom
    assert conn.lookupByUUID(dom.UUID()) == dom
    assert conn.lookupByID(dom.ID()) == dom
    names = lambda flags: sorted(d.name() for d in conn.listAllDomains(flags))  # noqa: E731
    assert names(0) == ["off", "tmp", "vm1"]
    assert names(fake.VIR_CONNECT_LIST_DOMAINS_ACTIVE) == ["tmp", "vm1"]
    assert names(fake.VIR_CONNECT_LIST_DOMAINS_INACTIVE) == ["off"]
    assert names(fake.VIR_CONNECT_LIST_DOMAINS_TRANSIENT) == ["tmp"]
    assert names(fake.VIR_CONNECT_LIST_DOMAINS_SHUTOFF | fake.VIR_CONNECT_LIST_DOMAINS_RUNNING) == [
        "off",
        "tmp",
        "vm1",
    ]
    assert conn.numOfDomains() == 2
    assert err_tuple(error_of(lambda: conn.lookupByName("nope"))) == (
        42,
        10,
        "Domain not found: no domain with matching name 'nope'",
    )
    assert error_of(lambda: conn.lookupByUUIDString("0" * 32)).get_error_code() == 42


def test_state_info_and_flags(world: World) -> None:
    add_vm(world, memory=2 * GiB)
    world.add_guest("src", "off", memory=GiB, state="shutoff")
    conn = fake.open("qemu+tcp://src/system")
    dom = conn.lookupByName("vm1")
    assert dom.state() == [fake.VIR_DOMAIN_RUNNING, fake.VIR_DOMAIN_RUNNING_BOOTED]
    assert dom.info()[:4] == [fake.VIR_DOMAIN_RUNNING, 2 * 1024**2, 2 * 1024**2, 1]
    assert dom.isActive() == 1 and dom.isPersistent() == 1
    off = conn.lookupByName("off")
    assert off.isActive() == 0 and off.ID() == -1
    assert "<name>vm1</name>" in dom.XMLDesc()


def test_suspend_resume_destroy_undefine_create(world: World) -> None:
    add_vm(world)
    conn = fake.open("qemu+tcp://src/system")
    dom = conn.lookupByName("vm1")
    assert dom.suspend() == 0
    assert dom.state() == [fake.VIR_DOMAIN_PAUSED, fake.VIR_DOMAIN_PAUSED_USER]
    assert dom.resume() == 0
    assert dom.state() == [fake.VIR_DOMAIN_RUNNING, fake.VIR_DOMAIN_RUNNING_UNPAUSED]
    assert err_tuple(error_of(dom.resume))[0] == 55
    assert dom.destroy() == 0
    assert dom.state() == [fake.VIR_DOMAIN_SHUTOFF, fake.VIR_DOMAIN_SHUTOFF_DESTROYED]
    assert err_tuple(error_of(dom.suspend)) == (
        55,
        20,
        "Requested operation is not valid: domain is not running",
    )
    assert dom.create() == 0 and dom.isActive() == 1
    assert dom.undefine() == 0
    assert dom.isPersistent() == 0 and dom.isActive() == 1
    dom.destroy()  # a transient domain disappears when it stops
    exc = error_of(dom.state)
    assert err_tuple(exc) == (
        42,
        10,
        f"Domain not found: no domain with matching uuid '{dom.UUIDString()}' (vm1)",
    )


def test_define_and_create_from_xml(world: World) -> None:
    conn = fake.open("qemu+tcp://src/system")
    xml = "<domain type='kvm'><name>x</name><memory unit='MiB'>512</memory></domain>"
    dom = conn.defineXML(xml)
    assert dom.isActive() == 0 and dom.isPersistent() == 1
    assert dom.info()[1] == 512 * 1024
    dom.create()
    t = conn.createXML("<domain><name>t</name><memory>1048576</memory></domain>", 0)
    assert t.isActive() == 1 and t.isPersistent() == 0


def test_read_only_connections_cannot_change_anything(world: World) -> None:
    add_vm(world)
    dom = fake.openReadOnly("qemu+tcp://src/system").lookupByName("vm1")
    exc = error_of(dom.suspend)
    assert exc.get_error_code() == fake.VIR_ERR_OPERATION_DENIED
    assert dom.state()[0] == fake.VIR_DOMAIN_RUNNING


def test_event_registration_needs_an_event_loop(fx) -> None:
    fx.world.add_host("h")
    fx.world.add_guest("h", "vm1", memory=GiB)
    conn = fake.open("qemu:///system")
    exc = error_of(
        lambda: conn.domainEventRegisterAny(None, fake.VIR_DOMAIN_EVENT_ID_LIFECYCLE, print, None)
    )
    assert err_tuple(exc) == (1, 0, "internal error: could not initialize domain event timer")
    fake.virEventRegisterDefaultImpl()
    seen = []
    dom = conn.lookupByName("vm1")
    cid = conn.domainEventRegisterAny(
        dom,
        fake.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
        lambda c, d, event, detail, opaque: seen.append((c, d.name(), event, detail, opaque)),
        "op",
    )
    dom.suspend()
    assert seen == [(conn, "vm1", fake.VIR_DOMAIN_EVENT_SUSPENDED, 0, "op")]
    conn.domainEventDeregisterAny(cid)
    dom.resume()
    assert len(seen) == 1
    assert error_of(lambda: conn.domainEventDeregisterAny(cid)).get_error_code() == 8


def test_an_event_reaches_only_the_connections_that_asked_for_it(fx, monkeypatch) -> None:
    """Delivery costs the listeners, not the connections: 1,000 monitors' connections
    once made every event cost 1,000 deliveries (O(N^2) at N concurrent migrations)."""
    fx.world.add_host("h")
    for name in ("vm1", "vm2"):
        fx.world.add_guest("h", name, memory=GiB)
    fake.virEventRegisterDefaultImpl()
    conns = [fake.open("qemu:///system") for _ in range(50)]
    delivered: list[fake.virConnect] = []
    original = fake.virConnect._deliver

    def counting(self, ev):
        delivered.append(self)
        return original(self, ev)

    monkeypatch.setattr(fake.virConnect, "_deliver", counting)
    seen = []
    one, every = conns[7], conns[30]
    vm1 = one.lookupByName("vm1")
    one.domainEventRegisterAny(vm1, fake.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                               lambda c, d, *a: seen.append(("one", d.name())), None)
    cid = every.domainEventRegisterAny(None, fake.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                       lambda c, d, *a: seen.append(("every", d.name())), None)
    conns[0].lookupByName("vm2").suspend()
    assert delivered == [every] and seen == [("every", "vm2")]
    vm1.suspend()
    assert delivered[1:] == [one, every] and seen[1:] == [("one", "vm1"), ("every", "vm1")]
    every.domainEventDeregisterAny(cid)
    one.close()
    conns[0].lookupByName("vm1").resume()
    assert len(delivered) == 3  # nobody asked any more


def test_migration_knobs_without_a_job(world: World) -> None:
    add_vm(world)
    dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
    assert dom.migrateGetMaxDowntime(0) == C.QEMU_DEFAULT_DOWNTIME_MS
    assert dom.migrateSetMaxDowntime(1000, 0) == 0
    assert dom.migrateGetMaxDowntime(0) == 1000
    exc = error_of(lambda: dom.migrateSetMaxDowntime(C.QEMU_MAX_DOWNTIME_MS + 1, 0))
    assert exc.get_error_code() == 1 and "2000 seconds" in str(exc)
    assert dom.migrateGetMaxSpeed(0) == UNLIMITED_MIBPS
    assert dom.migrateGetMaxSpeed(fake.VIR_DOMAIN_MIGRATE_MAX_SPEED_POSTCOPY) == 0
    dom.migrateSetMaxSpeed(100, 0)
    dom.migrateSetMaxSpeed(50, fake.VIR_DOMAIN_MIGRATE_MAX_SPEED_POSTCOPY)
    assert dom.migrateGetMaxSpeed(0) == 100
    assert dom.migrateGetMaxSpeed(fake.VIR_DOMAIN_MIGRATE_MAX_SPEED_POSTCOPY) == 50


def test_job_calls_without_a_job(world: World) -> None:
    add_vm(world)
    world.add_guest("src", "off", memory=GiB, state="shutoff")
    conn = fake.open("qemu+tcp://src/system")
    dom = conn.lookupByName("vm1")
    assert dom.jobStats() == {"type": fake.VIR_DOMAIN_JOB_NONE}
    assert dom.jobStats(fake.VIR_DOMAIN_JOB_STATS_COMPLETED) == {"type": 0}
    assert dom.jobInfo() == [0] * 12
    assert err_tuple(error_of(dom.abortJob)) == (
        55,
        10,
        "Requested operation is not valid: no job is active on the domain",
    )
    assert err_tuple(error_of(lambda: dom.migrateStartPostCopy(0))) == (
        55,
        10,
        "Requested operation is not valid: post-copy can only be started while outgoing "
        "migration is in progress",
    )
    off = conn.lookupByName("off")
    for call in (off.jobStats, off.jobInfo, off.abortJob, lambda: off.migrateSetMaxDowntime(1)):
        assert err_tuple(error_of(call))[:2] == (55, 20)


def test_abort_job_flags_needs_libvirt_8_5(world: World) -> None:
    world.add_host("old", libvirt_version=(8, 0, 0))
    world.add_guest("old", "vm1", memory=GiB)
    dom = fake.open("qemu+tcp://old/system").lookupByName("vm1")
    assert error_of(lambda: dom.abortJobFlags(0)).get_error_code() == fake.VIR_ERR_NO_SUPPORT


def test_no_world_installed_is_a_clear_error() -> None:
    previous = fake.set_world(None)
    try:
        with pytest.raises(RuntimeError, match="no fake libvirt world"):
            fake.open("qemu:///system")
    finally:
        fake.set_world(previous)
