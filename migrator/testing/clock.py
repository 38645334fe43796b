"""A virtual clock: time moves only when somebody waits on it or advances it.

It implements :class:`migrator.clock.Clock`, so the driver's monitor loop runs
unchanged: ``wait(event, timeout)`` returns at once if the event is set,
otherwise it moves virtual time forward to ``now + timeout`` (stopping early if
the event gets set on the way) and returns ``event.is_set()``.

Moving time runs the *listeners* (the simulated world steps its hypervisors
analytically to the new time) and the *timers* (``call_at`` / ``call_later``,
for scripted scenarios) in time order.  Advances are serialised by a
re-entrant lock: a timer callback may itself wait on the clock.  Waits from
several threads do not stack: a wait whose deadline another thread's advance
has already passed returns without moving time.
"""

from __future__ import annotations

import heapq
import itertools
import sys
import threading
from collections.abc import Callable

# A listener steps to the given time and returns the time it reached.
Listener = Callable[[float], float]


def cooperate() -> None:
    """Let other green threads run when eventlet is patched in.

    A virtual wait never blocks, so under eventlet a monitor loop would starve
    the green thread blocked in migrateToURI3.  With native threads nothing is
    needed (and ``time.sleep(0)`` would cost ~80 us per poll).
    """
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is not None and patcher.is_monkey_patched("thread"):
        import eventlet

        eventlet.sleep(0)


class VirtualClock:
    """Virtual seconds since ``start``; see the module docstring."""

    def __init__(self, start: float = 0.0):
        self._now = float(start)
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._timers: list[tuple[float, int, Callable[[], object]]] = []
        self._seq = itertools.count()
        self._advancer: int | None = None
        self._depth = 0

    def now(self) -> float:
        return self._now

    def wait(self, event: threading.Event, timeout: float) -> bool:
        cooperate()
        if event.is_set():
            return True
        self.advance_to(self._now + max(float(timeout), 0.0), stop=event)
        return event.is_set()

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass (advancing it if needed)."""
        self.advance_to(self._now + max(float(seconds), 0.0))

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds``; returns the new time."""
        if seconds < 0:
            raise ValueError("virtual time cannot go backwards")
        return self.advance_to(self._now + seconds)

    def advance_to(self, target: float, stop: threading.Event | None = None) -> float:
        """Move time forward to ``target`` (no-op if already there); returns the time."""
        with self._lock:
            self._depth += 1
            self._advancer = threading.get_ident()
            try:
                while self._now < target:
                    due = self._timers[0][0] if self._timers else None
                    step = min(target, due) if due is not None else target
                    step = max(step, self._now)
                    reached = step
                    for listener in list(self._listeners):
                        reached = min(reached, listener(step))
                    # A listener may stop short, never go back.
                    self._now = max(self._now, reached)
                    if due is not None and due <= self._now:
                        self._run_due()
                    if stop is not None and stop.is_set():
                        break
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._advancer = None
            return self._now

    def is_advancing_thread(self) -> bool:
        """True when called from inside an advance (a timer, listener or event callback)."""
        return self._advancer == threading.get_ident()

    def _run_due(self) -> None:
        while self._timers and self._timers[0][0] <= self._now:
            _, _, fn = heapq.heappop(self._timers)
            fn()

    def call_at(self, when: float, fn: Callable[[], object]) -> None:
        """Run ``fn()`` (in the advancing thread) once virtual time reaches ``when``."""
        with self._lock:
            heapq.heappush(self._timers, (float(when), next(self._seq), fn))

    def run_timers(self) -> float:
        """Move time to the last scheduled timer, running every timer; the new time.

        For scripted scenarios whose timers lie beyond the moment the code under
        test stopped waiting (e.g. a call scheduled after a migration ended)."""
        with self._lock:
            last = max((when for when, _, _ in self._timers), default=self._now)
        return self.advance_to(last)

    def call_later(self, delay: float, fn: Callable[[], object]) -> None:
        self.call_at(self._now + delay, fn)

    def add_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
