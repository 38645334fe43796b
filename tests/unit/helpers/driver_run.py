"""One migration through the real driver on the simulated hypervisor, and the promise
every fault test checks afterwards (:func:`check_settled`)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

from migrator import constants as C
from migrator.driver import LiveMigrationDriver
from migrator.testing import GiB, MiB
from migrator.testing.config import make_conf


def converging_guest(fake, name="vm1"):
    """Completes in ~10 s of virtual time (switch-over at ~9.6 s)."""
    fake.world.add_guest("src", name, memory=4 * GiB, working_set=1 * GiB,
                         dirty_rate=1000 * MiB)


def hopeless_guest(fake, name="vm1", memory=4 * GiB):
    """Dirties faster than the link: never converges on its own."""
    fake.world.add_guest("src", name, memory=memory, dirty_rate=2 * GiB)


def post_copy_conf(**kw):
    """Force-complete by post-copy at the completion timeout: 5 s/GiB (20 s for 4 GiB)."""
    return make_conf(live_migration_permit_post_copy=True, live_migration_completion_timeout=5,
                     live_migration_timeout_action="force_complete", **kw)


class Calls:
    """post/recover callbacks that record every call; ``done`` is set at the first."""

    def __init__(self):
        self.post: list = []
        self.recover: list = []
        self.done = threading.Event()

    def post_method(self, outcome):
        self.post.append(outcome)
        self.done.set()

    def recover_method(self, outcome):
        self.recover.append(outcome)
        self.done.set()


class Run:
    """One migration through the driver; ``at()`` schedules calls on its handle.

    The handle exists only once ``live_migration()`` has returned, but the monitor
    may move virtual time before that: scheduled callbacks wait for it (real time),
    and never raise (an exception in a timer would surface in the monitor thread).
    """

    def __init__(self, fake, conf=None, *, name="vm1", dest="dst", abort_timeout=30.0,
                 calls=None, **fields):
        self.fake = fake
        self.name = name
        self.calls = calls or Calls()
        self.results: dict[str, object] = {}
        self.handle = None
        self._ready = threading.Event()
        self.conn = fake.module.open("qemu+tcp://src/system")
        self.baseline = len(fake.world.connections())
        self.opened: list[str] = []

        def opener(uri):
            self.opened.append(uri)
            return fake.module.open(uri)

        self.driver = LiveMigrationDriver(conf or make_conf(), self.conn, clock=fake.clock,
                                          abort_timeout=abort_timeout, open_connection=opener)
        self.driver.init_host()
        self._dest = dest
        self._fields = fields

    def at(self, when: float, key: str, fn) -> None:
        def fire():
            if not self._ready.wait(10):
                self.results[key] = RuntimeError("handle never ready")
                return
            try:
                self.results[key] = fn(self.handle)
            except Exception as exc:  # noqa: BLE001 - kept for the test to inspect
                self.results[key] = exc

        self.fake.world.at(when, fire)

    def start(self):
        self.handle = self.driver.live_migration(
            self.conn.lookupByName(self.name), self._dest,
            post_method=self.calls.post_method, recover_method=self.calls.recover_method,
            **self._fields)
        self._ready.set()
        return self.handle

    def future(self, key: str):
        """What a scheduled control call's future resolved to: True or the exception.

        A call scheduled after the migration ended runs once time gets there: the
        clock stops when the job ends and nobody waits on it afterwards."""
        if key not in self.results:
            self.fake.clock.run_timers()
        fut = self.results[key]
        assert isinstance(fut, Future), fut
        try:
            return fut.result(5)
        except Exception as exc:  # noqa: BLE001
            return exc


def migrator_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("migrator-")]


def wait_for_threads(grace: float = 3.0) -> list[str]:
    deadline = time.monotonic() + grace
    while migrator_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    return migrator_threads()


def running_on(world, name) -> list[str]:
    return [h for h in world.hosts
            if (rec := world.domain(h, name)) is not None and rec.state == C.VIR_DOMAIN_RUNNING]


def check_settled(run: Run, timeout: float = 30, grace: float = 3.0):
    """The promise after any fault; returns the outcome."""
    world, name = run.fake.world, run.name
    outcome = run.handle.wait(timeout)
    assert outcome is not None, f"the migration did not settle (status {run.handle.status})"
    calls = run.calls
    assert len(calls.post) + len(calls.recover) == 1, "exactly one callback"
    assert (calls.post if outcome.succeeded else calls.recover) == [outcome]
    assert outcome.domain == name and outcome.dest == run.handle.dest
    assert run.handle.status == outcome.status and run.handle.done()
    where = running_on(world, name)
    moved = outcome.status in ("completed", "postcopy_failed")
    assert where == (["dst"] if moved else ["src"]), (outcome.status, where, outcome.error)
    src, dst = world.domain("src", name), world.domain("dst", name)
    if outcome.status == "postcopy_failed":
        # Never rolled back: the source stays paused, the job waits to be resumed.
        assert src.state == C.VIR_DOMAIN_PAUSED
        assert src.reason == C.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED
    else:
        assert world.jobs == [], "a libvirt job was left behind"
        for rec in (src, dst):
            assert rec is None or (rec.outgoing is None and rec.incoming is None)
        if outcome.status == "completed":
            assert src is None and dst.persistent
        else:
            assert dst is None or not dst.active
    assert (left := wait_for_threads(grace)) == [], f"a migrator thread was left behind: {left}"
    assert len(world.connections()) == run.baseline, "a driver connection was left open"
    assert run.driver.active_migrations() == []
    return outcome


def actions(outcome, kind=None):
    return [a for a in outcome.actions if kind is None or a.action == kind]


def open_driver(fake, conf=None, *, host="src", **kwargs):
    """A driver on ``host``'s fake libvirt, initialised as a service does; and its connection.

    ``kwargs`` go to :class:`LiveMigrationDriver` (``queue=False``, ``open_connection=``...).
    """
    conn = fake.module.open(f"qemu+tcp://{host}/system")
    driver = LiveMigrationDriver(make_conf() if conf is None else conf, conn, clock=fake.clock,
                                 **kwargs)
    driver.init_host()
    return driver, conn
