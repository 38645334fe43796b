"""The rig cleans up after itself: on SIGTERM, and after being SIGKILLed (next start).

Each test runs its own short-lived rig in a child process, in netns mode with its own base
dir (hence its own namespace names), so it can coexist with the session's rigs: its
addresses exist only inside its own network namespaces.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.functional.helpers import scaled
from tests.functional.rig import Rig

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import json, sys, time
sys.path.insert(0, {repo!r})
from tests.functional.rig import Rig
r = Rig(mode="netns", base={base!r}, caps_cache={caps!r}).start()
r.define_guest("a", "child", mb=0)
r.wait_heartbeat("a", "child")
qemu = int(r.a.hostpath("/run/libvirt/qemu/child.pid").read_text())
print(json.dumps({{"pids": [r.a.pid, r.b.pid, qemu], "netns": [r.a.netns, r.b.netns]}}),
      flush=True)
time.sleep(600)
"""


def _netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _spawn_child_rig(base: Path, caps: Path | None) -> tuple[subprocess.Popen[str], dict]:
    code = CHILD.format(repo=str(REPO), base=str(base), caps=caps and str(caps))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    if not line:
        p.wait(30)
        pytest.fail(f"child rig did not start (exit {p.returncode})")
    info = json.loads(line)
    assert all(_alive(pid) for pid in info["pids"]), info
    assert set(info["netns"]) <= set(_netns())
    return p, info


def _assert_gone(info: dict, base: Path) -> None:
    deadline = time.monotonic() + scaled(10)
    while any(_alive(p) for p in info["pids"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in info["pids"] if _alive(p)], info
    assert not set(info["netns"]) & set(_netns())
    assert not base.exists(), list(base.rglob("*"))


def test_sigterm_stops_everything(rig: Rig, tmp_path: Path) -> None:
    base = tmp_path / "rig"
    p, info = _spawn_child_rig(base, rig.caps_cache)
    p.send_signal(signal.SIGTERM)
    assert p.wait(60) == -signal.SIGTERM  # stopped the rig, then died of the signal
    _assert_gone(info, base)


def test_killed_rig_is_cleaned_up_by_the_next_start(rig: Rig, tmp_path: Path) -> None:
    base = tmp_path / "rig"
    p, info = _spawn_child_rig(base, rig.caps_cache)
    p.kill()
    p.wait(10)
    time.sleep(0.5)
    # SIGKILL runs no handler: daemons and guest outlive their owner
    assert all(_alive(pid) for pid in info["pids"]), info
    again = Rig(mode="netns", base=base, caps_cache=rig.caps_cache)
    again.start()
    try:
        assert not [pid for pid in info["pids"] if _alive(pid)]
        assert again.a.pid not in info["pids"]
        assert again.domains("a") == []
    finally:
        again.stop()
    _assert_gone(info, base)


def test_second_rig_on_the_same_base_is_refused(rig: Rig) -> None:
    from tests.functional.rig import RigError

    with pytest.raises(RigError, match="another rig is running"):
        Rig(mode=rig.mode, base=rig.base).start()
    assert rig.running and os.path.exists(rig.a.socket)
