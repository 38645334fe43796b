"""Faults during real migrations: dead daemons and cut links, through migrator's driver.

Every fault runs on the session's netns rig (its link can be cut and shaped) and every test
checks the whole promise afterwards:

* the outcome, and that exactly one callback ran (the right one, once, also after a while);
* where the guest runs: on exactly one host, persistent there; or, for a post-copy that
  cannot be resumed, the split state exactly as the outcome describes it;
* its memory: the heartbeat counter (kept in guest RAM) goes on past its value before;
* nothing left behind: no ``migrator-`` thread, no libvirt connection (socket) of this
  process, no libvirt job on either host (``jobStats`` type NONE).

Timings on the 2-core build machine: libvirt notices a cut link after its keepalive
(3 s x 3 in the rig), ~10 s; TCP gives up on QEMU's stream after ~6 s with
``rig.tcp_patience(4)`` (~15 min by default).  A post-copy needs a slow link to last long
enough to be hit: the link is shaped to 2 MB/s (``LINK_KBIT``) and the guest rewrites 96 MiB
flat out, so pre-copy never converges and the post-copy would take about a minute.

libvirt 9.0's ``libvirtd`` does not exit on SIGTERM while a migration job runs (it waits
for the job's worker thread), so ``rig.restart_daemon()`` mid-migration ends in its SIGKILL
after 15 s anyway: the source-daemon tests kill and start it (a crash-restart, or systemd's
stop timeout), which takes ~0.5 s.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
from typing import Any

import pytest

from migrator import constants as c
from migrator.testing.config import make_conf
from tests.functional.helpers import (
    CAP,
    GRACE,
    NEVER,
    Leftovers,
    Run,
    assert_moved,
    assert_stayed,
    guest,
    job_type,
    new_migrator_threads,
    open_sockets,
    scaled,
    state,
    wait_for,
)

libvirt = pytest.importorskip("libvirt")

LINK_KBIT = 16_000  # 2 MB/s between the hosts: post-copy lasts about a minute

RUNNING, PAUSED, SHUTOFF = (c.VIR_DOMAIN_RUNNING, c.VIR_DOMAIN_PAUSED, c.VIR_DOMAIN_SHUTOFF)
RUNNING_POSTCOPY = libvirt.VIR_DOMAIN_RUNNING_POSTCOPY  # 10
RUNNING_POSTCOPY_FAILED = libvirt.VIR_DOMAIN_RUNNING_POSTCOPY_FAILED  # 11
PAUSED_POSTCOPY_FAILED = libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED  # 13
SHUTOFF_MIGRATED = libvirt.VIR_DOMAIN_SHUTOFF_MIGRATED  # 4


# --- helpers ------------------------------------------------------------------------------


@contextlib.contextmanager
def faulty_link(rig) -> Iterator[None]:
    """The link is back up and unshaped afterwards, whatever happened."""
    try:
        yield
    finally:
        rig.restore_link()
        rig.unshape_link()


def start_post_copy(rig, name: str, **conf: Any) -> tuple[Run, int]:
    """A migration switched to post-copy by force_complete(), on a 2 MB/s link: the guest
    runs on b, most of its memory still on a.  Returns the run and the guest's last
    heartbeat on a."""
    tick = guest(rig, name, **NEVER)
    rig.shape_link(LINK_KBIT)
    run = Run(rig, name, conf=make_conf(live_migration_permit_post_copy=True, **conf))
    run.wait_running()
    assert run.handle.force_complete().result(30) is True
    wait_for(lambda: state(rig, name, "b") == (RUNNING, RUNNING_POSTCOPY), 30,
             "the guest to run on b in post-copy")
    return run, max(tick, rig.heartbeat("a", name) or 0)


def restart_source_daemon(rig, down: float = 0.0) -> None:
    rig.kill_daemon("a")  # a graceful stop waits for the migration job (see the docstring)
    time.sleep(down)
    rig.start_daemon("a")


# --- pre-copy -------------------------------------------------------------------------------


def test_destination_daemon_killed_mid_pre_copy(netns_rig) -> None:
    rig, name = netns_rig, "dstkill"
    tick = guest(rig, name, **NEVER)
    left = Leftovers(rig, name)
    run = Run(rig, name, conf=make_conf(live_migration_bandwidth=CAP))
    run.wait_running()
    try:
        rig.kill_daemon("b")  # its incoming QEMU keeps running, orphaned
        outcome = run.wait(60)
    finally:
        rig.start_daemon("b")
    assert outcome.status == "failed" and outcome.mode is None, outcome
    assert "closed" in outcome.error, outcome.error  # the source lost the destination daemon
    # the restarted destination daemon drops the half-migrated guest it finds
    wait_for(lambda: rig.where(name)["b"] is None, 30, "b to drop the incoming guest")
    assert_stayed(rig, name, "a")
    assert rig.heartbeat("a", name) > tick
    left.check(rig, name, run)


def test_link_cut_mid_pre_copy(netns_rig) -> None:
    rig, name = netns_rig, "precut"
    tick = guest(rig, name, **NEVER)
    left = Leftovers(rig, name)
    run = Run(rig, name, conf=make_conf(live_migration_bandwidth=CAP))
    run.wait_running()
    with faulty_link(rig):
        rig.cut_link()
        t0 = time.monotonic()
        outcome = run.wait(90)
        settled = time.monotonic() - t0
    # libvirt's keepalive (3 s x 3) notices; the guest never stopped on a
    assert outcome.status == "failed" and outcome.mode is None, outcome
    assert "client socket is closed" in outcome.error, outcome.error
    assert settled < 40, settled
    wait_for(lambda: rig.where(name)["b"] is None, 60, "b to drop the incoming guest")
    assert_stayed(rig, name, "a")
    assert rig.heartbeat("a", name) > tick
    left.check(rig, name, run)


def test_source_daemon_restarted_mid_pre_copy(netns_rig) -> None:
    """migrateToURI3 and the monitor's connection drop together; the restarted libvirtd
    cancels the unfinished pre-copy and the guest goes on on the source."""
    rig, name = netns_rig, "srcpre"
    tick = guest(rig, name, **NEVER)
    left = Leftovers(rig, name)
    run = Run(rig, name, conf=make_conf(live_migration_bandwidth=CAP))
    run.wait_running()
    restart_source_daemon(rig)
    outcome = run.wait(90)
    assert outcome.status == "failed" and outcome.mode is None, outcome
    wait_for(lambda: rig.where(name)["b"] is None, 30, "b to drop the incoming guest")
    assert_stayed(rig, name, "a")
    assert rig.heartbeat("a", name) > tick
    left.check(rig, name, run)


# --- post-copy ------------------------------------------------------------------------------


def test_link_cut_mid_post_copy_is_resumed(netns_rig) -> None:
    """The link stays down long enough for TCP to give up on QEMU's stream (both QEMUs go to
    postcopy-paused, libvirt says POSTCOPY_FAILED on both hosts); once it is back the driver's
    POSTCOPY_RESUME finishes the migration."""
    rig, name = netns_rig, "pcresume"
    left = Leftovers(rig, name)
    with rig.tcp_patience(4), faulty_link(rig):
        run, tick = start_post_copy(rig, name, live_migration_postcopy_recovery_timeout=60)
        rig.cut_link()
        wait_for(lambda: state(rig, name, "a") == (PAUSED, PAUSED_POSTCOPY_FAILED)
                 and state(rig, name, "b") == (RUNNING, RUNNING_POSTCOPY_FAILED), 60,
                 "post-copy to fail on both hosts")
        time.sleep(2)  # the driver retries meanwhile: the destination is unreachable
        rig.unshape_link()
        rig.restore_link()
        outcome = run.wait(120)
    assert outcome.status == "completed" and outcome.mode == "post-copy", outcome.error
    assert any("was resumed after" in n for n in outcome.notes), outcome.notes
    assert_moved(rig, name, "b", tick)
    left.check(rig, name, run)


def test_short_link_cut_mid_post_copy_completes(netns_rig) -> None:
    rig, name = netns_rig, "pcshort"
    left = Leftovers(rig, name)
    with faulty_link(rig):
        run, tick = start_post_copy(rig, name, live_migration_postcopy_recovery_timeout=20)
        rig.cut_link()
        wait_for(lambda: state(rig, name, "a") == (PAUSED, PAUSED_POSTCOPY_FAILED), 60,
                 "libvirt to give up on the source")
        time.sleep(2)
        rig.unshape_link()
        rig.restore_link()
        # TCP retransmits: QEMU's stream goes on and the post-copy finishes without libvirt
        wait_for(lambda: state(rig, name, "b") == (RUNNING, libvirt.VIR_DOMAIN_RUNNING_MIGRATED),
                 60, "the post-copy to finish on b")
        outcome = run.wait(120)
    assert outcome.status == "completed" and outcome.mode == "post-copy", outcome.error
    assert_moved(rig, name, "b", tick)
    left.check(rig, name, run)


def test_link_cut_mid_post_copy_never_restored(netns_rig) -> None:
    """Not resumable in time: postcopy_failed, and the message describes the state exactly
    (checked on both hosts) and the way out (which is then taken, and works)."""
    rig, name = netns_rig, "pcdead"
    left = Leftovers(rig, name)
    with rig.tcp_patience(4), faulty_link(rig):
        run, tick = start_post_copy(rig, name, live_migration_postcopy_recovery_timeout=5)
        plan = run.handle.plan
        rig.cut_link()
        outcome = run.wait(120)
        assert outcome.status == "postcopy_failed" and outcome.mode == "post-copy", outcome
        assert run.recover == [outcome]
        error = outcome.error
        assert "could not be resumed within 5 s" in error, error
        assert "Network is unreachable" in error, error  # the last attempt's reason
        assert "virsh migrate --postcopy --postcopy-resume" in error, error
        # "the guest runs on the destination, paused on missing memory that is still on the
        # source": libvirt agrees on both hosts, and the guest's heartbeat stands still
        where = rig.where(name)
        assert where["a"] == (PAUSED, PAUSED_POSTCOPY_FAILED, True), where
        # The destination's QEMU notices the dead stream on its own (TCP gives up), which
        # can come a few seconds after the source's did: until then libvirt says
        # RUNNING_POSTCOPY there, and the guest is already stuck on missing pages.
        assert where["b"][:2] in ((RUNNING, RUNNING_POSTCOPY), (RUNNING, RUNNING_POSTCOPY_FAILED))
        wait_for(lambda: state(rig, name, "b") == (RUNNING, RUNNING_POSTCOPY_FAILED), 60,
                 "the destination to mark the post-copy failed")
        stuck = rig.heartbeat("b", name)
        time.sleep(2)
        assert rig.heartbeat("b", name) == stuck
        assert job_type(rig, "a", name) == libvirt.VIR_DOMAIN_JOB_UNBOUNDED  # kept to resume
        left.check_process(run)
        # the way out the message gives: repair the link and resume
        rig.unshape_link()
        rig.restore_link()
        rig.migrate(name, "a", "b", params=plan.params, timeout=60, flags=plan.flags
                    | libvirt.VIR_MIGRATE_POSTCOPY | libvirt.VIR_MIGRATE_POSTCOPY_RESUME)
    assert_moved(rig, name, "b", tick)
    left.check_jobs(rig, name)


# --- the source daemon restarted while the monitor runs -----------------------------------

_RESTARTED: dict[str, Any] = {}


def _restart_mid_post_copy(rig) -> dict[str, Any]:
    """Kill and start the source libvirtd in post-copy; the migration goes on in QEMU and
    libvirt takes the job over again.  Run once; both tests below look at the result."""
    if "outcome" in _RESTARTED:
        return _RESTARTED
    name = "srcpost"
    left = Leftovers(rig, name)
    with faulty_link(rig):
        run, tick = start_post_copy(rig, name)
        restart_source_daemon(rig)
        time.sleep(2)  # the monitor reconnects while the post-copy still crawls
        rig.unshape_link()
        outcome = run.wait(90)
    wait_for(lambda: state(rig, name, "a") in (None, (SHUTOFF, SHUTOFF_MIGRATED)), 30,
             "the guest to stop on a")
    _RESTARTED.update(outcome=outcome, run=run, tick=tick, left=left, where=rig.where(name))
    return _RESTARTED


def test_source_daemon_restarted_mid_post_copy(netns_rig) -> None:
    rig, name = netns_rig, "srcpost"
    _RESTARTED.clear()
    r = _restart_mid_post_copy(rig)
    outcome = r["outcome"]
    assert outcome.status == "completed" and outcome.mode == "post-copy", outcome
    where = r["where"]
    assert where["a"] is None or where["a"][:2] == (SHUTOFF, SHUTOFF_MIGRATED), where
    assert where["b"] is not None and where["b"][0] == RUNNING and where["b"][2], where
    assert rig.wait_heartbeat("b", name, above=r["tick"], timeout=30) > r["tick"]
    r["left"].check(rig, name, r["run"])


def test_source_daemon_restarted_mid_post_copy_leaves_no_definition(netns_rig) -> None:
    r = _restart_mid_post_copy(netns_rig)
    assert r["outcome"].status == "completed", r["outcome"]
    assert r["where"]["a"] is None, r["where"]


def test_source_daemon_down_for_a_while_mid_post_copy(netns_rig) -> None:
    rig, name = netns_rig, "srcdown"
    left = Leftovers(rig, name)
    with faulty_link(rig):
        run, tick = start_post_copy(rig, name)
        restart_source_daemon(rig, down=10)
        rig.unshape_link()
        outcome = run.wait(90)
    assert outcome.status == "completed" and outcome.mode == "post-copy", (
        outcome.status, outcome.error, rig.where(name))
    assert rig.wait_heartbeat("b", name, above=tick, timeout=30) > tick
    left.check(rig, name, run)


# --- connections of a settled migration -----------------------------------------------------


@pytest.mark.parametrize("ending", [
    "completed",
    "cancelled",  # migrateToURI3 raised: the error must not keep its frames
])
def test_settled_handle_keeps_no_connection(netns_rig, ending) -> None:
    rig, name = netns_rig, f"conns-{ending}"
    if ending == "completed":
        guest(rig, name, mb=8)
        run = Run(rig, name)
    else:
        guest(rig, name, **NEVER)
        run = Run(rig, name, conf=make_conf(live_migration_bandwidth=CAP))
        run.wait_running()
        assert run.handle.abort().result(30) is True
    outcome = run.wait()
    assert outcome.status == ending, outcome
    deadline = time.monotonic() + scaled(GRACE)  # the migration's thread closes its connections
    while new_migrator_threads(set()) and time.monotonic() < deadline:
        time.sleep(0.2)
    gc.collect()
    assert run.handle.done()
    with_handle = open_sockets()
    run.handle = None  # type: ignore[assignment]
    gc.collect()
    held = with_handle - open_sockets()
    assert held == 0, f"the settled handle holds {held} libvirt connection(s)"
