"""Helpers for the fake libvirt's own tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from migrator import constants as C
from migrator.testing import fakelibvirt as fake
from migrator.testing.fixture import FakeLibvirtFixture
from migrator.testing.world import GiB, MiB, World

BASE_FLAGS = (
    C.VIR_MIGRATE_LIVE
    | C.VIR_MIGRATE_PEER2PEER
    | C.VIR_MIGRATE_PERSIST_DEST
    | C.VIR_MIGRATE_UNDEFINE_SOURCE
)
DST_URI = "qemu+tcp://dst/system"


def make_fixture(**kwargs: Any) -> Iterator[FakeLibvirtFixture]:
    fx = FakeLibvirtFixture(**kwargs)
    fx.setUp()
    try:
        yield fx
    finally:
        fx.cleanUp()


@pytest.fixture
def fx() -> Iterator[FakeLibvirtFixture]:
    yield from make_fixture()


@pytest.fixture
def world(fx: FakeLibvirtFixture) -> World:
    """Two 10 Gbit/s hosts, src and dst (127.0.0.3), and an event loop registered."""
    fx.world.add_host("src", address="127.0.0.2")
    fx.world.add_host("dst", address="127.0.0.3")
    fake.virEventRegisterDefaultImpl()
    return fx.world


def add_vm(world: World, name: str = "vm1", **kwargs: Any):
    kwargs.setdefault("memory", 4 * GiB)
    kwargs.setdefault("dirty_rate", 100 * MiB)
    return world.add_guest("src", name, **kwargs)


def error_of(fn: Callable[[], object]) -> fake.libvirtError:
    with pytest.raises(fake.libvirtError) as info:
        fn()
    return info.value


def err_tuple(exc: fake.libvirtError) -> tuple[int | None, int | None, str | None]:
    return exc.get_error_code(), exc.get_error_domain(), exc.get_error_message()


@dataclass
class Run:
    """migrateToURI3 in a worker thread, and a monitor-style poll loop on the clock."""

    world: World
    dom: fake.virDomain
    mdom: fake.virDomain  # the same domain on a second connection (as the driver does)
    thread: threading.Thread | None = None
    error: fake.libvirtError | None = None
    returned: object = None
    done: threading.Event = field(default_factory=threading.Event)
    samples: list[tuple[float, Any]] = field(default_factory=list)

    def start(self, uri: str = DST_URI, params: dict | None = None, flags: int = BASE_FLAGS):
        def work() -> None:
            try:
                self.returned = self.dom.migrateToURI3(uri, params or {}, flags)
            except fake.libvirtError as exc:
                self.error = exc
            finally:
                self.done.set()

        self.thread = threading.Thread(target=work, daemon=True)
        self.thread.start()
        return self

    def poll(self) -> Any:
        try:
            value: Any = self.mdom.jobStats()
        except fake.libvirtError as exc:
            value = exc
        self.samples.append((self.world.clock.now(), value))
        return value

    def monitor(
        self,
        interval: float = 0.5,
        limit: float = 36000.0,
        action: Callable[[float, Any], None] | None = None,
    ) -> Run:
        """Poll every ``interval`` virtual seconds until migrateToURI3 returns."""
        clock = self.world.clock
        while not self.done.is_set():
            sample = self.poll()
            if action is not None:
                action(clock.now(), sample)
            if clock.now() > limit:
                raise AssertionError(f"migration still running at t={clock.now()}")
            clock.wait(self.done, interval)
        assert self.thread is not None
        self.thread.join(5)
        return self

    def stats(self) -> list[tuple[float, dict]]:
        return [(t, s) for t, s in self.samples if isinstance(s, dict)]


def start_run(world: World, name: str = "vm1", host: str = "src") -> Run:
    dom = fake.open(f"qemu+tcp://{host}/system").lookupByName(name)
    mdom = fake.open(f"qemu+tcp://{host}/system").lookupByName(name)
    return Run(world, dom, mdom)


def wait_until(pred: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Until ``pred()`` is true, in real time (a thread has to get somewhere); generous."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.001)
