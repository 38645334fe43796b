"""VirtualClock: the migrator.clock.Clock protocol on virtual time."""

from __future__ import annotations

import threading

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
