"""Shared helpers of the functional tests (real libvirt daemons, real QEMU guests).

One migration through the driver (:class:`Run`), where the guest must be afterwards
(:func:`assert_moved`, :func:`assert_stayed`), what must be back to normal
(:class:`Leftovers`), and waits on states with deadlines scaled to the machine
(:func:`wait_for`, :func:`scaled`).  Test modules import from here, never from each other.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from oslo_config import cfg

from migrator import constants as c
from migrator.driver import LiveMigrationDriver, MigrationHandle, MigrationOutcome
from migrator.testing.config import make_conf

libvirt = pytest.importorskip("libvirt")

GRACE = 10.0  # s for threads and connections to go away after the outcome


def scaled(seconds: float) -> float:
    """A deadline of ``seconds`` on a quiet machine, stretched on a busy one.

    The factor is the load per core (at least 1, at most 10), or
    ``MIGRATOR_TIMEOUT_SCALE`` when set: a wait never fails just because the
    machine is shared."""
    env = os.environ.get("MIGRATOR_TIMEOUT_SCALE")
    if env:
        return seconds * float(env)
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    return seconds * min(max(load, 1.0), 10.0)


class Run:
    """One migration through LiveMigrationDriver, with counted callbacks."""

    def __init__(self, rig, name: str, src: str = "a", conf: cfg.ConfigOpts | None = None,
                 **fields: Any):
        self.rig, self.name, self.src = rig, name, src
        self.dst = "b" if src == "a" else "a"
        self.post: list[MigrationOutcome] = []
        self.recover: list[MigrationOutcome] = []
        self.conn = rig.connect(src)
        self.driver = LiveMigrationDriver(conf or make_conf(), self.conn)
        self.driver.init_host()
        dest = rig.host(self.dst)
        fields.setdefault("dest_connect_uri", dest.uri)
        self.followed = threading.Event()  # the monitor itself read the job moving RAM
        fields["on_sample"] = self._chain_sample(fields.get("on_sample"))
        self.handle: MigrationHandle = self.driver.live_migration(
            self.conn.lookupByName(name), dest.addr,
            post_method=self.post.append, recover_method=self.recover.append, **fields)

    def wait(self, timeout: float = 180) -> MigrationOutcome:
        try:
            outcome = self.handle.wait(scaled(timeout))
            assert outcome is not None, f"migration of {self.name} did not settle in {timeout} s"
            assert len(self.post) + len(self.recover) == 1, "exactly one callback"
            assert (self.post if outcome.succeeded else self.recover) == [outcome]
            return outcome
        finally:
            self.conn.close()

    def _chain_sample(self, then: Callable[[float, Any], None] | None
                      ) -> Callable[[float, Any], None]:
        def on_sample(t: float, sample: Any) -> None:
            if sample.type == c.VIR_DOMAIN_JOB_UNBOUNDED and sample.memory_processed:
                self.followed.set()
            if then is not None:
                then(t, sample)
        return on_sample

    def wait_running(self, timeout: float = 60) -> None:
        """Until RAM is moving (the job really started) and the monitor has read it so.

        A fault injected before the monitor's first reading of the job would test
        another case: a job the service never saw running is not known to be its own."""
        with contextlib.closing(self.rig.connect(self.src)) as conn:
            wait_job_moving(conn.lookupByName(self.name), timeout)
        wait_for(self.followed.is_set, timeout, f"the monitor to read {self.name}'s job moving")


def wait_job_moving(dom, timeout: float = 60) -> dict[str, Any]:
    """Until ``dom``'s migration job moves RAM (the job really started); its jobStats."""

    def moving() -> dict[str, Any] | None:
        with contextlib.suppress(libvirt.libvirtError):
            st = dom.jobStats()
            if st.get("type") == c.VIR_DOMAIN_JOB_UNBOUNDED and st.get("memory_processed", 0):
                return st
        return None

    return wait_for(moving, timeout, f"the migration job of {dom.name()} to move memory")


def assert_moved(rig, name: str, dst: str, tick_before: int | None) -> None:
    src = "a" if dst == "b" else "b"
    where = rig.where(name)
    assert where[src] is None, where
    state, reason, persistent = where[dst]
    assert state == c.VIR_DOMAIN_RUNNING and persistent, where
    # the guest's RAM moved: its heartbeat counter goes on from where it was
    tick = rig.wait_heartbeat(dst, name, above=tick_before or 0, timeout=scaled(30))
    assert tick > (tick_before or 0)


def assert_stayed(rig, name: str, src: str) -> None:
    dst = "b" if src == "a" else "a"
    where = rig.where(name)
    assert where[dst] is None, where
    state, _reason, persistent = where[src]
    assert state == c.VIR_DOMAIN_RUNNING and persistent, where
    before = rig.heartbeat(src, name) or 0
    assert rig.wait_heartbeat(src, name, above=before, timeout=scaled(30)) > before


def guest(rig, name: str, host: str = "a", **kw: Any) -> int:
    rig.define_guest(host, name, **kw)
    return rig.wait_heartbeat(host, name, above=0, timeout=scaled(60))


# Workloads on real TCG guests (measured on the rig): 32 MiB flat out converges at
# once; 96 MiB flat out through a 20 MiB/s cap never converges at <= 500 ms.
NEVER = {"mb": 96, "rate": 0}
CAP = 20  # MiB/s


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    """Until ``pred()`` is true (returned); ``timeout`` s on a quiet machine (:func:`scaled`)."""
    limit = scaled(timeout)
    deadline = time.monotonic() + limit
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:.0f} s waiting for {what}")
        time.sleep(0.1)


def state(rig, name: str, host: str) -> tuple[int, int] | None:
    where = rig.where(name)[host]
    return None if where is None else where[:2]


def job_type(rig, host: str, name: str) -> int | None:
    """The domain's current job type on ``host`` (None: no such domain there)."""
    with contextlib.closing(rig.connect(host)) as conn:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise
        if not dom.isActive():  # a shut-off domain has no job (jobStats refuses to say)
            return libvirt.VIR_DOMAIN_JOB_NONE
        return dom.jobStats().get("type")


def open_sockets() -> int:
    """Sockets this process holds (each libvirt connection is one)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return n


def new_migrator_threads(before: set[threading.Thread]) -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name.startswith("migrator-") and t not in before]


class Leftovers:
    """Taken before the migration: what must be back to normal once it has settled."""

    def __init__(self, rig, name: str):
        rig.where(name)  # the rig's own cached connections exist before the count
        gc.collect()  # connections of earlier tests that only wait for the collector
        self.threads = set(threading.enumerate())
        self.sockets = open_sockets()

    def check(self, rig, name: str, run: Run) -> None:
        self.check_process(run)
        self.check_jobs(rig, name)

    def check_process(self, run: Run) -> None:
        """No migrator thread or libvirt connection left; still exactly one callback.

        What the settled handle itself holds is test_settled_handle_keeps_no_connection's
        business: it is dropped first, so that one bug does not fail every fault test."""
        calls = len(run.post) + len(run.recover)
        assert run.handle.done()
        run.handle = None  # type: ignore[assignment]
        grace = scaled(GRACE)
        deadline = time.monotonic() + grace
        while True:
            gc.collect()
            threads, sockets = new_migrator_threads(self.threads), open_sockets()
            if not threads and sockets <= self.sockets:
                break
            assert time.monotonic() < deadline, (
                f"left behind after {grace:.0f} s: threads {threads}, "
                f"{sockets - self.sockets} libvirt connection(s)")
            time.sleep(0.2)
        assert len(run.post) + len(run.recover) == calls == 1, "exactly one callback, once"

    @staticmethod
    def check_jobs(rig, name: str) -> None:
        for host in ("a", "b"):
            job = job_type(rig, host, name)
            assert job in (None, libvirt.VIR_DOMAIN_JOB_NONE), f"job type {job} left on {host}"
