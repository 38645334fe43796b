"""``FakeLibvirtFixture``: the fake libvirt for a test, with a fresh simulated world.

Use it in your own test suite::

    from migrator.testing.fixture import FakeLibvirtFixture
    from migrator.testing.world import GiB, MiB

    class MyTest(testtools.TestCase):          # or fixtures.Fixture.setUp() in pytest
        def setUp(self):
            super().setUp()
            self.fake = self.useFixture(FakeLibvirtFixture())
            self.fake.world.add_host("src")
            self.fake.world.add_host("dst")
            self.fake.world.add_guest("src", "vm1", memory=4 * GiB, dirty_rate=100 * MiB)

In a pytest fixture, ``with fake_hosts() as fake: yield fake`` does the same with hosts
"src" and "dst" on a 10 Gbit/s link.

While installed, ``migrator._libvirt.module()`` and ``import libvirt`` both
give :mod:`migrator.testing.fakelibvirt`; everything is restored on cleanup.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import fixtures

from migrator import _libvirt
from migrator.testing import errors, fakelibvirt
from migrator.testing.clock import VirtualClock
from migrator.testing.world import World

_MISSING = object()


class FakeLibvirtFixture(fixtures.Fixture):
    """Install the fake libvirt and a fresh :class:`World` (``.world``, ``.clock``, ``.module``).

    Keyword arguments are passed to :class:`World` (``autorun=True``,
    ``timings=Timings(...)``, ``require_event_loop=False``, ...).
    """

    def __init__(self, **world_kwargs: Any):
        super().__init__()
        self._world_kwargs = world_kwargs
        self.world: World
        self.clock: VirtualClock
        self.module: ModuleType = fakelibvirt

    def _setUp(self) -> None:
        self.world = World(make_current=False, **self._world_kwargs)
        self.clock = self.world.clock
        previous_world = fakelibvirt.set_world(self.world)
        self.addCleanup(fakelibvirt.set_world, previous_world)
        previous_module = _libvirt.use(fakelibvirt)
        self.addCleanup(_libvirt.use, previous_module)
        self.addCleanup(errors.set_handler, *errors.get_handler())
        saved = sys.modules.get("libvirt", _MISSING)
        sys.modules["libvirt"] = fakelibvirt
        self.addCleanup(self._restore_sys_modules, saved)
        self.addCleanup(self._abort_leftover_jobs)

    @staticmethod
    def _restore_sys_modules(saved: object) -> None:
        if saved is _MISSING:
            sys.modules.pop("libvirt", None)
        else:
            sys.modules["libvirt"] = saved  # type: ignore[assignment]

    def _abort_leftover_jobs(self) -> None:
        """Fail any migration still blocked, so no test thread hangs after cleanup."""
        self.world.shutdown()


@contextlib.contextmanager
def fake_hosts(*names: str, link_gbps: float = 10, **world_kwargs: Any
               ) -> Iterator[FakeLibvirtFixture]:
    """The fake libvirt installed with hosts ``names`` (default "src" and "dst") on links of
    ``link_gbps``, for tests outside a testtools case (a pytest fixture, a helper)."""
    fx = FakeLibvirtFixture(**world_kwargs)
    fx.setUp()
    try:
        for name in names or ("src", "dst"):
            fx.world.add_host(name, link_gbps=link_gbps)
        yield fx
    finally:
        fx.cleanUp()
