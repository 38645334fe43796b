"""migrator's public API against two real libvirt daemons and real QEMU guests.

Every test checks the outcome, that exactly one of post/recover ran, and where
the guest is afterwards: running on exactly one host, persistent on the
destination and gone from the source after success, untouched on the source
after a failure or an abort.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from migrator import constants as c
from migrator.driver import LiveMigrationDriver, MigrationOutcome
from migrator.testing.config import make_conf
from tests.functional.helpers import (
    CAP,
    NEVER,
    Run,
    assert_moved,
    assert_stayed,
    guest,
    scaled,
    wait_job_moving,
)

libvirt = pytest.importorskip("libvirt")

ROOT = Path(__file__).resolve().parents[2]



def test_plain_migration_and_back(rig) -> None:
    tick = guest(rig, "plain", mb=32)
    run = Run(rig, "plain")
    outcome = run.wait()
    assert outcome.status == "completed" and outcome.mode == "pre-copy"
    assert outcome.downtime_ms is not None and outcome.downtime_ms < 1000
    assert run.handle.plan.flags == 27
    assert_moved(rig, "plain", "b", tick)
    tick = rig.heartbeat("b", "plain")
    back = Run(rig, "plain", src="b")
    assert back.wait().status == "completed"
    assert_moved(rig, "plain", "a", tick)


def test_inbound_address_is_the_data_uri(rig) -> None:
    tick = guest(rig, "inbound", mb=16)
    run = Run(rig, "inbound", inbound_addr=rig.b.addr)
    outcome = run.wait()
    assert outcome.status == "completed"
    assert run.handle.plan.migrate_uri == f"tcp://{rig.b.addr}"
    assert run.handle.plan.params["migrate_uri"] == f"tcp://{rig.b.addr}"
    assert run.handle.plan.uri == f"qemu+tcp://{rig.b.addr}/system"
    assert_moved(rig, "inbound", "b", tick)


def test_tunnelled(rig) -> None:
    tick = guest(rig, "tunnel", mb=16)
    run = Run(rig, "tunnel", conf=make_conf(live_migration_tunnelled=True),
              inbound_addr=rig.b.addr)
    outcome = run.wait()
    assert outcome.status == "completed"
    assert run.handle.plan.tunnelled and "migrate_uri" not in run.handle.plan.params
    assert_moved(rig, "tunnel", "b", tick)


def test_block_migration_copies_selected_disk(rig) -> None:
    rig.define_guest("a", "blk", mb=8, disk=64, start=False)
    rig.write_disk("a", "blk", b"migrator-was-here", offset=1 << 20)  # before QEMU locks it
    with contextlib.closing(rig.connect("a")) as conn:
        conn.lookupByName("blk").create()
    tick = rig.wait_heartbeat("a", "blk", above=0, timeout=60)
    rig.precreate_disk("b", "blk")
    size = rig.a.disk_path("blk").stat().st_size
    run = Run(rig, "blk", block_migration=True, disks=("hda",), disk_sizes=(size,))
    outcome = run.wait()
    assert outcome.status == "completed", outcome.error
    assert run.handle.plan.flags == 155
    assert_moved(rig, "blk", "b", tick)
    # the guest keeps writing its heartbeat to the copied disk on the destination
    assert (rig.disk_heartbeat("b", "blk") or 0) >= tick
    # and the data written before the migration survived the copy
    with contextlib.closing(rig.connect("b")) as conn:
        conn.lookupByName("blk").destroy()
    assert rig.read_disk("b", "blk", offset=1 << 20, length=17) == b"migrator-was-here"


def test_abort_from_another_thread(rig) -> None:
    guest(rig, "abort", **NEVER)
    run = Run(rig, "abort", conf=make_conf(live_migration_bandwidth=CAP))
    run.wait_running()
    fut = run.handle.abort()
    outcome = run.wait()
    assert fut.result(30) is True
    assert outcome.status == "cancelled"
    assert_stayed(rig, "abort", "a")


def test_completion_timeout_abort(rig) -> None:
    guest(rig, "tmo", **NEVER)
    # 2 s/GiB x 2 GiB (the data size floor) = a 4 s budget
    run = Run(rig, "tmo", conf=make_conf(live_migration_bandwidth=CAP,
                                         live_migration_completion_timeout=2))
    outcome = run.wait()
    assert outcome.status == "timed_out"
    assert [a.action for a in outcome.actions].count("abort") == 1
    assert_stayed(rig, "tmo", "a")


def test_completion_timeout_force_complete_suspends(rig) -> None:
    tick = guest(rig, "fcs", **NEVER)
    run = Run(rig, "fcs", conf=make_conf(live_migration_bandwidth=CAP,
                                         live_migration_completion_timeout=2,
                                         live_migration_timeout_action="force_complete"))
    outcome = run.wait()
    assert outcome.status == "completed" and outcome.mode == "paused"
    assert [a.action for a in outcome.actions].count("suspend") == 1
    assert_moved(rig, "fcs", "b", tick)  # libvirt resumes it on the destination


def test_completion_timeout_force_complete_post_copy(rig) -> None:
    tick = guest(rig, "fcp", **NEVER)
    run = Run(rig, "fcp", conf=make_conf(live_migration_bandwidth=CAP,
                                         live_migration_completion_timeout=2,
                                         live_migration_timeout_action="force_complete",
                                         live_migration_permit_post_copy=True))
    outcome = run.wait()
    assert outcome.status == "completed" and outcome.mode == "post-copy"
    actions = [a.action for a in outcome.actions]
    assert actions.count("start_post_copy") == 1 and "suspend" not in actions
    assert_moved(rig, "fcp", "b", tick)


def test_downtime_steps_applied(rig) -> None:
    guest(rig, "steps", **NEVER)
    # 3 s/GiB x 2 GiB = 6 s between steps: 100, 166, 233, 300 ms
    conf = make_conf(live_migration_bandwidth=CAP, live_migration_downtime=300,
                     live_migration_downtime_steps=3, live_migration_downtime_delay=3)
    run = Run(rig, "steps", conf=conf)
    run.wait_running()
    seen: list[int] = []
    with contextlib.closing(rig.connect("a")) as conn:
        dom = conn.lookupByName("steps")
        deadline = time.monotonic() + scaled(40)
        # until the ramp's last step (QEMU's own default is 300 too, so wait for 233 first)
        while time.monotonic() < deadline and not (233 in seen and seen[-1] == 300):
            with contextlib.suppress(libvirt.libvirtError):
                value = dom.migrateGetMaxDowntime(0)
                if not seen or seen[-1] != value:
                    seen.append(value)
            time.sleep(0.2)
    run.handle.abort()
    outcome = run.wait()
    assert outcome.status == "cancelled"
    applied = [a.value for a in outcome.actions if a.action == "set_max_downtime" and a.ok]
    assert applied == [100, 166, 233, 300]
    # libvirt reports each one back, after QEMU's own default (300) read before step 0
    ramp = seen[seen.index(applied[0]):]
    assert [v for v in ramp if v in applied] == applied, seen
    assert_stayed(rig, "steps", "a")


def test_auto_converge_makes_a_stubborn_guest_converge(rig) -> None:
    tick = guest(rig, "ac", mb=64, rate=40)
    conf = make_conf(live_migration_bandwidth=30, live_migration_permit_auto_converge=True)
    throttles: list[int] = []
    run = Run(rig, "ac", conf=conf,
              on_sample=lambda t, s: throttles.append(s.auto_converge_throttle))
    outcome = run.wait(timeout=240)
    assert outcome.status == "completed", outcome.error
    assert run.handle.plan.auto_converge
    rising = sorted({t for t in throttles if t})
    assert rising and rising[-1] >= 30, throttles  # QEMU raised the throttle
    assert_moved(rig, "ac", "b", tick)


def test_paused_guest_with_post_copy_permitted(rig) -> None:
    guest(rig, "paused", mb=8)
    with contextlib.closing(rig.connect("a")) as conn:
        conn.lookupByName("paused").suspend()
    run = Run(rig, "paused", conf=make_conf(live_migration_permit_post_copy=True))
    outcome = run.wait()
    assert outcome.status == "completed"
    assert not run.handle.plan.post_copy
    assert any(d.item == "VIR_MIGRATE_POSTCOPY" and d.action == "dropped"
               for d in run.handle.plan.decisions)
    where = rig.where("paused")
    assert where["a"] is None and where["b"][0] == c.VIR_DOMAIN_PAUSED and where["b"][2]


def test_unreachable_destination(rig) -> None:
    guest(rig, "nowhere", mb=8)
    conn = rig.connect("a")
    try:
        driver = LiveMigrationDriver(make_conf(), conn)
        driver.init_host()
        calls: list[MigrationOutcome] = []
        handle = driver.live_migration(conn.lookupByName("nowhere"), "127.0.0.9",
                                       post_method=lambda o: pytest.fail("post called"),
                                       recover_method=calls.append)
        outcome = handle.wait(120)
    finally:
        conn.close()
    assert outcome is not None and outcome.status == "failed" and calls == [outcome]
    assert "127.0.0.9" in outcome.error
    assert_stayed(rig, "nowhere", "a")


COMBINATIONS = [
    {},
    {"live_migration_tunnelled": True},
    {"live_migration_tunnelled": False},
    {"live_migration_permit_post_copy": True},
    {"live_migration_permit_auto_converge": True},
    {"live_migration_permit_post_copy": True, "live_migration_permit_auto_converge": True},
    {"live_migration_parallel_connections": 4},
    {"live_migration_extra_flags": ["COMPRESSED"]},
    {"live_migration_extra_flags": ["ABORT_ON_ERROR"]},
    {"live_migration_extra_flags": ["COMPRESSED", "ABORT_ON_ERROR"],
     "live_migration_permit_auto_converge": True},
    {"live_migration_parallel_connections": 2, "live_migration_extra_flags": ["ABORT_ON_ERROR"],
     "live_migration_bandwidth": 500},
    {"live_migration_scheme": "tcp", "live_migration_permit_post_copy": True},
]


@pytest.mark.parametrize("overrides", COMBINATIONS, ids=lambda o: ",".join(
    f"{k.replace('live_migration_', '')}={v}" for k, v in o.items()) or "defaults")
def test_every_emitted_flag_combination_is_accepted(rig, overrides) -> None:
    name = "combo"
    tick = guest(rig, name, mb=8)
    run = Run(rig, name, conf=make_conf(**overrides), inbound_addr=rig.b.addr)
    outcome = run.wait()
    assert outcome.status == "completed", (run.handle.plan.flag_names, outcome.error)
    assert_moved(rig, name, "b", tick)


def test_zerocopy_flags_are_accepted_by_libvirt(rig) -> None:
    """ZEROCOPY needs a raised locked-memory limit for QEMU; the flags themselves pass."""
    tick = guest(rig, "zc", mb=8)
    run = Run(rig, "zc", conf=make_conf(live_migration_parallel_connections=2,
                                        live_migration_extra_flags=["ZEROCOPY"]),
              inbound_addr=rig.b.addr)
    assert run.handle.plan.has(c.VIR_MIGRATE_ZEROCOPY)  # not dropped on the way
    outcome = run.wait()
    if outcome.status == "completed":  # the host allows QEMU enough locked memory
        assert_moved(rig, "zc", "b", tick)
    else:
        assert outcome.error_code not in (c.VIR_ERR_ARGUMENT_UNSUPPORTED, c.VIR_ERR_INVALID_ARG)
        assert "locked memory" in outcome.error
        assert_stayed(rig, "zc", "a")


def test_block_migration_combinations_accepted(rig) -> None:
    for overrides in ({}, {"live_migration_extra_flags": ["NON_SHARED_SYNCHRONOUS_WRITES"]}):
        guest(rig, "bcombo", mb=8, disk=32)
        rig.precreate_disk("b", "bcombo")
        run = Run(rig, "bcombo", conf=make_conf(**overrides), block_migration=True,
                  disks=("hda",), inbound_addr=rig.b.addr)
        outcome = run.wait()
        assert outcome.status == "completed", (run.handle.plan.flag_names, outcome.error)
        rig.cleanup_guests()


# --- the `migrator migrate` command -------------------------------------------------


def _cli(rig, *args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "migrator.cli", "migrate", "--connect", rig.a.uri, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, **kw)


def test_cli_migrate(rig) -> None:
    tick = guest(rig, "cli", mb=16)
    proc = _cli(rig, "cli", rig.b.addr, "--inbound-addr", rig.b.addr, "--json")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert doc["outcome"] == "completed" and doc["mode"] == "pre-copy"
    assert doc["flags"] == 27 and isinstance(doc["actions"], list)
    assert doc["total_seconds"] > 0
    assert_moved(rig, "cli", "b", tick)


def test_cli_migrate_ctrl_c_aborts(rig, tmp_path) -> None:
    guest(rig, "clic", **NEVER)
    conf = tmp_path / "m.conf"
    conf.write_text(f"[libvirt]\nlive_migration_bandwidth = {CAP}\n")
    proc = _cli(rig, "--config-file", str(conf), "clic", rig.b.addr)
    with contextlib.closing(rig.connect("a")) as conn:
        wait_job_moving(conn.lookupByName("clic"))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Outcome: cancelled" in out and "aborting" in err
    assert "Traceback" not in err
    assert_stayed(rig, "clic", "a")


def test_cli_migrate_unknown_domain(rig) -> None:
    proc = _cli(rig, "no-such-guest", rig.b.addr)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "no-such-guest" in err and "Traceback" not in err


# --- eventlet: blocking libvirt calls must not stall the hub ---------------------------

EVENTLET = textwrap.dedent(
    """
    import eventlet
    eventlet.monkey_patch()
    import json, sys, time
    from oslo_config import cfg
    import libvirt
    import migrator.conf
    from migrator.driver import LiveMigrationDriver

    src_uri, dst_uri, dest, name = sys.argv[1:5]
    conf = cfg.ConfigOpts(); migrator.conf.register_opts(conf); conf([], default_config_files=[])
    conf.set_override("live_migration_bandwidth", 20, group="libvirt")
    conn = libvirt.open(src_uri)
    driver = LiveMigrationDriver(conf, conn)
    driver.init_host()
    gaps = []
    last = [time.monotonic()]
    def ticker():
        while True:
            eventlet.sleep(0.01)
            now = time.monotonic(); gaps.append(now - last[0]); last[0] = now
    eventlet.spawn(ticker)
    handle = driver.live_migration(conn.lookupByName(name), dest, dest_connect_uri=dst_uri,
                                   post_method=lambda o: None, recover_method=lambda o: None)
    outcome = handle.wait(180)
    print(json.dumps({"status": outcome.status, "seconds": outcome.total_seconds,
                      "ticks": len(gaps), "max_gap": max(gaps)}))
    """
)


def test_under_eventlet_real_libvirt_does_not_stall_the_hub(rig) -> None:
    # 48 MiB dirtied at 2 MiB/s through a 20 MiB/s cap: converges after a few seconds
    tick = guest(rig, "green", mb=48, rate=2)
    proc = subprocess.run(
        [sys.executable, "-c", EVENTLET, rig.a.uri, rig.b.uri, rig.b.addr, "green"],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == "completed"
    # migrateToURI3 blocked for seconds; the hub kept running green threads meanwhile
    assert result["seconds"] > 1 and result["ticks"] > 20 * result["seconds"]
    assert result["max_gap"] < 1.0, result
    assert_moved(rig, "green", "b", tick)


def test_flag_rules_module_needs_no_libvirt() -> None:
    code = ("import sys; sys.modules['libvirt'] = None; import migrator.conf, migrator.flags;"
            "print(migrator.flags.plan(migrator.flags.Options(), migrator.flags.HostFacts(),"
            " migrator.flags.MigrationFacts(dest='h')).flags)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "27"
