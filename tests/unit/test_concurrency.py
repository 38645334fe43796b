"""Many migrations at once: the max_concurrent_live_migrations queue, and no cross-talk.

The limit is observed where it matters, in libvirt: the number of jobs the simulated
hypervisor runs at any moment (sampled at every step of the virtual clock), and the
driver's connections.  The queue is first come, first served: a migration leaves the
queue only after every one requested before it.  A migration cancelled while queued ends
``cancelled`` without touching libvirt.  Each outcome, callback and guest belongs to its
own migration, with native threads and under eventlet.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from migrator import concurrency, exception
from migrator import constants as C
from migrator.testing import GiB, MiB
from migrator.testing import fakelibvirt as fl
from migrator.testing.config import make_conf
from tests.unit.helpers import driver_run
from tests.unit.helpers.driver_run import open_driver, running_on

ROOT = Path(__file__).resolve().parents[2]
ACTIVE = ("preparing", "running", "recovering")


@pytest.fixture(autouse=True)
def four_destinations(request):
    """A test that uses the fake libvirt gets hosts dst0..dst3 besides src and dst."""
    if "fake" in request.fixturenames:
        fake = request.getfixturevalue("fake")
        for i in range(4):
            fake.world.add_host(f"dst{i}", link_gbps=10)


@pytest.fixture
def started(monkeypatch):
    """Names of the guests migrateToURI3 was called for, in call order."""
    names: list[str] = []
    real = fl.virDomain.migrateToURI3

    def spy(self, *args, **kwargs):
        names.append(self.name())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(fl.virDomain, "migrateToURI3", spy)
    return names



# Hopeless guests of 2 GiB: they only hold their slots, no test here waits for their timeout.
hopeless_guest = functools.partial(driver_run.hopeless_guest, memory=2 * GiB)


def quick_guest(fake, name):
    fake.world.add_guest("src", name, memory=1 * GiB, working_set=256 * MiB,
                         dirty_rate=100 * MiB)


class Recorder:
    """Per-migration callbacks: which callback got which outcome, for which guest."""

    def __init__(self):
        self.lock = threading.Lock()
        self.got: dict[str, list[tuple[str, object]]] = {}

    def callbacks(self, name):
        def post(outcome):
            with self.lock:
                self.got.setdefault(name, []).append(("post", outcome))

        def recover(outcome):
            with self.lock:
                self.got.setdefault(name, []).append(("recover", outcome))

        return {"post_method": post, "recover_method": recover}


class Sampler:
    """Clock listener: what libvirt and the handles look like at every virtual step."""

    def __init__(self, fake, test_conns=1):
        self.fake = fake
        self.handles: list = []
        self.peak_jobs = 0
        self.peak_conns = 0
        self.prefix_ok = True
        self.cancelled: set[str] = set()  # cancelled in the queue: may show 'queued' a moment
        self.test_conns = test_conns
        fake.clock.add_listener(self)

    def __call__(self, t):
        self.peak_jobs = max(self.peak_jobs, len(self.fake.world.jobs))
        self.peak_conns = max(self.peak_conns,
                              len(self.fake.world.connections("src")) - self.test_conns)
        left = [h.status != "queued" for h in list(self.handles) if h.name not in self.cancelled]
        # FIFO: the migrations that left the queue are a prefix of the requests
        # (cancelled ones leave it too, without a slot).
        if any(later and not earlier for earlier, later in zip(left, left[1:], strict=False)):
            self.prefix_ok = False
        return t


def enqueue(driver, sampler, conn, name, dest, recorder, **fields):
    """live_migration(), then wait until its thread holds its place in the queue."""
    handle = driver.live_migration(conn.lookupByName(name), dest,
                                   **recorder.callbacks(name), **fields)
    sampler.handles.append(handle)
    n = len(sampler.handles)
    deadline = time.monotonic() + 10
    # white box: the driver's FIFO (_Slots) counts the waiting migrations
    while driver._slots.queued + sum(h.status != "queued" for h in sampler.handles) < n:
        assert time.monotonic() < deadline, "a migration thread never queued"
        time.sleep(0.001)
    return handle


def check_own(handle, recorder, world, dest):
    """The outcome, its callback and the guest belong to this migration."""
    outcome = handle.wait(60)
    assert outcome is not None, f"{handle.name} did not settle"
    got = recorder.got.get(handle.name, [])
    assert len(got) == 1, (handle.name, got)
    kind, arg = got[0]
    assert arg is outcome and kind == ("post" if outcome.succeeded else "recover")
    assert (outcome.domain, outcome.uuid, outcome.dest) == (handle.name, handle.uuid, dest)
    assert outcome.plan is None or f"//{dest}/" in outcome.plan.uri
    where = running_on(world, handle.name)
    assert where == ([dest] if outcome.succeeded else ["src"]), (handle.name, where, outcome)
    return outcome


def wait_until_running(fake, n):
    """Until ``n`` jobs run in libvirt (call it inside ``fake.clock.holding()``: with
    virtual time standing still, a call thread the machine schedules late is waited
    for, and no monitor gives up on it after 60 virtual seconds without a reading)."""
    deadline = time.monotonic() + 30
    while len(fake.world.jobs) < n:
        assert time.monotonic() < deadline, f"only {len(fake.world.jobs)} of {n} jobs started"
        time.sleep(0.005)


def settled_cleanly(fake, driver, baseline):
    assert driver.active_migrations() == []
    assert fake.world.jobs == []
    assert len(fake.world.connections()) == baseline
    deadline = time.monotonic() + 3
    while any(t.name.startswith("migrator-") for t in threading.enumerate()):
        assert time.monotonic() < deadline, [t.name for t in threading.enumerate()]
        time.sleep(0.02)


# -- the limit and the queue -----------------------------------------------------------------


def test_limit_never_exceeded_and_first_come_first_served(fake, started):
    n, limit = 30, 3
    for i in range(n):
        quick_guest(fake, f"vm{i}")
    driver, conn = open_driver(fake, make_conf(max_concurrent_live_migrations=limit))
    baseline = len(fake.world.connections())
    sampler = Sampler(fake)
    rec = Recorder()
    handles = [enqueue(driver, sampler, conn, f"vm{i}", f"dst{i % 4}", rec) for i in range(n)]
    for i, h in enumerate(handles):
        assert check_own(h, rec, fake.world, f"dst{i % 4}").status == "completed"
    assert 1 <= sampler.peak_jobs <= limit, "more jobs in libvirt than the limit"
    assert sampler.peak_conns <= 2 * limit
    assert sampler.prefix_ok, "a later migration left the queue before an earlier one"
    assert sorted(started) == sorted(h.name for h in handles) and len(started) == n
    settled_cleanly(fake, driver, baseline)


def test_one_at_a_time_runs_in_request_order(fake, started):
    for i in range(8):
        quick_guest(fake, f"vm{i}")
    driver, conn = open_driver(fake)  # the default: 1
    sampler = Sampler(fake)
    rec = Recorder()
    handles = [enqueue(driver, sampler, conn, f"vm{i}", "dst0", rec) for i in range(8)]
    for h in handles:
        check_own(h, rec, fake.world, "dst0")
    assert started == [f"vm{i}" for i in range(8)]
    assert sampler.peak_jobs == 1


def test_queue_order_does_not_depend_on_thread_scheduling(fake, started, monkeypatch):
    """The queue place is taken when live_migration() is called, not when the
    migration's thread first runs (the OS or eventlet's hub may run a later one first)."""
    for i in range(3):
        quick_guest(fake, f"vm{i}")
    real_spawn = concurrency.spawn

    def spawn(target, name):
        if name == "migrator-vm1":  # this thread is scheduled late
            return real_spawn(lambda: (time.sleep(0.3), target()), name)
        return real_spawn(target, name)

    monkeypatch.setattr(concurrency, "spawn", spawn)
    driver, conn = open_driver(fake)
    rec = Recorder()
    handles = [driver.live_migration(conn.lookupByName(f"vm{i}"), "dst0",
                                     **rec.callbacks(f"vm{i}")) for i in range(3)]
    for h in handles:
        check_own(h, rec, fake.world, "dst0")
    assert started == ["vm0", "vm1", "vm2"]


def test_cancelled_while_queued_never_touches_libvirt(fake, started):
    n, limit = 12, 2
    for i in range(n):
        # the first two never converge (no completion timeout): they hold the slots
        (hopeless_guest if i < limit else quick_guest)(fake, f"vm{i}")
    opened = []

    def opener(uri):
        opened.append(uri)
        return fake.module.open(uri)

    driver, conn = open_driver(fake, make_conf(
        max_concurrent_live_migrations=limit, live_migration_completion_timeout=0),
        open_connection=opener)
    baseline = len(fake.world.connections())
    sampler = Sampler(fake)
    rec = Recorder()
    with fake.clock.holding():  # no monitor gives up on a holder whose call starts late
        handles = [enqueue(driver, sampler, conn, f"vm{i}", "dst1", rec) for i in range(n)]
        cancel = [h for i, h in enumerate(handles) if i >= limit and i % 3 != 0]
        assert all(h.status == "queued" for h in cancel)
        assert {h.name for h in driver.active_migrations()} == {h.name for h in handles}
        sampler.cancelled.update(h.name for h in cancel)
        futures = [h.abort() for h in cancel]
        assert [f.result(10) for f in futures] == [True] * len(cancel)
        wait_until_running(fake, limit)  # both holders run in libvirt
    for h in handles[:limit]:  # now let the queue move
        assert h.abort().result(10) is True
    for i, h in enumerate(handles):
        outcome = check_own(h, rec, fake.world, "dst1")
        if h in cancel:
            assert outcome.status == "cancelled" and "queued" in outcome.error
            assert outcome.total_seconds == 0 and not outcome.actions
            record = fake.world.domain("src", h.name)
            assert record.outgoing is None and record.reason == C.VIR_DOMAIN_RUNNING_BOOTED
        else:
            assert outcome.status == ("cancelled" if i < limit else "completed"), outcome.error
    assert not {h.name for h in cancel} & set(started)
    assert len(started) == n - len(cancel)
    assert len(opened) == 2 * (n - len(cancel))  # no connection for a cancelled one
    assert sampler.peak_jobs == limit and sampler.prefix_ok
    settled_cleanly(fake, driver, baseline)


def test_without_own_queue_every_migration_starts_at_once(fake, started):
    """queue=False (the caller queues, as Nova's compute manager does): no second
    queue, the limit is not read.  The guests never converge and nothing times out,
    so with any queue only the first would ever run."""
    n = 4
    for i in range(n):
        hopeless_guest(fake, f"vm{i}")
    conf = make_conf(max_concurrent_live_migrations=1, live_migration_completion_timeout=0)
    driver, conn = open_driver(fake, conf, queue=False)
    baseline = len(fake.world.connections())
    rec = Recorder()
    with fake.clock.holding():
        handles = [driver.live_migration(conn.lookupByName(f"vm{i}"), f"dst{i}",
                                         **rec.callbacks(f"vm{i}")) for i in range(n)]
        wait_until_running(fake, n)
    for h in handles:
        h.abort()
    for i, h in enumerate(handles):
        assert check_own(h, rec, fake.world, f"dst{i}").status == "cancelled"
    assert sorted(started) == sorted(f"vm{i}" for i in range(n))
    settled_cleanly(fake, driver, baseline)


def test_without_own_queue_an_abort_before_the_start_cancels(fake, started, monkeypatch):
    quick_guest(fake, "vm0")
    gate = threading.Event()
    real_spawn = concurrency.spawn
    monkeypatch.setattr(concurrency, "spawn",
                        lambda target, name: real_spawn(lambda: (gate.wait(10), target()), name))
    driver, conn = open_driver(fake, queue=False)
    rec = Recorder()
    handle = driver.live_migration(conn.lookupByName("vm0"), "dst0", **rec.callbacks("vm0"))
    fut = handle.abort()
    gate.set()
    outcome = check_own(handle, rec, fake.world, "dst0")
    assert outcome.status == "cancelled" and fut.result(5) is True
    assert started == []


def test_same_guest_queued_twice_is_refused(fake):
    hopeless_guest(fake, "vm0")
    quick_guest(fake, "vm1")
    driver, conn = open_driver(fake, make_conf(live_migration_completion_timeout=0))
    rec = Recorder()
    first = driver.live_migration(conn.lookupByName("vm0"), "dst0", **rec.callbacks("vm0"))
    queued = driver.live_migration(conn.lookupByName("vm1"), "dst1", **rec.callbacks("vm1"))
    with pytest.raises(exception.MigrationRefused, match="already being migrated to dst1"):
        driver.live_migration(conn.lookupByName("vm1"), "dst2", post_method=print,
                              recover_method=print)
    assert first.abort().result(10) is True
    assert check_own(first, rec, fake.world, "dst0").status == "cancelled"
    assert check_own(queued, rec, fake.world, "dst1").status == "completed"


# -- many at once: no cross-talk ---------------------------------------------------------------


def test_many_simultaneous_migrations_native_threads(fake, started):
    n, limit = 200, 50
    kinds = {}
    for i in range(n):
        name = f"vm{i}"
        if i % 11 == 3:
            kinds[name] = "fails"
            quick_guest(fake, name)
            fake.world.faults.fail_migration(after=1.5, guest=name)
        elif i % 7 == 5:
            kinds[name] = "aborted"
            hopeless_guest(fake, name)
        else:
            kinds[name] = "completes"
            quick_guest(fake, name)
    # No completion timeout: with this many threads on one virtual clock, a starved
    # migration thread can see tens of virtual seconds pass before its job starts.
    driver, conn = open_driver(
        fake, make_conf(max_concurrent_live_migrations=limit, live_migration_completion_timeout=0))
    baseline = len(fake.world.connections())
    sampler = Sampler(fake)
    rec = Recorder()
    handles, futures = [], {}
    for i in range(n):
        name = f"vm{i}"
        handle = driver.live_migration(conn.lookupByName(name), f"dst{i % 4}",
                                       **rec.callbacks(name))
        sampler.handles.append(handle)
        handles.append(handle)
        if kinds[name] == "aborted":
            futures[name] = handle.abort()
    expected = {"completes": "completed", "fails": "failed", "aborted": "cancelled"}
    for i, h in enumerate(handles):
        outcome = check_own(h, rec, fake.world, f"dst{i % 4}")
        assert outcome.status == expected[kinds[h.name]], (h.name, outcome.error)
    assert all(f.result(5) is True for f in futures.values())
    assert sampler.peak_jobs <= limit and sampler.peak_conns <= 2 * limit
    # each guest moved at most once, and only its own
    assert len(started) == len(set(started))
    settled_cleanly(fake, driver, baseline)


def test_aborting_or_forcing_one_never_touches_another(fake):
    for i in range(4):
        fake.world.add_guest("src", f"vm{i}", memory=4 * GiB, dirty_rate=2 * GiB)
    # force-complete at the completion timeout: 500 s/GiB x 4 GiB = 2000 s
    driver, conn = open_driver(fake, make_conf(
        max_concurrent_live_migrations=4, live_migration_completion_timeout=500,
        live_migration_timeout_action="force_complete", live_migration_monitor_interval=1))
    rec = Recorder()
    controls = {}

    def on_progress_of(name, kind):
        def hook(progress):  # runs in that migration's own monitor thread
            if progress.elapsed > 5 and name not in controls:
                (mine,) = [h for h in driver.active_migrations() if h.name == name]
                controls[name] = getattr(mine, kind)()
        return hook

    handles = {}
    with fake.clock.holding():  # until all four run: no monitor gives up on a late call
        for i in range(4):
            name = f"vm{i}"
            hook = {1: on_progress_of(name, "abort"), 2: on_progress_of(name, "force_complete")}
            handles[name] = driver.live_migration(conn.lookupByName(name), f"dst{i % 2}",
                                                  on_progress=hook.get(i), **rec.callbacks(name))
        wait_until_running(fake, 4)
    outcomes = {name: check_own(h, rec, fake.world, f"dst{int(name[2:]) % 2}")
                for name, h in handles.items()}

    def acted(name):
        return [(a.action, a.reason) for a in outcomes[name].actions
                if a.action != "set_max_downtime"]

    assert controls["vm1"].result(5) is True and controls["vm2"].result(5) is True
    assert outcomes["vm1"].status == "cancelled"
    assert acted("vm1") == [("abort", "abort requested")]
    assert outcomes["vm2"].status == "completed" and outcomes["vm2"].mode == "paused"
    ((action, reason),) = acted("vm2")
    assert action == "suspend" and reason.startswith("force-complete requested")
    for name in ("vm0", "vm3"):  # only their own timeout's force-complete
        o = outcomes[name]
        assert o.status == "completed" and o.mode == "paused" and o.total_seconds > 2000
        ((action, reason),) = acted(name)
        assert action == "suspend" and "timeout action force_complete" in reason


def test_controls_from_many_threads_at_once(fake):
    hopeless_guest(fake, "vm0")
    # no completion timeout: virtual time races on while the threads line up
    driver, conn = open_driver(fake, make_conf(live_migration_completion_timeout=0))
    rec = Recorder()
    handle = driver.live_migration(conn.lookupByName("vm0"), "dst0", **rec.callbacks("vm0"))
    barrier = threading.Barrier(16)
    futures = []
    lock = threading.Lock()

    def control(kind):
        barrier.wait(5)
        fut = getattr(handle, kind)()
        with lock:
            futures.append((kind, fut))

    threads = [threading.Thread(target=control, args=("abort" if i % 2 else "force_complete",))
               for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    outcome = check_own(handle, rec, fake.world, "dst0")
    assert len(futures) == 16
    for kind, fut in futures:  # every request is answered, none hangs
        try:
            result = fut.result(5)
        except (exception.NoActiveMigration, exception.AbortFailed):
            continue
        # a force-complete the policy ignores (one already ran, or an abort is on) is False
        assert result is True or (kind == "force_complete" and result is False), (kind, result)
    assert outcome.status in ("cancelled", "completed")
    assert len([a for a in outcome.actions if a.action == "suspend"]) <= 1


EVENTLET_SCRIPT = textwrap.dedent(
    """
    import eventlet
    eventlet.monkey_patch()
    import json, sys, time
    from migrator import constants as C
    from migrator.driver import LiveMigrationDriver
    from migrator.testing import GiB, MiB
    from migrator.testing import fakelibvirt as fl
    from migrator.testing.config import make_conf
    from migrator.testing.fixture import FakeLibvirtFixture

    N, LIMIT = 80, 10
    started = []
    real = fl.virDomain.migrateToURI3
    def spy(self, *a, **k):
        started.append(self.name())
        return real(self, *a, **k)
    fl.virDomain.migrateToURI3 = spy

    fx = FakeLibvirtFixture(require_event_loop=False)
    fx.setUp()
    fx.world.add_host("src")
    for d in range(4):
        fx.world.add_host(f"dst{d}")
    for i in range(N):
        # the first LIMIT never converge (no completion timeout): they hold the slots
        holder = i < LIMIT
        fx.world.add_guest("src", f"vm{i}", memory=1 * GiB,
                           working_set=(1 * GiB if holder else 256 * MiB),
                           dirty_rate=(2 * GiB if holder else 100 * MiB))
        if i % 10 == 7 and i >= LIMIT:
            fx.world.faults.fail_migration(after=1.5, guest=f"vm{i}")
    peak = [0]
    def listener(t):
        peak[0] = max(peak[0], len(fx.world.jobs))
        return t
    fx.clock.add_listener(listener)
    conf = make_conf(max_concurrent_live_migrations=LIMIT, live_migration_completion_timeout=0)
    conn = fx.module.open("qemu+tcp://src/system")
    driver = LiveMigrationDriver(conf, conn, clock=fx.clock)
    driver.init_host()
    got = {}
    def cb(name):
        return lambda outcome: got.setdefault(name, []).append(outcome)
    handles = [driver.live_migration(conn.lookupByName(f"vm{i}"), f"dst{i % 4}",
                                     post_method=cb(f"vm{i}"), recover_method=cb(f"vm{i}"))
               for i in range(N)]
    # no green thread has run yet: every one past the limit is still queued
    cancel = [h for i, h in enumerate(handles) if i >= LIMIT and i % 5 == 1]
    queued_before = all(h.status == "queued" for h in cancel)
    futures = [h.abort() for h in cancel]
    deadline = time.monotonic() + 30
    while len(fx.world.jobs) < LIMIT and time.monotonic() < deadline:
        eventlet.sleep(0.001)  # the first LIMIT migrations start and hold their slots
    holders_ran = len(fx.world.jobs) == LIMIT
    futures += [h.abort() for h in handles[:LIMIT]]  # now let the queue move
    report = []
    for i, h in enumerate(handles):
        o = h.wait(60)
        rec_src = fx.world.domain("src", h.name)
        rec_dst = fx.world.domain(f"dst{i % 4}", h.name)
        report.append({
            "name": h.name, "dest": f"dst{i % 4}", "status": o and o.status,
            "error": o and o.error, "own": bool(o) and (o.domain, o.dest, o.uuid)
            == (h.name, f"dst{i % 4}", h.uuid) and got.get(h.name) == [o],
            "src_running": rec_src is not None and rec_src.state == C.VIR_DOMAIN_RUNNING,
            "dst_running": rec_dst is not None and rec_dst.state == C.VIR_DOMAIN_RUNNING,
            "cancelled_in_queue": h in cancel,
        })
    print(json.dumps({"report": report, "started": started, "peak": peak[0],
                      "holders_ran": holders_ran,
                      "queued_before": queued_before, "futures": [f.result(5) for f in futures],
                      "jobs_left": len(fx.world.jobs)}))
    fx.cleanUp()
    """
)


def test_many_simultaneous_migrations_under_eventlet():
    proc = subprocess.run([sys.executable, "-c", EVENTLET_SCRIPT], capture_output=True,
                          text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    report = result["report"]
    assert result["queued_before"] and result["holders_ran"]
    assert all(f is True for f in result["futures"])
    assert 0 < result["peak"] <= 10 and result["jobs_left"] == 0
    cancelled = {r["name"] for r in report if r["cancelled_in_queue"]}
    assert cancelled and not cancelled & set(result["started"])
    assert len(result["started"]) == len(report) - len(cancelled)
    for i, r in enumerate(report):
        assert r["own"], r
        if r["cancelled_in_queue"] or i < 10:
            expected = "cancelled"
        elif i % 10 == 7:
            expected = "failed"
        else:
            expected = "completed"
        assert r["status"] == expected, r
        assert (r["src_running"], r["dst_running"]) == (
            (False, True) if expected == "completed" else (True, False)), r
