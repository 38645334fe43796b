"""A fake libvirt with a simulated hypervisor, for migrator's tests and yours.

Modules:

* :mod:`~migrator.testing.fakelibvirt` - the stand-in for ``import libvirt``
  (its handles: ``fakeconnect``, ``fakedomain``, ``fakemigrate``, ``call``).
* :mod:`~migrator.testing.world` - hosts, guests and time behind it (:class:`World`);
  its plain data in ``model``.
* :mod:`~migrator.testing.hypervisor` - the physics of one migration (pure);
  its vocabulary in ``physics``.
* :mod:`~migrator.testing.migration` - libvirt's job phases around the physics
  (``jobrequests``: what the API asks of a job; ``jobcounters``: its statistics).
* :mod:`~migrator.testing.rules` - the checks libvirt runs before a migration.
* :mod:`~migrator.testing.faults` - injected failures (``world.faults``).
* :mod:`~migrator.testing.clock` - :class:`VirtualClock`.
* :mod:`~migrator.testing.fixture` - :class:`~migrator.testing.fixture.FakeLibvirtFixture`.

Quick start::

    from migrator.testing import GiB, MiB, World
    from migrator.testing import fakelibvirt as libvirt

    world = World(autorun=True)        # autorun: migrateToURI3 moves the clock itself
    world.add_host("src")
    world.add_host("dst")
    world.add_guest("src", "vm1", memory=8 * GiB, working_set=2 * GiB, dirty_rate=400 * MiB)
    dom = libvirt.open("qemu+tcp://src/system").lookupByName("vm1")
    dom.migrateToURI3("qemu+tcp://dst/system", {}, libvirt.VIR_MIGRATE_LIVE
                      | libvirt.VIR_MIGRATE_PEER2PEER)
"""

from migrator.testing.clock import VirtualClock
from migrator.testing.hypervisor import Piecewise
from migrator.testing.world import Disk, GiB, KiB, MiB, Timings, World

__all__ = ["Disk", "GiB", "KiB", "MiB", "Piecewise", "Timings", "VirtualClock", "World"]
