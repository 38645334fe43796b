"""A plan libvirt 9.0 refuses is refused by the fake with the same code, domain and message."""

from __future__ import annotations

import threading

import pytest

from migrator import constants as C
from migrator.testing import fakelibvirt as fake
from migrator.testing.world import Disk, GiB, World

from .conftest import BASE_FLAGS, DST_URI, add_vm, err_tuple, error_of, start_run

P2P = C.VIR_MIGRATE_LIVE | C.VIR_MIGRATE_PEER2PEER
TUN = C.VIR_MIGRATE_TUNNELLED

# (id, flags, params, (code, domain, message))
REFUSALS = [
    (
        "no-p2p",
        C.VIR_MIGRATE_LIVE,
        {},
        (74, 20, "argument unsupported: direct migration is not supported by the source host"),
    ),
    (
        "both-non-shared",
        P2P | C.VIR_MIGRATE_NON_SHARED_DISK | C.VIR_MIGRATE_NON_SHARED_INC,
        {},
        (
            8,
            20,
            "invalid argument: Flags 'VIR_MIGRATE_NON_SHARED_DISK' and "
            "'VIR_MIGRATE_NON_SHARED_INC' are mutually exclusive",
        ),
    ),
    (
        "tunnelled-parallel",
        P2P | TUN | C.VIR_MIGRATE_PARALLEL,
        {},
        (
            8,
            10,
            "invalid argument: Flags 'VIR_MIGRATE_TUNNELLED' and 'VIR_MIGRATE_PARALLEL' "
            "are mutually exclusive",
        ),
    ),
    (
        "postcopy-tunnelled",
        P2P | TUN | C.VIR_MIGRATE_POSTCOPY,
        {},
        (74, 10, "argument unsupported: post-copy is not supported with tunnelled migration"),
    ),
    (
        "tunnelled-uri",
        P2P | TUN,
        {C.VIR_MIGRATE_PARAM_URI: "tcp://127.0.0.3"},
        (74, 10, "argument unsupported: migration URI is not supported by tunnelled migration"),
    ),
    (
        "postcopy-not-live",
        C.VIR_MIGRATE_PEER2PEER | C.VIR_MIGRATE_POSTCOPY,
        {},
        (
            74,
            10,
            "argument unsupported: post-copy migration is not supported with non-live or "
            "paused migration",
        ),
    ),
    (
        "postcopy-paused-flag",
        P2P | C.VIR_MIGRATE_POSTCOPY | C.VIR_MIGRATE_PAUSED,
        {},
        (
            74,
            10,
            "argument unsupported: post-copy migration is not supported with non-live or "
            "paused migration",
        ),
    ),
    (
        "offline-not-persistent",
        P2P | C.VIR_MIGRATE_OFFLINE,
        {},
        (
            55,
            10,
            "Requested operation is not valid: offline migration must be specified with the "
            "persistent flag set",
        ),
    ),
    (
        "offline-tunnelled",
        P2P | C.VIR_MIGRATE_OFFLINE | C.VIR_MIGRATE_PERSIST_DEST | TUN,
        {},
        (
            55,
            10,
            "Requested operation is not valid: tunnelled offline migration does not make sense",
        ),
    ),
    (
        "zerocopy-alone",
        P2P | C.VIR_MIGRATE_ZEROCOPY,
        {},
        (
            55,
            10,
            "Requested operation is not valid: zero-copy is only available for parallel migration",
        ),
    ),
    (
        "non-shared-tunnelled",
        P2P | TUN | C.VIR_MIGRATE_NON_SHARED_INC,
        {},
        (
            84,
            10,
            "Operation not supported: migration of non-shared storage is not supported with "
            "tunnelled migration and this QEMU",
        ),
    ),
    (
        "disks-without-non-shared",
        P2P,
        {C.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ["vda"]},
        (
            84,
            10,
            "Operation not supported: use of 'VIR_MIGRATE_PARAM_MIGRATE_DISKS' requires use of "
            "'VIR_MIGRATE_NON_SHARED_DISK' or 'VIR_MIGRATE_NON_SHARED_INC' flag",
        ),
    ),
    (
        "unknown-disk",
        P2P | C.VIR_MIGRATE_NON_SHARED_INC,
        {C.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ["vdz"]},
        (8, 10, "invalid argument: disk target vdz not found"),
    ),
    (
        "auto-converge-params-without-flag",
        P2P,
        {C.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL: 40},
        (8, 10, "invalid argument: Turn auto convergence on to tune it"),
    ),
    (
        "parallel-connections-without-flag",
        P2P,
        {C.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS: 4},
        (8, 10, "invalid argument: Turn parallel migration on to tune it"),
    ),
    (
        "zstd-on-libvirt-9.0",
        P2P | C.VIR_MIGRATE_PARALLEL,
        {C.VIR_MIGRATE_PARAM_COMPRESSION: ["zstd"]},
        (8, 10, "invalid argument: Unsupported compression method 'zstd'"),
    ),
    (
        "mt-level-without-mt",
        P2P | C.VIR_MIGRATE_COMPRESSED,
        {"compression.mt.level": 3},
        (8, 10, "invalid argument: Turn multithread compression on to tune it"),
    ),
    (
        "avail-switchover-on-9.0",
        P2P,
        {C.VIR_MIGRATE_PARAM_BANDWIDTH_AVAIL_SWITCHOVER: 100},
        (74, 0, "argument unsupported: parameter 'bandwidth.avail.switchover' not supported"),
    ),
    (
        "throttle-out-of-range",
        P2P | C.VIR_MIGRATE_AUTO_CONVERGE,
        {C.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL: 0},
        (
            1,
            10,
            "internal error: unable to execute QEMU command 'migrate-set-parameters': Parameter "
            "'cpu_throttle_initial' expects an integer in the range of 1 to 99",
        ),
    ),
]


def assert_nothing_moved(world: World) -> None:
    src = world.domain("src", "vm1")
    assert src is not None and src.state == C.VIR_DOMAIN_RUNNING and src.outgoing is None
    assert world.domain("dst", "vm1") is None
    assert not world.jobs


@pytest.mark.parametrize(
    ("flags", "params", "expected"),
    [pytest.param(f, p, e, id=i) for i, f, p, e in REFUSALS],
)
def test_refused_like_libvirt(world: World, flags: int, params: dict, expected: tuple) -> None:
    add_vm(world, disks=[Disk("vda", 10 * GiB)])
    dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
    exc = error_of(lambda: dom.migrateToURI3(DST_URI, params, flags | C.VIR_MIGRATE_UNSAFE))
    assert err_tuple(exc) == expected
    assert_nothing_moved(world)
    assert dom.jobStats() == {"type": 0}


def test_paused_guest_cannot_use_postcopy(world: World) -> None:
    add_vm(world, state="paused")
    dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
    exc = error_of(lambda: dom.migrateToURI3(DST_URI, {}, BASE_FLAGS | C.VIR_MIGRATE_POSTCOPY))
    assert exc.get_error_code() == 74 and "paused migration" in str(exc)


def test_local_disks_need_storage_migration_or_unsafe(world: World) -> None:
    add_vm(world, disks={"vda": 10 * GiB})
    dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
    exc = error_of(lambda: dom.migrateToURI3(DST_URI, {}, BASE_FLAGS))
    assert err_tuple(exc) == (
        81,
        10,
        "Unsafe migration: Migration without shared storage is unsafe",
    )
    assert_nothing_moved(world)


def test_shared_disks_need_nothing(world: World) -> None:
    add_vm(world, disks=[Disk("vda", 10 * GiB, shared=True)], dirty_rate=0)
    world.autorun = True
    dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
    assert dom.migrateToURI3(DST_URI, {}, BASE_FLAGS) == 0


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("qemu:///system", (8, 20, "invalid argument: Attempt to migrate guest to the same host")),
        (
            "qemu+tcp://localhost/system",
            (8, 20, "invalid argument: Attempt to migrate guest to the same host"),
        ),
        (
            "qemu+tcp://nowhere/system",
            (38, 7, "unable to connect to server at 'nowhere:16509': Connection refused"),
        ),
    ],
)
def test_bad_destinations(world: World, uri: str, expected: tuple) -> None:
    add_vm(world)
    dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
    assert err_tuple(error_of(lambda: dom.migrateToURI3(uri, {}, BASE_FLAGS))) == expected
    assert_nothing_moved(world)


def test_migrating_to_itself_by_address(world: World) -> None:
    add_vm(world)
    dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
    exc = error_of(lambda: dom.migrateToURI3("qemu+tcp://127.0.0.2/system", {}, BASE_FLAGS))
    code, domain, message = err_tuple(exc)
    assert (code, domain) == (1, 10)
    assert (
        message
        == f"internal error: Attempt to migrate guest to the same host {world.host('src').uuid}"
    )


def test_unreachable_destination(world: World) -> None:
    add_vm(world)
    world.faults.unreachable("dst")
    dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
    exc = error_of(lambda: dom.migrateToURI3(DST_URI, {}, BASE_FLAGS))
    assert err_tuple(exc) == (
        38,
        7,
        "unable to connect to server at 'dst:16509': Connection refused",
    )


def test_flags_newer_than_the_host_are_unsupported(world: World) -> None:
    world.add_host("old", libvirt_version=(8, 0, 0))
    world.add_guest("old", "vm1", memory=GiB)
    dom = fake.open("qemu+tcp://old/system").lookupByName("vm1")
    exc = error_of(lambda: dom.migrateToURI3(DST_URI, {}, BASE_FLAGS | C.VIR_MIGRATE_ZEROCOPY))
    assert err_tuple(exc) == (
        8,
        10,
        "invalid argument: unsupported flags (0x100000) in function "
        "qemuDomainMigratePerform3Params",
    )


def test_wrong_parameter_types_fail_in_the_binding(world: World) -> None:
    add_vm(world)
    dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
    with pytest.raises(TypeError):
        dom.migrateToURI3(DST_URI, {C.VIR_MIGRATE_PARAM_BANDWIDTH: "fast"}, BASE_FLAGS)
    with pytest.raises(OverflowError):
        dom.migrateToURI3(DST_URI, {C.VIR_MIGRATE_PARAM_BANDWIDTH: -1}, BASE_FLAGS)


def test_shut_off_domain_is_not_running(world: World) -> None:
    world.add_guest("src", "off", memory=GiB, state="shutoff")
    dom = fake.open("qemu+tcp://src/system").lookupByName("off")
    assert err_tuple(error_of(lambda: dom.migrateToURI3(DST_URI, {}, BASE_FLAGS))) == (
        55,
        20,
        "Requested operation is not valid: domain is not running",
    )


def test_offline_migration_copies_the_definition(world: World) -> None:
    world.add_guest("src", "off", memory=GiB, state="shutoff")
    dom = fake.open("qemu+tcp://src/system").lookupByName("off")
    flags = C.VIR_MIGRATE_PEER2PEER | C.VIR_MIGRATE_OFFLINE | C.VIR_MIGRATE_PERSIST_DEST
    assert dom.migrateToURI3(DST_URI, {}, flags | C.VIR_MIGRATE_UNDEFINE_SOURCE) == 0
    moved = world.domain("dst", "off")
    assert moved is not None and moved.persistent and not moved.active
    assert world.domain("src", "off") is None


def test_second_migration_of_the_same_domain_times_out_on_the_job_lock(world: World) -> None:
    add_vm(world, dirty_rate=0)
    run = start_run(world).start()
    while run.poll() == {"type": 0} and not world.jobs:
        threading.Event().wait(0.01)
    exc = error_of(lambda: run.mdom.migrateToURI3(DST_URI, {}, BASE_FLAGS))
    assert exc.get_error_code() == C.VIR_ERR_OPERATION_TIMEOUT
    assert "cannot acquire state change lock" in str(exc)
    run.monitor()
    assert run.error is None


def test_destination_already_running_the_guest(world: World) -> None:
    vm = add_vm(world)
    world.add_guest("dst", "vm1", memory=GiB, uuid=vm.uuid)
    dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
    exc = error_of(lambda: dom.migrateToURI3(DST_URI, {}, BASE_FLAGS))
    assert exc.get_error_code() == 55 and "already active" in str(exc)


def test_migrate_tls_force_demands_tls(world: World) -> None:
    world.host("src").migrate_tls_force = True
    add_vm(world)
    dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
    exc = error_of(lambda: dom.migrateToURI3(DST_URI, {}, BASE_FLAGS))
    assert err_tuple(exc) == (
        55,
        10,
        "Requested operation is not valid: this libvirtd instance allows migration only with "
        "VIR_MIGRATE_TLS flag",
    )


def test_native_tls_without_certificates_fails_at_run_time(world: World) -> None:
    world.host("dst").tls_certificates = False
    add_vm(world, dirty_rate=0)
    run = start_run(world).start(flags=BASE_FLAGS | C.VIR_MIGRATE_TLS).monitor()
    assert run.error is not None and run.error.get_error_code() == 1
    assert "Unable to access credentials" in str(run.error)
    assert_nothing_moved(world)
    world.host("dst").tls_certificates = True
    assert start_run(world).start(flags=BASE_FLAGS | C.VIR_MIGRATE_TLS).monitor().error is None
