"""VirtualClock: the migrator.clock.Clock protocol on virtual time."""

from __future__ import annotations

import threading
import time

import pytest

from migrator.clock import Clock
from migrator.testing.clock import VirtualClock


def test_starts_where_told_and_advances() -> None:
    clock = VirtualClock(start=5.0)
    assert clock.now() == 5.0
    assert clock.advance(2.5) == 7.5
    assert clock.now() == 7.5
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_wait_returns_at_once_when_the_event_is_set() -> None:
    clock: Clock = VirtualClock()
    event = threading.Event()
    event.set()
    assert clock.wait(event, 10.0) is True
    assert clock.now() == 0.0


def test_wait_moves_time_by_the_timeout() -> None:
    clock = VirtualClock()
    event = threading.Event()
    assert clock.wait(event, 0.5) is False
    assert clock.wait(event, 0.5) is False
    assert clock.now() == 1.0


def test_timers_run_in_order_and_can_end_a_wait_early() -> None:
    clock = VirtualClock()
    seen: list[tuple[str, float]] = []
    event = threading.Event()
    clock.call_at(3.0, lambda: seen.append(("b", clock.now())))
    clock.call_at(1.0, lambda: seen.append(("a", clock.now())))
    clock.call_later(2.0, event.set)
    assert clock.wait(event, 10.0) is True
    assert clock.now() == 2.0  # stopped where the event got set
    assert seen == [("a", 1.0)]
    clock.advance(5.0)
    assert seen == [("a", 1.0), ("b", 3.0)]


def test_listeners_see_every_step() -> None:
    clock = VirtualClock()
    steps: list[float] = []

    def listener(t: float) -> float:
        steps.append(t)
        return t

    clock.add_listener(listener)
    clock.call_at(0.3, lambda: None)
    clock.advance(1.0)
    assert steps == [0.3, 1.0]
    clock.remove_listener(listener)
    clock.advance(1.0)
    assert steps == [0.3, 1.0]


def test_advancing_to_the_past_does_nothing() -> None:
    clock = VirtualClock()
    clock.advance(3.0)
    assert clock.advance_to(1.0) == 3.0


def test_a_timer_may_wait_on_the_clock_itself() -> None:
    clock = VirtualClock()
    inner: list[float] = []

    def nested() -> None:
        assert clock.is_advancing_thread()
        clock.sleep(2.0)
        inner.append(clock.now())

    clock.call_at(1.0, nested)
    clock.advance(5.0)
    assert inner == [3.0]
    assert clock.now() == 5.0
    assert not clock.is_advancing_thread()


def test_concurrent_waits_do_not_stack() -> None:
    clock = VirtualClock()
    gate = threading.Event()
    release = threading.Event()

    def slow_listener(t: float) -> float:
        if not gate.is_set():
            gate.set()
            release.wait(5)
        return t

    clock.add_listener(slow_listener)
    never = threading.Event()
    first = threading.Thread(target=clock.wait, args=(never, 1.0))
    first.start()
    gate.wait(5)
    # the second waiter asks for the same deadline while the first is advancing
    second = threading.Thread(target=clock.wait, args=(never, 1.0))
    second.start()
    release.set()
    first.join(5)
    second.join(5)
    assert clock.now() == 1.0


def test_run_timers_moves_time_through_every_timer() -> None:
    clock = VirtualClock()
    fired: list[float] = []
    clock.call_at(2.5, lambda: fired.append(clock.now()))
    clock.call_at(1.0, lambda: fired.append(clock.now()))
    assert clock.run_timers() == 2.5
    assert fired == [1.0, 2.5]
    assert clock.run_timers() == 2.5  # nothing left: time stays


def _poller(clock: VirtualClock, until: float, seen: list[float]) -> threading.Thread:
    def run() -> None:
        never = threading.Event()
        while clock.now() < until:
            seen.append(clock.now())
            clock.wait(never, 0.5)

    return threading.Thread(target=run)


def test_many_pollers_each_see_every_tick() -> None:
    """N threads polling wait(0.5) in a loop poll every 0.5 s, as on a real clock.

    Before, each wait moved time 0.5 s on from wherever the last one left it,
    so with N threads each saw one tick in N.
    """
    clock = VirtualClock()
    n = 12
    go = threading.Event()
    clock.add_listener(lambda t: t if go.wait(30) else t)  # time holds until all poll
    seen: list[list[float]] = [[] for _ in range(n)]
    threads = [_poller(clock, 5.0, seen[i]) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while clock.waiting < n and time.monotonic() < deadline:
        go.wait(0.01)
    go.set()
    for t in threads:
        t.join(30)
    assert clock.now() == 5.0
    ticks = [i * 0.5 for i in range(10)]
    for polls in seen:
        assert sorted(set(polls)) == ticks


def test_a_wait_counts_from_where_the_last_one_ended() -> None:
    clock = VirtualClock()
    never = threading.Event()
    clock.wait(never, 0.5)
    clock.advance(0.3)  # someone else moved time while this thread was busy
    clock.wait(never, 0.5)
    assert clock.now() == 1.0
    clock.advance(2.0)  # more than an interval: a full interval from now
    clock.wait(never, 0.5)
    assert clock.now() == 3.5
