"""The wrapper around every fake libvirt handle call: faults, lock, events.

Each call runs the world's fault rules first (no lock held; they may hang or
raise), then takes the world lock; the events it caused are delivered after
the lock is released.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from migrator.testing import errors as E
from migrator.testing.model import SharedConnectionHang

if TYPE_CHECKING:
    from migrator.testing.fakeconnect import virConnect
    from migrator.testing.world import World


class Call:
    """Faults first (no lock held), then the world lock; events after release."""

    __slots__ = ("_conn", "_world")

    def __init__(self, conn: virConnect, method: str, guest: str | None):
        world = conn._world
        blocked = conn._blocked_in_migration
        if blocked and world.strict_connections and threading.get_ident() not in blocked:
            raise SharedConnectionHang(
                f"fake libvirt: {method}() on a connection another thread is blocked on in "
                "migrateToURI3 would hang with libvirt 9.0's client (README §5); open a "
                "second connection for the monitor (World(strict_connections=False) to allow)"
            )
        if world.faults.rules:
            world.faults.before_call(method, conn.host.name, guest)
        self._conn = conn
        self._world = world

    def __enter__(self) -> World:
        self._world._lock.acquire()
        conn = self._conn
        if conn._closed:
            self._world._lock.release()
            raise E.invalid_connection("virConnect").exc()
        if not conn.alive:
            self._world._lock.release()
            raise E.socket_closed().exc()
        return self._world

    def __exit__(self, *exc: object) -> None:
        world = self._world
        world._lock.release()
        if world._events or world._posted:
            world.after_call()
