"""Time as the driver sees it: injectable, so a virtual clock can drive the loop.

The monitor loop never calls ``time.sleep``; it waits on an event with a
timeout, so ``abort()`` / ``force_complete()`` wake it at once (a real clock)
and a simulated hypervisor can advance virtual time instead (a virtual clock).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Wait until ``event`` is set or ``timeout`` seconds pass.

        Returns True when the event is set.
        """


class RealClock:
    """Wall-clock time; ``wait`` cooperates with eventlet when it is patched in."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(timeout)
