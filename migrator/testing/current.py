"""The current simulated world: the one libvirt's module-level calls reach.

A :class:`~migrator.testing.world.World` makes itself current when it is built;
:class:`~migrator.testing.fixture.FakeLibvirtFixture` installs and restores it.
Kept apart so that the world and the fake libvirt handles need not import each other.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from migrator.testing.world import World

_world: World | None = None
_world_lock = threading.Lock()


def set_world(world: World | None) -> World | None:
    """Make ``world`` the one module-level calls use; returns the previous one."""
    global _world
    with _world_lock:
        previous, _world = _world, world
    return previous


def peek_world() -> World | None:
    """The current world, or None when there is none."""
    return _world


def get_world() -> World:
    """The current world; a clear error when no test built one."""
    world = _world
    if world is None:
        raise RuntimeError(
            "no fake libvirt world: build a migrator.testing.World() or use FakeLibvirtFixture"
        )
    return world
