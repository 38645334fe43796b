"""``migrator watch`` against the simulator: a migration started by someone else (a plain
``migrateToURI3``, as virsh makes it), followed read-only to its end."""

from __future__ import annotations

import json
import threading

import pytest

from migrator import constants as C
from migrator import watch
from migrator.cli import main
from migrator.cli import watch as watch_command
from migrator.jobstats import JobSample
from migrator.testing import GiB

SRC, DST = "qemu+tcp://src/system", "qemu+tcp://dst/system"
CONTROLS = ("abortJob", "abortJobFlags", "migrateSetMaxDowntime", "migrateSetMaxSpeed",
            "migrateStartPostCopy", "suspend", "resume", "destroy", "undefine",
            "undefineFlags", "migrateSetCompressionCache")


class Started:
    """A migration started outside migrator: its own connection and thread."""

    def __init__(self, fake, flags: int = C.VIR_MIGRATE_LIVE | C.VIR_MIGRATE_PEER2PEER
                 | C.VIR_MIGRATE_UNDEFINE_SOURCE | C.VIR_MIGRATE_PERSIST_DEST):
        self.fake = fake
        self.dom = fake.module.open(SRC).lookupByName("vm")
        self.control = fake.module.open(SRC).lookupByName("vm")  # as `virsh` would, apart
        self.error: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(flags,), daemon=True)
        self.thread.start()
        while not fake.world.jobs:
            threading.Event().wait(0.01)
        fake.clock.advance(3)  # past prepare and setup: RAM moves

    def _run(self, flags: int) -> None:
        try:
            self.dom.migrateToURI3(DST, {}, flags)
        except Exception as exc:  # noqa: BLE001 - kept for the test to look at
            self.error.append(exc)


@pytest.fixture
def world(fake, monkeypatch):
    fake.world.add_guest("src", "vm", memory=16 * GiB, working_set=8 * GiB, dirty_rate=1 * GiB)
    monkeypatch.setattr(watch_command, "clock", lambda: fake.clock)
    calls = []
    for name in CONTROLS:
        real = getattr(fake.module.virDomain, name, None)
        if real is not None:
            monkeypatch.setattr(fake.module.virDomain, name, _spy(name, real, calls))
    fake.control_calls = calls
    return fake


def _spy(name, real, calls):
    def spy(self, *args, **kwargs):
        calls.append((name, threading.current_thread().name))
        return real(self, *args, **kwargs)

    return spy


def at(fake, when: float, fn, name: str = "operator") -> None:
    """Call ``fn`` from its own thread once the virtual clock reaches ``when`` (the watcher's
    waits move the clock; this thread only looks at it)."""

    def run() -> None:
        while fake.clock.now() < when:
            threading.Event().wait(0.001)
        fn()

    threading.Thread(target=run, name=name, daemon=True).start()


def _watch(capsys, *args: str) -> tuple[int, list[dict], str]:
    code = main(["watch", "--connect", SRC, "vm", "--json-lines", *args])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def test_watch_follows_a_migration_it_did_not_start_to_completion(world, capsys):
    started = Started(world)
    at(world, 10, lambda: started.control.migrateSetMaxDowntime(400, 0))
    code, docs, err = _watch(capsys, "--dest-connect", DST, "--progress-interval", "2")
    started.thread.join(30)
    assert code == 0 and err == "" and not started.error, (code, err, started.error)
    outcome = docs[-1]
    assert outcome["event"] == "outcome" and outcome["outcome"] == "completed"
    assert outcome["mode"] == "pre-copy" and outcome["downtime_ms"] > 0
    assert outcome["rule"] == "destination-runs"
    seen = [d for d in docs if d["event"] == "action"]
    assert [(a["action"], a["value"]) for a in seen] == [("set_max_downtime", 400)]
    assert seen[0]["reason"] == "seen: max downtime 300 -> 400 ms" and seen[0]["at"] >= 10
    samples = [d for d in docs if d["event"] == "sample"]
    assert len(samples) > 10 and samples[0]["t"] >= 2  # the job's own clock
    assert any(d["event"] == "progress" and d["converging"] for d in docs)
    # read-only: the only control call is the one the "operator" thread made
    assert world.control_calls == [("migrateSetMaxDowntime", "operator")]


def test_watch_reports_a_job_cancelled_by_someone_else(world, capsys):
    started = Started(world)
    at(world, 5, started.control.abortJob)
    code, docs, _ = _watch(capsys)
    started.thread.join(30)
    assert code == 1 and docs[-1]["outcome"] == "cancelled"
    assert docs[-1]["rule"] == "source-runs"
    assert [c for c, _ in world.control_calls] == ["abortJob"]


def test_watch_sees_post_copy(fake, monkeypatch, capsys):
    fake.world.add_guest("src", "vm", memory=4 * GiB, dirty_rate=4 * GiB)
    monkeypatch.setattr(watch_command, "clock", lambda: fake.clock)
    flags = (C.VIR_MIGRATE_LIVE | C.VIR_MIGRATE_PEER2PEER | C.VIR_MIGRATE_POSTCOPY
             | C.VIR_MIGRATE_UNDEFINE_SOURCE | C.VIR_MIGRATE_PERSIST_DEST)
    started = Started(fake, flags)
    at(fake, 8, lambda: started.control.migrateStartPostCopy(0))
    code, docs, _ = _watch(capsys, "--dest-connect", DST)
    started.thread.join(30)
    assert code == 0 and docs[-1]["outcome"] == "completed" and docs[-1]["mode"] == "post-copy"
    assert "start_post_copy" in [d["action"] for d in docs if d["event"] == "action"]


def test_watch_a_guest_without_a_migration_is_a_clear_error(fake, capsys):
    fake.world.add_guest("src", "vm", memory=1 * GiB)
    code = main(["watch", "--connect", SRC, "vm"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("migrator: error: no outgoing migration runs on vm")


def test_watch_an_unknown_guest_is_a_clear_error(fake, capsys):
    code = main(["watch", "--connect", SRC, "nope"])
    assert code == 2 and capsys.readouterr().err.startswith("migrator: error: nope on ")


def test_stopping_the_watch_detaches_without_touching_the_job(world):
    started = Started(world)
    how = watch.Watch(clock=world.clock)
    seen = []

    def on_sample(t, sample):
        seen.append(t)
        if len(seen) == 5:
            how.stop.set()  # what Ctrl-C does

    how.on_sample = on_sample
    dom = world.module.openReadOnly(SRC).lookupByName("vm")
    assert watch.follow(dom, how) is None
    assert world.control_calls == []
    assert JobSample.from_stats(dom.jobStats()).is_running  # the migration goes on
    world.world.shutdown()
    started.thread.join(10)


def test_changes_are_the_actions_that_show():
    def reading(downtime=300, speed=0, throttle=0, state=C.VIR_DOMAIN_RUNNING, reason=1):
        sample = JobSample(type=C.VIR_DOMAIN_JOB_UNBOUNDED, auto_converge_throttle=throttle)
        return watch.Reading(sample, downtime, speed, state, reason)

    changes = watch.Changes()
    assert changes.see(1, reading(downtime=50)) == []  # the baseline
    assert changes.see(2, reading(downtime=50)) == []
    kinds = [(r.action, r.value) for r in changes.see(3, reading(downtime=100, speed=500,
                                                                    throttle=20))]
    assert kinds == [("set_max_downtime", 100), ("set_max_speed", 500), ("auto_converge", 20)]
    paused = reading(downtime=100, speed=500, throttle=20, state=C.VIR_DOMAIN_PAUSED,
                     reason=C.VIR_DOMAIN_PAUSED_USER)
    assert [r.action for r in changes.see(4, paused)] == ["suspend"]
    assert changes.see(5, paused) == [] and changes.suspended


def test_a_value_libvirt_returns_as_none_reads_as_unknown(world):
    """libvirt-python returns None from migrateGetMaxDowntime when the call fails (seen on
    the rig when the job ended between two reads): the watch reads on, it does not crash."""
    dom = Started(world).control

    class Gone:
        def __getattr__(self, name):
            return getattr(dom, name)

        def migrateGetMaxDowntime(self, flags):
            return None

    reading = watch.read(Gone())
    assert reading.max_downtime_ms is None and reading.sample.is_running
