"""Truthful outcomes on the real rig: the service loses the source daemon, or stops and
starts again, while the migration goes on inside libvirt.

The service's connection to the source daemon is cut while the daemons still reach each
other (:func:`client_cut`: this process's sockets to the source libvirtd are shut down and
the daemon's socket is hidden, so reconnecting fails; libvirtd's own connection to the
destination and QEMU's stream are untouched).  A peer-to-peer job goes on without its
client.  Every test then checks the outcome against where the guest runs: its heartbeat
counter (kept in guest RAM) goes on there.

"Killed and started again": a separate Python process starts the migration and is killed
with SIGKILL; the test process then plays the restarted service (``init_host`` finds the
job, ``reattach`` follows it) and the migration settles.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrator import constants as c
from migrator.driver import LiveMigrationDriver
from migrator.testing.config import make_conf
from tests.functional.helpers import (
    CAP,
    NEVER,
    Run,
    assert_moved,
    assert_stayed,
    guest,
    wait_for,
)

libvirt = pytest.importorskip("libvirt")

ROOT = Path(__file__).resolve().parents[2]
CRAWL = {"mb": 16, "rate": 1}  # with a 3 MiB/s cap: converges after ~8 s
CRAWL_CAP = 3
_SS_LINE = re.compile(r"^u_str\s+\S+\s+\d+\s+\d+\s+\S+\s+(\d+)\s+\S+\s+(\d+)\s*(.*)$")
_OWNER = re.compile(r"pid=(\d+),fd=(\d+)")


def _client_fds(daemon_pid: int) -> list[int]:
    """This process's sockets whose peer belongs to ``daemon_pid`` (its libvirt clients)."""
    out = subprocess.run(["ss", "-xnp"], capture_output=True, text=True, check=True).stdout
    owner: dict[str, tuple[int, int]] = {}
    peer_of: dict[str, str] = {}
    for line in out.splitlines():
        m = _SS_LINE.match(line.strip())
        if not m:
            continue
        local, peer, users = m.groups()
        peer_of[local] = peer
        for pid, fd in _OWNER.findall(users):
            owner.setdefault(local, (int(pid), int(fd)))
    me = os.getpid()
    return [fd for inode, (pid, fd) in owner.items()
            if pid == me and owner.get(peer_of.get(inode, ""), (0, 0))[0] == daemon_pid]


@contextlib.contextmanager
def client_cut(rig, host: str = "a") -> Iterator[int]:
    """This process loses ``host``'s daemon (the daemons still talk); yields sockets cut."""
    h = rig.host(host)
    hidden = h.socket.with_name(h.socket.name + ".cut")
    os.rename(h.socket, hidden)
    try:
        fds = _client_fds(h.pid)
        for fd in fds:
            with contextlib.closing(socket.socket(fileno=os.dup(fd))) as s:
                s.shutdown(socket.SHUT_RDWR)
        yield len(fds)
    finally:
        os.rename(hidden, h.socket)
        rig._drop_conn(h.name)  # its cached connection died with the others


def runs_on_b(rig, name: str) -> bool:
    with contextlib.closing(rig.connect("b")) as conn:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            return False
        state, reason = dom.state()
        return state == c.VIR_DOMAIN_RUNNING and reason == c.VIR_DOMAIN_RUNNING_MIGRATED


def remaining(rig, name: str) -> int | None:
    with contextlib.closing(rig.connect("a")) as conn:
        with contextlib.suppress(libvirt.libvirtError):
            stats = conn.lookupByName(name).jobStats()
            if stats.get("type") == c.VIR_DOMAIN_JOB_UNBOUNDED and stats.get("memory_total"):
                return int(stats.get("data_remaining", 0))
    return None


# -- the service's connection to the source daemon is cut --------------------------------


def test_cut_mid_pre_copy_the_job_completes_without_us(rig) -> None:
    """No way to ask the destination: the outcome waits for the source, then settles from
    what it shows (the guest undefined by our migration)."""
    tick = guest(rig, "cut-pre", **CRAWL)
    run = Run(rig, "cut-pre", conf=make_conf(live_migration_bandwidth=CRAWL_CAP),
              dest_connect_uri=None)
    run.wait_running()
    with client_cut(rig) as cut:
        assert cut >= 2  # the call's connection and the monitor's
        wait_for(lambda: runs_on_b(rig, "cut-pre"), 90, "the job to finish inside libvirt")
        time.sleep(2)
        assert not run.handle.done(), "settled while the source could not be asked"
    outcome = run.wait()
    assert outcome.status == "completed", (outcome.rule, outcome.error, outcome.notes)
    assert outcome.rule == "source-undefined"
    assert any("cannot be reached" in n for n in outcome.notes)
    assert_moved(rig, "cut-pre", "b", tick)


def test_cut_at_the_switch_over_the_destination_settles_it(rig) -> None:
    tick = guest(rig, "cut-switch", **CRAWL)
    run = Run(rig, "cut-switch", conf=make_conf(live_migration_bandwidth=CRAWL_CAP))
    run.wait_running()
    wait_for(lambda: (remaining(rig, "cut-switch") or 1 << 40) < 3 * 2**20, 90,
             "the last pass before the switch-over")
    with client_cut(rig):
        outcome = run.handle.wait(90)  # settled through the destination, still cut off
        assert outcome is not None, "not settled although the destination runs the guest"
    outcome = run.wait()
    assert outcome.status == "completed" and outcome.rule == "destination-runs"
    assert_moved(rig, "cut-switch", "b", tick)


def test_cut_mid_pre_copy_the_monitor_follows_the_job_again(rig) -> None:
    """The job outlives the cut; afterwards the monitor follows it again and its completion
    timeout (20 s from the start) aborts it: timed_out, and the guest runs at home."""
    guest(rig, "cut-back", **NEVER)
    conf = make_conf(live_migration_bandwidth=CAP, live_migration_completion_timeout=10)
    run = Run(rig, "cut-back", conf=conf, dest_connect_uri=None)
    run.wait_running()
    with client_cut(rig):
        time.sleep(6)
    outcome = run.wait()
    assert outcome.status == "timed_out" and outcome.rollback_safe, outcome.error
    assert any("following it to its end" in n for n in outcome.notes)
    assert_stayed(rig, "cut-back", "a")


def test_cut_for_good_is_unknown_and_nothing_is_rolled_back(rig) -> None:
    guest(rig, "cut-lost", **NEVER)
    conf = make_conf(live_migration_bandwidth=CAP, live_migration_establish_timeout=10,
                     live_migration_completion_timeout=0)
    run = Run(rig, "cut-lost", conf=conf, dest_connect_uri=None)
    run.wait_running()
    with client_cut(rig):
        outcome = run.handle.wait(90)
        assert outcome is not None
    assert outcome.status == "unknown" and not outcome.rollback_safe
    assert outcome.rule == "source-unreachable" and "do not roll back" in outcome.error
    # truthfully so: the job still runs inside libvirt, the guest on the source
    with contextlib.closing(rig.connect("a")) as conn:
        dom = conn.lookupByName("cut-lost")
        assert dom.jobStats()["type"] == c.VIR_DOMAIN_JOB_UNBOUNDED
        dom.abortJob()  # the operator's clean-up
    wait_for(lambda: rig.where("cut-lost")["b"] is None, 60, "the aborted job to end")
    assert_stayed(rig, "cut-lost", "a")


# -- the monitor is killed and started again --------------------------------------------------

SERVICE = textwrap.dedent(
    """
    import sys, time
    from oslo_config import cfg
    import libvirt
    import migrator.conf
    from migrator.driver import LiveMigrationDriver

    src_uri, dest, name, bandwidth, timeout = sys.argv[1:6]
    conf = cfg.ConfigOpts(); migrator.conf.register_opts(conf); conf([], default_config_files=[])
    conf.set_override("live_migration_bandwidth", int(bandwidth), group="libvirt")
    conf.set_override("live_migration_completion_timeout", int(timeout), group="libvirt")
    conn = libvirt.open(src_uri)
    driver = LiveMigrationDriver(conf, conn)
    driver.init_host()
    handle = driver.live_migration(conn.lookupByName(name), dest,
                                   post_method=print, recover_method=print)
    print("started", flush=True)
    handle.wait()
    """
)


def kill_service_mid_migration(rig, name: str, bandwidth: int, timeout: int,
                               run_for: float = 2) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVICE, rig.a.uri, rig.b.addr, name, str(bandwidth),
         str(timeout)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        wait_for(lambda: remaining(rig, name), 60, "the job to run")
        time.sleep(run_for)  # how long the service watched the job before it was killed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)


def restarted_service(rig, conf) -> tuple[LiveMigrationDriver, Any]:
    conn = rig.connect("a")
    driver = LiveMigrationDriver(conf, conn)
    driver.init_host()
    return driver, conn


@pytest.mark.parametrize("workload", ["converges", "never"])
def test_service_killed_and_started_again_reattaches(rig, workload) -> None:
    name = f"reattach-{workload}"
    if workload == "converges":
        tick = guest(rig, name, **CRAWL)
        conf = make_conf(live_migration_bandwidth=CRAWL_CAP)
        kill_service_mid_migration(rig, name, CRAWL_CAP, 0)
    else:
        tick = guest(rig, name, **NEVER)
        conf = make_conf(live_migration_bandwidth=CAP, live_migration_completion_timeout=10)
        kill_service_mid_migration(rig, name, CAP, 10, run_for=8)
    driver, conn = restarted_service(rig, conf)
    try:
        (found,) = [m for m in driver.running_at_start if m.name == name]
        assert found.elapsed > 2
        got: list = []
        handle = driver.reattach(conn.lookupByName(name), rig.b.addr,
                                 dest_connect_uri=rig.b.uri,
                                 post_method=got.append, recover_method=got.append)
        outcome = handle.wait(120)
        assert outcome is not None and got == [outcome]
    finally:
        conn.close()
    if workload == "converges":
        assert outcome.status == "completed" and outcome.rule == "destination-runs"
        assert_moved(rig, name, "b", tick)
    else:
        # the completion timeout counts from the job's start, not from the re-attach
        assert outcome.status == "timed_out", (outcome.rule, outcome.error)
        (abort,) = [a for a in outcome.actions if a.action == "abort"]
        # counted afresh from the re-attach it could not come before found.elapsed + 20
        assert 20 <= abort.at < found.elapsed + 20
        assert_stayed(rig, name, "a")
