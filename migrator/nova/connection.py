"""libvirt connections for migrator's driver inside Nova.

migrator's driver runs ``migrateToURI3`` on a connection of its own and the
monitor's calls on another: libvirt 9.0's client can lose a wake-up and hang
when one thread calls the API on a connection another thread is blocked on
in ``migrateToURI3``.  Inside Nova both are opened the way Nova opens its own
(``Host._connect``: Nova's URI, Nova's authentication callback, and under
eventlet calls that run in OS threads); migrator closes them when the
migration has settled.  Nova's own connection is used for what it is good
for, the host's versions and URI, and is never closed here.
"""

from __future__ import annotations

from typing import Any


class HostConnection:
    """Nova's ``Host.get_connection()`` on every call; ``close()`` leaves it open."""

    def __init__(self, host: Any):
        self._host = host

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host.get_connection(), name)

    def getURI(self) -> str:  # noqa: N802 - libvirt's name
        return str(getattr(self._host, "_uri", "") or "")

    def close(self) -> int:
        return 0


def open_own_connection(host: Any) -> Any:
    """A new connection to this host's libvirt, opened as Nova opens its own."""
    return host._connect(host._uri, False)
