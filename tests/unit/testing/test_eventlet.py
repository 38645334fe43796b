"""Under eventlet monkey-patching the fake blocks and wakes green threads correctly.

Monkey-patching is process-wide, so the scenario runs in a child interpreter.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("eventlet")

SCRIPT = textwrap.dedent(
    """
    import eventlet
    eventlet.monkey_patch()

    import threading

    from migrator import constants as C
    from migrator.testing import fakelibvirt as fake
    from migrator.testing.world import GiB, MiB, World

    world = World()
    world.add_host("src")
    world.add_host("dst")
    world.add_guest("src", "vm1", memory=8 * GiB, working_set=2 * GiB, dirty_rate=400 * MiB)
    dom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
    mdom = fake.open("qemu+tcp://src/system").lookupByName("vm1")
    flags = C.VIR_MIGRATE_LIVE | C.VIR_MIGRATE_PEER2PEER | C.VIR_MIGRATE_UNDEFINE_SOURCE
    done = threading.Event()
    result = {}

    def work():
        try:
            result["ret"] = dom.migrateToURI3("qemu+tcp://dst/system", {}, flags)
        except fake.libvirtError as exc:
            result["err"] = str(exc)
        done.set()

    green = eventlet.spawn(work)
    polls = 0
    while not world.clock.wait(done, 0.5):
        try:
            mdom.jobStats()
        except fake.libvirtError:
            pass
        polls += 1
        assert polls < 1000, "no progress"
    green.wait()
    assert eventlet.patcher.is_monkey_patched("thread")
    assert result == {"ret": 0}, result
    assert world.domain("dst", "vm1").state == C.VIR_DOMAIN_RUNNING
    print("OK", polls, world.clock.now())
    """
)


def test_green_threads_block_and_wake() -> None:
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", SCRIPT],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK")
