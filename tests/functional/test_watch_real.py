"""``migrator watch`` on the rig: a migration started with plain libvirt calls (as virsh or
Nova would), followed read-only to its end by the command; Ctrl-C leaves it running."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from migrator import constants as c
from tests.functional.helpers import scaled, wait_job_moving

libvirt = pytest.importorskip("libvirt")

ROOT = Path(__file__).resolve().parents[2]


def _watch(rig, name: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "migrator", "watch", "--connect", rig.a.uri, name, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _moving(rig, name: str, timeout: float = 60) -> None:
    """Wait until the job moves RAM (the watcher attaches to a running migration)."""
    with contextlib.closing(rig.connect("a")) as conn:
        wait_job_moving(conn.lookupByName(name), timeout)


def test_watch_follows_a_migration_started_outside_migrator(rig) -> None:
    rig.define_guest("a", "w1", mb=32, rate=1)
    rig.wait_heartbeat("a", "w1", above=0, timeout=60)
    # crawls at 3 MiB/s for a while, then converges (tests/functional/README.rst)
    started = rig.start_migration("w1", "a", params={"bandwidth": 3})
    _moving(rig, "w1")
    proc = _watch(rig, "w1", "--dest-connect", rig.b.uri, "--json-lines", "--interval", "0.2")
    first = proc.stdout.readline()  # the watcher has its baseline: what changes now is seen
    with contextlib.closing(rig.connect("a")) as conn:  # the operator, as `virsh` would
        conn.lookupByName("w1").migrateSetMaxDowntime(1234, 0)
    out, err = proc.communicate(timeout=180)
    started.wait(60)
    docs = [json.loads(line) for line in (first + out).splitlines()]
    assert proc.returncode == 0, err
    assert started.error is None
    outcome = docs[-1]
    assert outcome["event"] == "outcome" and outcome["outcome"] == "completed", outcome
    assert outcome["rule"] == "destination-runs" and outcome["mode"] == "pre-copy"
    assert outcome["downtime_ms"] is not None
    seen = [(d["action"], d["value"]) for d in docs if d["event"] == "action"]
    assert ("set_max_downtime", 1234) in seen
    samples = [d for d in docs if d["event"] == "sample"]
    assert len(samples) >= 5 and all(d["type"] == c.VIR_DOMAIN_JOB_UNBOUNDED for d in samples)
    where = rig.where("w1")
    assert where["a"] is None and where["b"][0] == c.VIR_DOMAIN_RUNNING


def test_ctrl_c_detaches_and_the_migration_goes_on(rig) -> None:
    rig.define_guest("a", "w2", mb=96, rate=0)
    rig.wait_heartbeat("a", "w2", above=0, timeout=60)
    started = rig.start_migration("w2", "a", params={"bandwidth": 20})  # never converges
    try:
        _moving(rig, "w2")
        proc = _watch(rig, "w2")
        deadline = time.monotonic() + scaled(60)
        line = ""
        while time.monotonic() < deadline and " migration running for " not in line:
            line = proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, (out, err)
        assert "detached; the migration goes on, untouched" in err and out == ""
        with contextlib.closing(rig.connect("a")) as conn:
            stats = conn.lookupByName("w2").jobStats()
        assert stats["type"] == c.VIR_DOMAIN_JOB_UNBOUNDED  # still migrating
        assert started.error is None and started.is_alive()
    finally:
        rig.cleanup_guests()
