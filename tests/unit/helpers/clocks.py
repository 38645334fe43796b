"""A virtual clock for driving the monitor loop by hand (no simulated hypervisor)."""

from __future__ import annotations

import threading


class StepClock:
    """Virtual time: each wait lets other threads run a moment, then moves on by its timeout."""

    def __init__(self, start: float = 0.0):
        self.t = start

    def now(self) -> float:
        return self.t

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if event.wait(0.005):
            return True
        self.t += timeout
        return event.is_set()
