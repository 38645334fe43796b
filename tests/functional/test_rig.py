"""Smoke tests of the rig itself, with raw libvirt-python (no migrator code).

They prove what the later functional tests rely on: two distinct hosts, a guest whose dirty
rate is under control and whose heartbeat survives a migration, abort, block migration,
daemon restarts and, in netns mode, a link that can be cut.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time

from tests.functional.helpers import scaled, wait_for
from tests.functional.rig import BASE_FLAGS, Rig

try:  # without it the rig fixture skips (or, with MIGRATOR_REQUIRE_RIG=1, fails) with why
    import libvirt
except ImportError:
    libvirt = None

RUNNING = 1  # VIR_DOMAIN_RUNNING
REASON_MIGRATED = 2  # VIR_DOMAIN_RUNNING_MIGRATED
JOB_UNBOUNDED = 2  # VIR_DOMAIN_JOB_UNBOUNDED
ERR_OPERATION_ABORTED = 78
NON_SHARED_DISK = 64  # VIR_MIGRATE_NON_SHARED_DISK
POSTCOPY = 32768  # VIR_MIGRATE_POSTCOPY
PAUSED = 3
RUNNING_POSTCOPY, RUNNING_POSTCOPY_FAILED = 10, 11
PAUSED_POSTCOPY_FAILED = 13


def ticks(rig: Rig, host: str, name: str) -> list[int]:
    """All complete heartbeat ticks in the guest's serial log on ``host``."""
    text = rig.serial_log(host, name).rpartition("\n")[0]
    return [int(t) for t in re.findall(r"^dirtyguest tick=(\d+) ", text, re.MULTILINE)]


def wait_job_running(rig: Rig, host: str, name: str, timeout: float = 30) -> dict[str, int]:
    """Poll jobStats on a separate connection until RAM is actually being transferred."""
    with contextlib.closing(rig.connect(host)) as c:
        dom = c.lookupByName(name)

        def moving() -> dict[str, int] | None:
            st = dom.jobStats()
            ok = st.get("type") == JOB_UNBOUNDED and st.get("memory_processed", 0) > 0
            return st if ok else None

        return wait_for(moving, timeout, f"migration job of {name} on {host}")


def assert_only_on(rig: Rig, name: str, host: str, *, migrated: bool) -> None:
    where = rig.where(name)
    other = "b" if host == "a" else "a"
    assert where[other] is None, where
    assert where[host] is not None, where
    state, reason, persistent = where[host]
    assert state == RUNNING, where
    assert persistent, where
    if migrated:
        assert reason == REASON_MIGRATED, where


def test_two_distinct_hosts(rig: Rig) -> None:
    uuids = set()
    for h in (rig.a, rig.b):
        with contextlib.closing(rig.connect(h)) as c:
            caps = c.getCapabilities()
            uuids.add(re.search(r"<uuid>(.*?)</uuid>", caps).group(1))
            assert c.getLibVersion() >= 8_000_000
    assert uuids == {rig.a.uuid, rig.b.uuid}
    assert rig.a.peer_uri != rig.b.peer_uri
    assert rig.a.hostpath("/var/log/libvirt/qemu/x.log") == rig.a.root / "log/qemu/x.log"


def test_guest_dirties_at_the_requested_rate(rig: Rig) -> None:
    rig.define_guest("a", "pace", mb=16, rate=8, tick_ms=500)
    rig.wait_heartbeat("a", "pace", above=3)
    # 8 MiB/s = 2048 pages/s.  The guest paces itself: it never writes faster than asked
    # (any tick), and it reaches the pace once its vCPU gets the time (waited for, since a
    # busy host can starve a TCG vCPU for a while; the first tick is a partial one).
    seen: list[dict[str, int]] = []

    def at_pace() -> bool:
        stats = rig.guest_stats("a", "pace")
        assert stats is not None
        seen.append(stats)
        return stats["tick"] > 1 and stats["pps"] >= 2048 * 0.8

    wait_for(at_pace, 30, "the guest to dirty at 8 MiB/s")
    assert seen[-1]["pps"] <= 2048 * 1.2, seen[-1]
    assert seen[-1]["mb"] == 16 and seen[-1]["rate"] == 8
    assert ticks(rig, "a", "pace") == list(range(1, len(ticks(rig, "a", "pace")) + 1))


def test_live_migration_round_trip(rig: Rig) -> None:
    """A->B then B->A with the flags a compute service uses; the guest's heartbeat counter
    (kept in guest RAM) continues on the destination, so its state really moved."""
    name = rig.define_guest("a", "roundtrip", mb=16, rate=32)
    rig.wait_heartbeat("a", name, above=2)
    params = {"migrate_uri": rig.b.migrate_uri, "bandwidth": 0}
    assert params["migrate_uri"] == "tcp://" + rig.b.addr
    seconds = rig.migrate(name, "a", "b", flags=BASE_FLAGS, params=params)
    print(f"A->B in {seconds:.2f}s")
    assert_only_on(rig, name, "b", migrated=True)
    last_on_a = ticks(rig, "a", name)[-1]
    rig.wait_heartbeat("b", name, above=last_on_a + 1)
    on_b = ticks(rig, "b", name)
    # one heartbeat line may straddle the switch-over (half on each side)
    assert last_on_a < on_b[0] <= last_on_a + 2, (last_on_a, on_b)
    assert on_b == list(range(on_b[0], on_b[-1] + 1))

    seconds = rig.migrate(name, "b", "a")
    print(f"B->A in {seconds:.2f}s")
    assert_only_on(rig, name, "a", migrated=True)
    last_on_b = ticks(rig, "b", name)[-1]
    rig.wait_heartbeat("a", name, above=last_on_b + 1)
    assert ticks(rig, "a", name)[-1] > last_on_b


def test_abort_mid_migration_leaves_guest_on_source(rig: Rig) -> None:
    name = rig.define_guest("a", "abort", mb=64, rate=64)
    rig.wait_heartbeat("a", name, above=1)
    m = rig.start_migration(name, "a", "b", params={"bandwidth": 1})  # 1 MiB/s: crawls
    wait_job_running(rig, "a", name)
    assert rig.where(name)["b"] is not None  # the incoming guest exists on B meanwhile
    with contextlib.closing(rig.connect("a")) as c:
        c.lookupByName(name).abortJob()
    m.wait(60)
    assert isinstance(m.error, libvirt.libvirtError), m.error
    assert m.error.get_error_code() == ERR_OPERATION_ABORTED, m.error
    wait_for(lambda: rig.where(name)["b"] is None, 30, "B to drop the incoming guest")
    assert_only_on(rig, name, "a", migrated=False)
    hb = rig.heartbeat("a", name) or 0
    rig.wait_heartbeat("a", name, above=hb)  # still running there


def test_block_migration_copies_the_disk(rig: Rig) -> None:
    """The disk exists on A only; NON_SHARED_DISK copies it (data written before boot and
    the guest's own writes during the migration) to the copy pre-created on B."""
    name = rig.define_guest("a", "blk", mb=8, rate=8, disk=16, start=False)
    marker = b"written-before-boot " * 50
    rig.write_disk("a", name, marker, offset=1 << 20)
    with contextlib.closing(rig.connect("a")) as c:
        c.lookupByName(name).create()
    rig.wait_heartbeat("a", name, above=1)
    assert not rig.b.disk_path(name).exists()
    rig.precreate_disk("b", name)
    rig.migrate(name, "a", "b", flags=BASE_FLAGS | NON_SHARED_DISK)
    assert_only_on(rig, name, "b", migrated=True)
    assert rig.read_disk("b", name, 1 << 20, len(marker)) == marker
    last_on_a = ticks(rig, "a", name)[-1]
    disk_tick = wait_for(lambda: (rig.disk_heartbeat("b", name) or 0) > last_on_a and
                         rig.disk_heartbeat("b", name), 15, "the guest writing its disk on B")
    assert disk_tick > last_on_a


def test_daemon_restart_and_kill_keep_guests_running(rig: Rig) -> None:
    name = rig.define_guest("a", "survivor", mb=0)
    hb = rig.wait_heartbeat("a", name, above=1)
    rig.restart_daemon("a")
    assert rig.where(name)["a"][0] == RUNNING
    hb = rig.wait_heartbeat("a", name, above=hb)
    rig.kill_daemon("a")
    hb = rig.wait_heartbeat("a", name, above=hb)  # QEMU outlives its daemon
    rig.start_daemon("a")
    assert rig.where(name)["a"][0] == RUNNING
    rig.migrate(name, "a", "b")
    assert_only_on(rig, name, "b", migrated=True)


def test_a_daemon_that_died_behind_the_rigs_back_is_revived(rig: Rig) -> None:
    name = rig.define_guest("b", "orphan", mb=0)
    hb = rig.wait_heartbeat("b", name, above=1)
    assert rig.revive() == []  # nothing to do while both run
    dead = rig.b.pid
    os.kill(dead, signal.SIGKILL)  # not kill_daemon(): the rig still expects it to run
    # its reaper (the parent) collects it at once
    wait_for(lambda: not os.path.exists(f"/proc/{dead}"), 15, "the daemon to die")
    found = rig.revive()
    assert len(found) == 1 and found[0].startswith(f"host b: libvirtd {dead} died"), found
    assert rig.b.pid != dead and os.path.exists(rig.b.socket)
    assert rig.where(name)["b"][0] == RUNNING  # the new daemon found its guest
    hb = rig.wait_heartbeat("b", name, above=hb)
    rig.kill_daemon("b")  # as a test that fails before its start_daemon() would leave it
    found = rig.revive()
    assert len(found) == 1 and "was stopped and not started again" in found[0], found
    assert rig.where(name)["b"][0] == RUNNING
    rig.wait_heartbeat("b", name, above=hb)


def test_netns_link_cut_fails_migration_then_recovers(netns_rig: Rig) -> None:
    rig = netns_rig
    assert rig.b.addr not in ("127.0.0.2", "127.0.0.3")
    name = rig.define_guest("a", "cut", mb=32, rate=32)
    rig.wait_heartbeat("a", name, above=1)
    m = rig.start_migration(name, "a", "b", params={"bandwidth": 2})
    wait_job_running(rig, "a", name)
    rig.cut_link()
    try:
        t0 = time.monotonic()
        m.wait(60)
        # the source daemon's keepalive to the destination (3 s x 3) notices the dead link
        print(f"failed {time.monotonic() - t0:.1f}s after the cut: {m.error}")
        assert isinstance(m.error, libvirt.libvirtError), m.error
        assert time.monotonic() - t0 < scaled(40)
        hb = rig.heartbeat("a", name) or 0
        rig.wait_heartbeat("a", name, above=hb)
    finally:
        rig.restore_link()
    # B drops its half-migrated guest once its side of the connection dies too
    wait_for(lambda: rig.where(name)["b"] is None, 60, "B to drop the incoming guest")
    assert_only_on(rig, name, "a", migrated=False)
    rig.migrate(name, "a", "b")
    assert_only_on(rig, name, "b", migrated=True)


def test_netns_shaped_link_slows_migration(netns_rig: Rig) -> None:
    rig = netns_rig
    name = rig.define_guest("a", "shaped", mb=16, rate=1)
    rig.wait_heartbeat("a", name, above=1)
    # 3 MB/s: the 16 MiB the guest filled at boot take >= 5 s; it dirties only 1 MiB/s
    rig.shape_link(rate_kbit=24_000)
    try:
        seconds = rig.migrate(name, "a", "b")
    finally:
        rig.unshape_link()
    assert seconds >= 5, seconds
    assert_only_on(rig, name, "b", migrated=True)


def test_netns_link_cut_mid_postcopy_and_cleanup(netns_rig: Rig) -> None:
    """Cut the link after the switch to post-copy: the guest is split between the hosts
    (source paused, destination waiting for pages) and the rig still cleans it up fast."""
    rig = netns_rig
    name = rig.define_guest("a", "postcopy", mb=64, rate=24)
    rig.wait_heartbeat("a", name, above=1)
    m = rig.start_migration(name, "a", "b", flags=BASE_FLAGS | POSTCOPY,
                            params={"bandwidth": 8, "bandwidth.postcopy": 2})
    wait_job_running(rig, "a", name)
    with contextlib.closing(rig.connect("a")) as c:
        c.lookupByName(name).migrateStartPostCopy(0)
    wait_for(lambda: (rig.where(name)["b"] or (0, 0))[1] == RUNNING_POSTCOPY, 10,
             "the destination to run in post-copy")
    rig.cut_link()
    try:
        m.wait(60)
    finally:
        rig.restore_link()
    assert isinstance(m.error, libvirt.libvirtError), m.error
    where = rig.where(name)
    assert where["a"][:2] == (PAUSED, PAUSED_POSTCOPY_FAILED), where
    # B notices on its own keepalive: POSTCOPY until then, POSTCOPY_FAILED after
    assert where["b"][0] == RUNNING, where
    assert where["b"][1] in (RUNNING_POSTCOPY, RUNNING_POSTCOPY_FAILED), where
    t0 = time.monotonic()
    rig.cleanup_guests()
    assert time.monotonic() - t0 < scaled(5)  # libvirt alone would wait 10 s for SIGTERM per side
    assert rig.where(name) == {"a": None, "b": None}
