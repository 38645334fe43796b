"""A virtual clock: time moves only when somebody waits on it or advances it.

It implements :class:`migrator.clock.Clock`, so the driver's monitor loop runs
unchanged: ``wait(event, timeout)`` returns at once if the event is set,
otherwise it moves virtual time forward to ``now + timeout`` (stopping early if
the event gets set on the way) and returns ``event.is_set()``.

Moving time runs the *listeners* (the simulated world steps its hypervisors
analytically to the new time) and the *timers* (``call_at`` / ``call_later``,
for scripted scenarios) in time order.  Advances are serialised by a
re-entrant lock: a timer callback may itself wait on the clock.

Several threads waiting at once behave as on a real clock (N monitors that
each ``wait(0.5)`` in a loop all poll every 0.5 s of virtual time):

* time moves only to the earliest deadline of the threads waiting, and only
  once every thread whose deadline has passed has left its wait (a thread
  that is not scheduled for a while is waited for, not overtaken: with native
  threads the one that keeps the GIL would otherwise run a whole migration
  while the others never get to look);
* a thread's wait counts from where its previous one ended when other threads
  moved time meanwhile (by up to the timeout): it does not wait a full
  interval more because another thread stepped while it was busy.

A wait whose deadline another thread's advance has already passed returns
without moving time.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

# A listener steps to the given time and returns the time it reached.
Listener = Callable[[float], float]
# A thread that lets others go first is woken when it is its turn; an event set
# from outside is seen at the next step (mark_due).  It also looks on its own this
# often (real seconds), as a safety net only: with 1,000 parked threads a short
# check woke them all every interval, CPU in proportion to N per migration.
_HANDOVER_CHECK = 5.0


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


@dataclass
class _Sleeper:
    deadline: float
    stop: threading.Event
    turn: threading.Event = field(default_factory=threading.Event)  # look again


_GONE = _Sleeper(float("nan"), threading.Event())


class _Sleepers:
    """The threads inside :meth:`VirtualClock.wait`, and whose turn it is.

    Time moves only when no waiting thread whose deadline has passed (or whose
    event was set) is still inside its wait.  Those are woken one after the
    other, by their own event: each one leaving wakes the next, and when the
    last has left, one parked thread (the earliest deadline) is woken to move
    time.  A tick wakes each thread about once, and only a few threads are
    runnable at a time: with 1,000 native threads made runnable at once, each
    waiting for the GIL wakes every switch interval to ask for it, so the
    hand-over alone cost CPU in proportion to N per thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_thread: dict[int, _Sleeper] = {}
        self._heap: list[tuple[float, int]] = []  # deadlines (lazy deletes)
        self._due: set[int] = set()  # deadline passed or event set, still inside
        self._to_wake: collections.deque[int] = collections.deque()  # due, not woken yet
        self._parked: set[int] = set()  # waiting for the due ones to leave
        self._parked_heap: list[tuple[float, int]] = []  # their deadlines (lazy deletes)
        self._waited_until: dict[int, float] = {}  # thread -> when its last wait ended

    def __len__(self) -> int:
        return len(self._by_thread)

    def enter(self, me: int, now: float, timeout: float, stop: threading.Event) -> float:
        """Register; the deadline counts from the end of this thread's last wait when
        other threads moved time since (by up to ``timeout``)."""
        with self._lock:
            last = self._waited_until.get(me)
            start = last if last is not None and last <= now <= last + timeout else now
            deadline = start + timeout
            self._by_thread[me] = _Sleeper(deadline, stop)
            heapq.heappush(self._heap, (deadline, me))
            if deadline <= now:
                self._due.add(me)
            return deadline

    def leave(self, me: int, now: float) -> None:
        with self._lock:
            self._by_thread.pop(me, None)
            self._parked.discard(me)
            self._waited_until[me] = now
            self._due.discard(me)
            if self._wake_next_due():
                return
            if not self._due and self._parked:
                self._by_thread[self._first_parked()].turn.set()

    def _wake_next_due(self) -> bool:
        """Wake the next due thread still inside its wait (lock held); whether one was."""
        while self._to_wake:
            sleeper = self._by_thread.get(self._to_wake.popleft())
            if sleeper is not None:
                sleeper.turn.set()
                return True
        return False

    def _first_parked(self) -> int:
        """The parked thread with the earliest deadline (lock held, some parked).

        A heap with lazy deletes: a scan of every parked thread at each leave
        cost O(N) per wait, O(N^2) per tick with N monitors."""
        heap = self._parked_heap
        while True:
            deadline, thread = heap[0]
            sleeper = self._by_thread.get(thread)
            if thread in self._parked and sleeper is not None and sleeper.deadline == deadline:
                return thread
            heapq.heappop(heap)

    def next_step(self, me: int) -> float | None:
        """The earliest deadline of all waiting threads, or None (then :meth:`park`)
        while others whose wait is over have not left it yet."""
        with self._lock:
            if len(self._due) > (me in self._due):
                sleeper = self._by_thread[me]
                if me not in self._due:  # a due one keeps a wake it may have been given
                    sleeper.turn.clear()
                if me not in self._parked:
                    self._parked.add(me)
                    heapq.heappush(self._parked_heap, (sleeper.deadline, me))
                return None
            heap = self._heap
            while self._by_thread.get(heap[0][1], _GONE).deadline != heap[0][0]:
                heapq.heappop(heap)  # that thread left, or waits for another deadline now
            return heap[0][0]

    def park(self, me: int) -> None:
        """Wait (real time) until it is this thread's turn again."""
        self._by_thread[me].turn.wait(_HANDOVER_CHECK)
        with self._lock:
            self._parked.discard(me)

    def mark_due(self, me: int, now: float) -> bool:
        """After a step: mark due those whose deadline passed or whose event was set (a
        migration that ended at this step woke its monitor) and wake the first; each
        one leaving wakes the next.  Whether any besides ``me`` is due."""
        with self._lock:
            self._due = {t for t, z in self._by_thread.items()
                         if z.deadline <= now or z.stop.is_set()}
            self._to_wake = collections.deque(t for t in self._due if t != me)
            self._wake_next_due()
            return len(self._due) > (me in self._due)


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
        self._sleepers = _Sleepers()  # the threads inside wait()
        self._holds = 0  # holding() blocks, registered among the sleepers

    def now(self) -> float:
        return self._now

    def wait(self, event: threading.Event, timeout: float) -> bool:
        cooperate()
        if event.is_set():
            return True
        timeout = max(float(timeout), 0.0)
        if self.is_advancing_thread():  # a timer or listener waiting inside an advance
            self.advance_to(self._now + timeout, stop=event)
            return event.is_set()
        me = threading.get_ident()
        sleepers = self._sleepers
        deadline = sleepers.enter(me, self._now, timeout, event)
        try:
            while not event.is_set() and self._now < deadline:
                step = sleepers.next_step(me)
                if step is None:
                    sleepers.park(me)
                else:
                    self.advance_to(step, stop=event, hand_over=True)
        finally:
            sleepers.leave(me, self._now)
        return event.is_set()

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass (advancing it if needed)."""
        self.advance_to(self._now + max(float(seconds), 0.0))

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds``; returns the new time."""
        if seconds < 0:
            raise ValueError("virtual time cannot go backwards")
        return self.advance_to(self._now + seconds)

    def advance_to(
        self, target: float, stop: threading.Event | None = None, *, hand_over: bool = False
    ) -> float:
        """Move time forward to ``target`` (no-op if already there); returns the time.

        Stops early once ``stop`` is set, and with ``hand_over`` (a waiting
        thread) once another waiting thread must look first.
        """
        me = threading.get_ident()
        with self._lock:
            self._depth += 1
            self._advancer = me
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
                    others_due = self._sleepers.mark_due(me, self._now)
                    if (stop is not None and stop.is_set()) or (hand_over and others_due):
                        break
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._advancer = None
            return self._now

    @property
    def waiting(self) -> int:
        """How many threads are inside :meth:`wait` now (scenario scripts wait on it)."""
        return len(self._sleepers) - self._holds

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Virtual time stands still inside: threads that wait park, as behind a thread
        whose wait is over, and the earliest of them moves time once it ends.

        For scripts that start many waiters and release them together: a gate each
        waiter blocks on inside an advance would wake them all at once."""
        token = object()
        key = -id(token)  # unique while token lives; no thread has a negative id
        with self._lock:
            self._holds += 1
        self._sleepers.enter(key, self._now, 0.0, threading.Event())
        try:
            yield
        finally:
            with self._lock:
                self._holds -= 1
            self._sleepers.leave(key, self._now)

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
