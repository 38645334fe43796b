"""migrator inside Nova: a libvirt compute driver whose live migrations go through migrator.

Nova keeps everything that is Nova's (API, database, scheduling, the destination
XML, volumes, VIFs, rollback); :class:`LibvirtDriver` hands the ``migrateToURI3``
call, the monitor, force-complete and abort to
:class:`migrator.driver.LiveMigrationDriver`.  Tested against Nova 34.0.0 (the
``migrator[nova]`` extra pins it): the adapter uses a few of Nova's private
methods, which may change in another release.

Nova loads compute drivers only from its ``nova.virt`` package;
:mod:`migrator.nova.loader` makes this package reachable there as
``nova.virt.migrator``, so ``compute_driver = migrator.LibvirtDriver`` loads it.
Importing this package does not import Nova; the class is loaded on first use.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Lazy: the console script must let Nova choose eventlet or native threads
    # before any of Nova's driver modules are imported.
    if name == "LibvirtDriver":
        from migrator.nova.driver import LibvirtDriver

        return LibvirtDriver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
