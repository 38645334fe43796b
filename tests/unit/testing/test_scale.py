"""What one migration costs must not grow with the number in flight (issue 11).

Counted in work (job steps, wake-ups), never in seconds: the CPU figures are
``python -m benchmarks overhead``'s scale table.
"""

from __future__ import annotations

import threading

from migrator.testing.clock import _Sleepers
from migrator.testing.migration import MigrationJob
from migrator.testing.model import Waiter
from migrator.testing.world import World

from .conftest import add_vm, start_run, wait_until


def test_a_setter_advances_only_its_own_job(world: World, monkeypatch) -> None:
    """migrateSetMaxDowntime on one of N jobs steps that job, not all N."""
    runs = []
    for i in range(5):
        add_vm(world, f"vm{i}")
        runs.append(start_run(world, f"vm{i}").start())
    wait_until(lambda: len(world.jobs) == 5, "5 jobs")
    world.clock.advance(2.0)  # every job is moving RAM
    stepped: list[str] = []
    real = MigrationJob.advance

    def counted(self, t):
        stepped.append(self.rec.name)
        return real(self, t)

    monkeypatch.setattr(MigrationJob, "advance", counted)
    runs[3].mdom.migrateSetMaxDowntime(900, 0)
    assert stepped == ["vm3"]
    monkeypatch.undo()
    world.shutdown()


def _sleepers(deadlines: dict[int, float], now: float) -> tuple[_Sleepers, dict]:
    """Threads (by made-up id) inside a wait with these deadlines; their stop events."""
    sleepers = _Sleepers()
    stops = {t: threading.Event() for t in deadlines}
    for t, deadline in deadlines.items():
        sleepers.enter(t, now, deadline - now, stops[t])
    return sleepers, stops


def _woken(sleepers: _Sleepers) -> set[int]:
    return {t for t, z in sleepers._by_thread.items() if z.turn.is_set()}


def test_due_threads_are_woken_one_after_the_other() -> None:
    """After a step, one due thread is woken; each one leaving wakes the next, so a
    tick makes a few threads runnable at a time, not all N."""
    sleepers, _ = _sleepers({1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0, 5: 2.0, 6: 1.5}, now=0.0)
    assert sleepers.mark_due(1, 1.0)  # thread 1 stepped to 1.0: 2, 3 and 4 are due too
    for t in (5, 6):  # not due: they wait their turn
        assert sleepers.next_step(t) is None
    first = _woken(sleepers)
    assert len(first) == 1 and first <= {2, 3, 4}
    sleepers.leave(1, 1.0)  # the stepping thread leaves: the next due one
    order = [*first]
    while len(order) < 3:
        woken = _woken(sleepers) - set(order)
        assert len(woken) == 1
        order += woken
        sleepers.leave(order[-2], 1.0)
    assert sorted(order) == [2, 3, 4] and not _woken(sleepers) - set(order)
    sleepers.leave(order[-1], 1.0)  # the last due one: the earliest parked moves time
    assert _woken(sleepers) == {6}


def test_the_earliest_parked_thread_moves_time_next() -> None:
    """The parked thread to wake comes off a heap; threads that left are skipped."""
    sleepers, _ = _sleepers({1: 1.0, 2: 3.0, 3: 2.0, 4: 2.5}, now=1.0)
    for t in (2, 3, 4):
        assert sleepers.next_step(t) is None  # 1 is due and still inside
    sleepers.leave(3, 1.0)  # parked, then left (its event was set)
    sleepers.leave(1, 1.0)
    assert _woken(sleepers) == {4}
    assert sleepers.next_step(4) == 2.5


def test_a_due_thread_keeps_a_wake_it_was_given() -> None:
    """A due thread that looks again after it was woken is not put back to sleep."""
    sleepers, _ = _sleepers({1: 1.0, 2: 1.0, 3: 1.0}, now=0.0)
    sleepers.mark_due(1, 1.0)
    (woken,) = _woken(sleepers)
    assert sleepers.next_step(woken) is None  # others are due: it must not step
    assert _woken(sleepers) == {woken}  # but its wake stands: park() returns at once


def test_callers_of_ended_migrations_are_woken_one_by_one(world: World) -> None:
    """Migrations ending at the same step wake their callers one at a time: the next
    only once the previous one is on its way back."""
    waiters = [Waiter(conn=None) for _ in range(4)]  # type: ignore[arg-type]
    seen: list[int] = []

    def caller(i: int) -> None:
        waiters[i].ready.wait(30)
        seen.append(sum(w.ready.is_set() for w in waiters))  # how many were woken by now
        waiters[i].woke.set()

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(4)]
    for i, t in enumerate(threads):
        t.start()
        waiters[i].thread = t.ident  # type: ignore[assignment]
    with world._lock:
        world.post(waiters, None)
    assert not any(w.ready.is_set() for w in waiters)  # posted, not woken yet
    world.after_call()
    for t in threads:
        t.join(30)
    assert seen == [1, 2, 3, 4]


def test_parked_threads_do_not_poll_each_tick(monkeypatch) -> None:
    """Parked threads wait for their turn, not for a short timeout: 1,000 parked
    threads that each looked every 0.5 s (real) cost O(N) per migration."""
    from migrator.testing.clock import VirtualClock

    timeouts: list[int] = []
    real_park = _Sleepers.park

    def park(self, me):
        sleeper = self._by_thread[me]
        real_park(self, me)
        if not sleeper.turn.is_set():
            timeouts.append(me)

    monkeypatch.setattr(_Sleepers, "park", park)
    clock = VirtualClock()
    never = threading.Event()
    threads = [threading.Thread(target=clock.wait, args=(never, 0.5)) for _ in range(4)]
    with clock.holding():
        for t in threads:
            t.start()
        wait_until(lambda: len(clock._sleepers._parked) == 4, "4 parked waiters")
        threading.Event().wait(1.0)  # parked for a second of real time: no timeout yet
        assert timeouts == []
    for t in threads:
        t.join(30)
    assert clock.now() == 0.5 and timeouts == []


def test_time_stands_still_while_held() -> None:
    """holding(): waiting threads park instead of moving time, and are released one
    at a time (a gate inside advance_to released all N at once)."""
    from migrator.testing.clock import VirtualClock

    clock = VirtualClock()
    never = threading.Event()
    threads = [threading.Thread(target=clock.wait, args=(never, 0.5 + i)) for i in range(3)]
    with clock.holding():
        for t in threads:
            t.start()
        wait_until(lambda: len(clock._sleepers._parked) == 3, "3 parked waiters")
        assert clock.waiting == 3 and clock.now() == 0.0
    for t in threads:
        t.join(30)
    assert clock.now() == 2.5 and clock.waiting == 0
