"""The physics alone: pre-copy against the closed form, working set, throttling, post-copy."""

from __future__ import annotations

import math

import pytest

from migrator.testing.hypervisor import (
    CHECK_SECONDS,
    AutoConverge,
    Completed,
    Iteration,
    Phase,
    Piecewise,
    Switchover,
    ThrottleChanged,
    Transfer,
)
from tests.unit.helpers.precopy_reference import reference

GiB = 1024**3
MiB = 1024**2
GBIT = 1e9 / 8


def new_transfer(**kw) -> Transfer:
    """A Transfer from t=0 with a 300 ms max downtime, unless ``kw`` says otherwise."""
    return Transfer(**{"start": 0.0, "downtime_limit": 0.3, **kw})


def run(t: Transfer, until: float = 1e7) -> list:
    out: list = []
    while not t.finished and t.t < until:
        out += t.advance(until)
    return out


def closed_form(V: float, R: float, D: float, limit: float = 0.3):
    """Liu et al.'s geometric model: passes, total time, downtime (peers-and-libvirt §5).

    It syncs only when a pass is empty; QEMU syncs as soon as what is left fits
    the threshold, so it stops a little sooner (see ``reference``)."""
    lam = D / R
    n = 0
    while V * lam**n > R * limit:
        n += 1
    passes = [V * lam**i for i in range(n + 1)]
    total = (V / R) * (1 - lam ** (n + 1)) / (1 - lam)
    return n, passes, total, V * lam**n / R


# (memory V, link R, dirty rate D): 10 Gbit 8 GiB busy, 1 Gbit slow, 20 Gbit
# lambda=0.6, 10 Gbit lambda=0.8, 25 Gbit huge guest, an idle guest.
CASES = [
    (8 * GiB, 10 * GBIT, 400 * MiB),
    (4 * GiB, 1 * GBIT, 60 * MiB),
    (16 * GiB, 20 * GBIT, 0.6 * 20 * GBIT),
    (2 * GiB, 10 * GBIT, 0.8 * 10 * GBIT),
    (64 * GiB, 25 * GBIT, 1 * GiB),
    (1 * GiB, 10 * GBIT, 0.0),
]


def _transfer(V: float, R: float, D: float, W: float | None = None) -> Transfer:
    return Transfer(start=0.0, memory=V, working_set=V if W is None else W, dirty_rate=D,
                    bandwidth=R, link_rate=R, downtime_limit=0.3)


@pytest.mark.parametrize(("V", "R", "D"), CASES)
def test_precopy_matches_a_brute_force_reference(V: float, R: float, D: float) -> None:
    t = _transfer(V, R, D)
    happenings = run(t)
    passes, total, downtime = reference(V, V, R, D)
    done = [h for h in happenings if isinstance(h, Completed)]
    assert len(done) == 1
    assert len(t.passes) == len(passes)  # live passes + the stop-and-copy set
    for sent, expected in zip(t.passes, passes, strict=True):
        assert sent == pytest.approx(expected, rel=1e-3, abs=2 * R * 1e-4)
    assert done[0].time == pytest.approx(total, abs=1e-3)
    assert t.downtime == pytest.approx(downtime, rel=1e-3, abs=1e-3)
    assert t.downtime <= 0.3


@pytest.mark.parametrize(("V", "R", "D"), CASES)
def test_precopy_stays_close_to_the_classic_closed_form(V: float, R: float, D: float) -> None:
    """Syncing as soon as the rest fits only moves the end: within one check window
    plus one threshold's worth of sending of the classic total, never later."""
    t = _transfer(V, R, D)
    happenings = run(t)
    _n, _passes, total, _downtime = closed_form(V, R, D)
    end = [h.time for h in happenings if isinstance(h, Completed)][0]
    assert total - CHECK_SECONDS - 0.3 - 1e-9 <= end <= total + CHECK_SECONDS + 1e-9


def test_iterations_count_bitmap_syncs() -> None:
    V, R, D = CASES[0]
    numbers = [h.number for h in run(_transfer(V, R, D)) if isinstance(h, Iteration)]
    passes, _total, _downtime = reference(V, V, R, D)
    # iteration 1 is the initial sync; every sync after it counts one more, and so does
    # the last one QEMU makes with the guest stopped (ram_save_complete).
    assert numbers == list(range(1, len(passes) + 2))


@pytest.mark.parametrize("look_every", [0.037, 0.25, 0.5])
@pytest.mark.parametrize("V, R, D, W", [
    (4 * GiB, 1 * GBIT, 0.05 * GBIT, None),  # a quiet guest: the last sync finds little
    (64 * GiB, 10 * GBIT, 0.05 * 10 * GBIT, 8 * GiB),
    (1 * GiB, 10 * GBIT, 1.2 * 10 * GBIT, 128 * MiB),  # hot working set, short passes
])
def test_looking_does_not_change_the_physics(V, R, D, W, look_every) -> None:
    """A jobStats call advances the model to its time; the 100 ms checks keep their grid,
    so a monitor that looks more often (or off the grid) sees the same migration."""
    alone = _transfer(V, R, D, W)
    run(alone)
    looked = _transfer(V, R, D, W)
    at = 0.0
    while not looked.finished:
        at += look_every
        looked.advance(at)
    assert looked.passes == [pytest.approx(p, rel=1e-9) for p in alone.passes]
    assert looked.downtime == pytest.approx(alone.downtime, rel=1e-9)


def test_working_set_bounds_what_is_dirty_again() -> None:
    # The guest dirties 2 GB/s, faster than the link, but only 256 MiB of it.
    V, W, R = 8 * GiB, 256 * MiB, 10 * GBIT
    t = new_transfer(
        memory=V,
        working_set=W,
        dirty_rate=2e9,
        bandwidth=R,
        link_rate=R,
    )
    happenings = run(t)
    passes, total, downtime = reference(V, W, R, 2e9)
    assert t.passes == [pytest.approx(p, rel=1e-3) for p in passes]
    # once pass 0 is done the synced set is the saturated working set, which fits
    assert t.passes[-1] <= W + R * 0.3 * (1 - W / V) + 1
    assert t.downtime == pytest.approx(downtime, rel=1e-3)
    assert isinstance(happenings[-1], Completed)


def test_non_converging_guest_iterates_forever() -> None:
    t = new_transfer(
        memory=4 * GiB,
        working_set=2 * GiB,
        dirty_rate=1e9,
        bandwidth=1 * GBIT,
        link_rate=1 * GBIT,
    )
    t.advance(3600.0)
    assert t.phase is Phase.PRECOPY
    assert t.iteration > 100
    # after pass 0 every pass resends the whole working set, less what still fits the
    # threshold when the check comes (pending is compared every CHECK_SECONDS)
    T = 1 * GBIT * 0.3
    for sent in t.passes[2:]:
        assert 2 * GiB - T - 1 * GBIT * CHECK_SECONDS <= sent <= 2 * GiB + T


def test_raising_the_downtime_limit_switches_at_once() -> None:
    R = 20 * MiB
    t = new_transfer(
        memory=128 * MiB,
        working_set=96 * MiB,
        dirty_rate=1e9,
        bandwidth=R,
        link_rate=1 * GBIT,
    )
    t.advance(8.0)  # into pass 1 (pass 0 took 6.4 s)
    assert t.phase is Phase.PRECOPY and t.iteration == 2
    t.set_downtime_limit(10.0)
    happenings = t.advance(8.0)
    assert isinstance(happenings[-1], Switchover)
    assert happenings[-1].time == 8.0
    # the stop-copy set: the saturated working set plus the cold pages pass 0 had
    # left when it fit the old threshold; sent at link speed
    remaining = happenings[-1].remaining
    assert 96 * MiB <= remaining <= 96 * MiB + R * 0.3
    run(t)
    assert t.downtime == pytest.approx(remaining / (1 * GBIT))


def test_stopcopy_runs_at_link_speed_not_the_bandwidth_cap() -> None:
    t = new_transfer(
        memory=1 * GiB,
        working_set=1 * GiB,
        dirty_rate=10 * MiB,
        bandwidth=100 * MiB,
        link_rate=10 * GBIT,
    )
    run(t)
    stop_set = t.passes[-1]
    assert stop_set <= 100 * MiB * 0.3
    assert t.downtime == pytest.approx(stop_set / (10 * GBIT))


def test_paused_guest_stops_dirtying_and_converges() -> None:
    t = new_transfer(
        memory=4 * GiB,
        working_set=4 * GiB,
        dirty_rate=2e9,
        bandwidth=1 * GBIT,
        link_rate=1 * GBIT,
    )
    t.advance(100.0)
    assert t.phase is Phase.PRECOPY
    t.set_guest_running(False)
    happenings = run(t)
    assert isinstance(happenings[-1], Completed)
    # what was dirty when it paused still had to go; nothing new got dirty
    assert t.passes[-1] <= 0.3 * GBIT


def auto_converging(initial: int = 20, increment: int = 10, dirty: float = 2.0) -> Transfer:
    R = 1 * GBIT
    return new_transfer(
        memory=4 * GiB,
        working_set=4 * GiB,
        dirty_rate=dirty * R,
        bandwidth=R,
        link_rate=R,
        auto_converge=AutoConverge(initial=initial, increment=increment),
    )


def test_auto_converge_follows_qemu_defaults() -> None:
    t = auto_converging()
    happenings = run(t)
    throttles = [h for h in happenings if isinstance(h, ThrottleChanged)]
    percents = [h.percent for h in throttles]
    assert percents[:3] == [20, 30, 40]
    assert all(b - a == 10 for a, b in zip(percents, percents[1:], strict=False))
    # QEMU raises it at every second sync that finds dirtying > 50 % of what was sent
    syncs = [h.time for h in happenings if isinstance(h, Iteration)]
    for change in throttles[1:]:
        idx = syncs.index(change.time)
        previous = syncs.index(throttles[throttles.index(change) - 1].time)
        assert idx - previous == 2
    assert isinstance(happenings[-1], Completed)  # throttling made it converge


def test_auto_converge_initial_and_increment_are_honoured() -> None:
    t = auto_converging(initial=60, increment=20, dirty=50.0)
    happenings = t.advance(600.0)
    percents = [h.percent for h in happenings if isinstance(h, ThrottleChanged)]
    assert percents[:3] == [60, 80, 99]  # capped at 99
    assert t.throttle == 99


def test_throttle_scales_the_dirty_rate() -> None:
    t = auto_converging(initial=50, increment=10, dirty=0.9)
    t.throttle = 50
    t.advance(1.0)
    assert t.dirty == pytest.approx(0.9 * GBIT * 0.5 * 1.0)


def test_dirty_rate_statistics_wait_for_the_first_second() -> None:
    R = 10 * GBIT
    t = new_transfer(
        memory=512 * MiB,
        working_set=512 * MiB,
        dirty_rate=2e9,
        bandwidth=R,
        link_rate=R,
        downtime_limit=0.1,
    )
    happenings = t.advance(0.95)
    syncs = [h.time for h in happenings if isinstance(h, Iteration)][1:]
    assert syncs and syncs[-1] < 1.0
    assert t.snapshot().dirty_pages_rate == 0  # QEMU updates at most once a second
    happenings = t.advance(2.0)
    assert any(isinstance(h, Iteration) and h.time >= 1.0 for h in happenings)
    assert t.snapshot().dirty_pages_rate > 0  # the sync at or after 1 s closes the period
    # never more than the guest wrote, in pages per second
    assert t.snapshot().dirty_pages_rate <= 2e9 / 4096 + 1


def test_postcopy_pulls_the_rest_and_counts_requests() -> None:
    R = 1 * GBIT
    t = new_transfer(
        memory=4 * GiB,
        working_set=4 * GiB,
        dirty_rate=2 * R,
        bandwidth=R,
        link_rate=R,
    )
    t.advance(10.0)
    pending = t.snapshot().memory_remaining
    t.request_postcopy()
    happenings = t.advance(10.0)
    assert isinstance(happenings[-1], Switchover) and happenings[-1].postcopy
    assert happenings[-1].remaining >= pending
    seen = []
    for when in (11.0, 12.0, 14.0):
        t.advance(when)
        seen.append(t.snapshot().postcopy_requests)
    assert seen == sorted(seen) and seen[0] > 0
    done = run(t)
    assert isinstance(done[-1], Completed)
    assert done[-1].time == pytest.approx(10.0 + happenings[-1].remaining / R, rel=1e-6)


def test_postcopy_bandwidth_limits_the_pull() -> None:
    t = new_transfer(
        memory=1 * GiB,
        working_set=1 * GiB,
        dirty_rate=2 * GBIT,
        bandwidth=1 * GBIT,
        link_rate=1 * GBIT,
        postcopy_bandwidth=10 * MiB,
    )
    t.advance(5.0)
    t.request_postcopy()
    switch = t.advance(5.0)[-1]
    done = run(t)[-1]
    assert done.time == pytest.approx(5.0 + switch.remaining / (10 * MiB), rel=1e-6)


def test_paused_postcopy_makes_no_progress() -> None:
    t = new_transfer(
        memory=1 * GiB,
        working_set=1 * GiB,
        dirty_rate=2 * GBIT,
        bandwidth=1 * GBIT,
        link_rate=1 * GBIT,
    )
    t.advance(2.0)
    t.request_postcopy()
    t.advance(2.0)
    t.pause_postcopy()
    before = t.snapshot().memory_remaining
    t.advance(100.0)
    assert t.snapshot().memory_remaining == before
    t.resume_postcopy()
    assert isinstance(run(t)[-1], Completed)


def test_piecewise_rate_is_followed_exactly() -> None:
    R = 1 * GBIT
    rate = Piecewise([(0.0, 2 * R), (300.0, 0.1 * R)])
    assert rate(-1.0) == 2 * R and rate(299.9) == 2 * R and rate(300.0) == 0.1 * R
    assert rate.next_change(10.0) == 300.0 and math.isinf(rate.next_change(300.0))
    t = new_transfer(
        memory=4 * GiB,
        working_set=4 * GiB,
        dirty_rate=rate,
        bandwidth=R,
        link_rate=R,
    )
    done = run(t)[-1]
    assert isinstance(done, Completed)
    assert done.time > 300.0  # could not converge while it dirtied twice the link


def test_callable_rate_is_sampled() -> None:
    R = 1 * GBIT
    t = new_transfer(
        memory=2 * GiB,
        working_set=2 * GiB,
        dirty_rate=lambda now: 2 * R if now < 100 else 0.0,
        bandwidth=R,
        link_rate=R,
        sample_seconds=0.5,
    )
    done = run(t)[-1]
    assert isinstance(done, Completed) and done.time > 100.0


def test_disks_are_copied_before_memory() -> None:
    R = 1 * GBIT
    t = new_transfer(
        memory=1 * GiB,
        working_set=1 * GiB,
        dirty_rate=0.0,
        bandwidth=R,
        link_rate=R,
        disk_bytes=10 * GiB,
    )
    assert t.phase is Phase.DISK
    t.advance(10.0)
    snap = t.snapshot()
    assert snap.disk_processed == pytest.approx(10 * R, rel=1e-9)
    assert snap.memory_processed == 0 and snap.iteration == 0
    happenings = run(t)
    first = happenings[0]
    assert isinstance(first, Iteration) and first.number == 1
    assert first.time == pytest.approx(10 * GiB / R)
    assert t.snapshot().disk_remaining == 0


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        new_transfer(
            memory=0,
            working_set=0,
            dirty_rate=0,
            bandwidth=1,
            link_rate=1,
            downtime_limit=1,
        )


def test_a_limit_changed_during_the_disk_copy_does_not_skip_pass_0() -> None:
    R = 1 * GBIT
    t = new_transfer(
        memory=64 * MiB,
        working_set=64 * MiB,
        dirty_rate=0.0,
        bandwidth=R,
        link_rate=R,
        disk_bytes=1 * GiB,
    )
    t.advance(1.0)
    t.set_downtime_limit(2.0)  # 64 MiB would fit the new threshold at once
    happenings = run(t)
    # QEMU measures the bandwidth for one window before it compares: pass 0 runs live
    # for CHECK_SECONDS, then the rest fits the new threshold and the guest stops
    assert t.passes[0] == pytest.approx(R * CHECK_SECONDS)
    assert t.passes[1] == pytest.approx(64 * MiB - R * CHECK_SECONDS)
    assert isinstance(happenings[-1], Completed) and 0.3 < t.downtime <= 2.0
