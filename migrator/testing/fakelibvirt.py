"""A stand-in for the ``libvirt`` module, backed by a simulated world.

Everything migrator calls is here with libvirt-python's names and return
shapes: module functions (``open``, ``openReadOnly``, ``getVersion``,
``registerErrorHandler``, the event-loop functions), ``libvirtError``, the
``VIR_*`` constants (from :mod:`migrator.constants`), ``virConnect`` and
``virDomain``.  Calls go to the *current world* (:func:`set_world`; building a
:class:`~migrator.testing.world.World` makes it current, and
:class:`~migrator.testing.fixture.FakeLibvirtFixture` installs a fresh one per
test).

Each handle call runs the world's fault rules first (they may hang or raise),
then takes the world lock.  Events are delivered synchronously, in order,
outside the lock: those caused by a call in the calling thread when the call
returns, those caused by time passing in the thread that moved the clock, at
the end of that clock step (so a callback may see the world up to one wait
interval after the event).  Callbacks may call back into the fake.

``migrateToURI3`` returns 0 like libvirt-python (not None).  A call on a
connection that another thread is blocked on in ``migrateToURI3`` raises
:class:`~migrator.testing.world.SharedConnectionHang`: libvirt 9.0's client
hangs there (real-libvirt README §5).

The handles live in their own modules, one concern each:
:mod:`~migrator.testing.fakeconnect` (``virConnect``),
:mod:`~migrator.testing.fakedomain` (``virDomain``),
:mod:`~migrator.testing.fakemigrate` (``migrateToURI3``'s checks and start),
:mod:`~migrator.testing.call` (faults, lock and events around each call) and
:mod:`~migrator.testing.libvirt_values` (the libvirt values migrator does not carry).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from migrator import constants
from migrator.testing import current, libvirt_values
from migrator.testing import errors as E
from migrator.testing.current import get_world, set_world
from migrator.testing.errors import libvirtError
from migrator.testing.fakeconnect import virConnect
from migrator.testing.fakedomain import virDomain
from migrator.testing.model import version_int

# Re-export every libvirt constant migrator knows, so fake.VIR_MIGRATE_LIVE works,
# and the libvirt values it does not carry.
globals().update({k: v for k, v in vars(constants).items() if k.startswith("VIR_")})
globals().update({k: v for k, v in vars(libvirt_values).items() if k.startswith("VIR_")})

__all__ = [
    "libvirtError",
    "virConnect",
    "virDomain",
    "open",
    "openReadOnly",
    "openAuth",
    "getVersion",
    "registerErrorHandler",
    "virEventRegisterDefaultImpl",
    "virEventRunDefaultImpl",
    "set_world",
    "get_world",
]

_event_tick = threading.Event()


# -- module-level functions -------------------------------------------------------------


def open(name: str | None = None) -> virConnect:  # noqa: A001 - libvirt's name
    """Connect to the host ``name`` names (``qemu+tcp://host/system``, ``qemu:///system``)."""
    return _open(name, readonly=False)


def openReadOnly(name: str | None = None) -> virConnect:  # noqa: N802
    return _open(name, readonly=True)


def openAuth(uri: str | None, auth: Any = None, flags: int = 0) -> virConnect:  # noqa: N802
    return _open(uri, readonly=bool(flags & 1))


def _open(uri: str | None, readonly: bool) -> virConnect:
    world = get_world()
    world.faults.before_call("open", None, None)
    with world._lock:
        host = world.resolve(uri)
    return virConnect(world, host, uri or "qemu:///system", readonly)


def getVersion(name: str | None = None) -> int:  # noqa: N802
    """The client library's version (``World(client_version=...)``)."""
    world = current.peek_world()
    return version_int(world.client_version if world is not None else (9, 0, 0))


def registerErrorHandler(f: Callable[..., Any] | None, ctx: Any) -> int:  # noqa: N802
    """``f(ctx, err)`` is called with each error's tuple before it is raised (None: none)."""
    E.set_handler(f, ctx)
    return 1


def virEventRegisterDefaultImpl() -> int:  # noqa: N802
    """Mark the event loop as registered (domainEventRegisterAny needs it, as for real)."""
    world = current.peek_world()
    if world is not None:
        world.event_loop_registered = True
    return 0


def virEventRunDefaultImpl() -> int:  # noqa: N802
    """One turn of the event loop.  Events are delivered synchronously, so this only
    waits a little (real time) to keep a ``while True`` loop from spinning."""
    _event_tick.wait(0.05)
    return 0
