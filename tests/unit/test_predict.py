"""The prediction model: closed forms, the simulator's physics, the operator's answers."""

from __future__ import annotations

import itertools
import math

import pytest

from migrator import predict as P
from migrator.testing.hypervisor import AutoConverge, Completed, Iteration, Transfer

GiB = 1024**3
MiB = 1024**2
LINK = 10e9 / 8  # 10 Gbit/s
BARE = P.Limits(start_seconds=0.0, finish_seconds=0.0)  # RAM time only


def bare(**kw: object) -> P.Limits:
    return P.Limits(start_seconds=0.0, finish_seconds=0.0, **kw)  # type: ignore[arg-type]


# -- closed forms --------------------------------------------------------------------


def geometric(memory: float, dirty: float, bandwidth: float, threshold: float) -> float:
    """Classic pre-copy: pass i sends memory x ratio**i; stop once a pass fits the threshold."""
    ratio, size, total = dirty / bandwidth, memory, 0.0
    while size > threshold:
        total += size / bandwidth
        size *= ratio
    return total + size / bandwidth


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_small_threshold_is_the_geometric_series(ratio: float) -> None:
    # 10 ms of max downtime: passes end when they run out of pages, as in the classic model
    memory, dirty = 8 * GiB, ratio * LINK
    est = P.estimate(P.PRECOPY, P.Workload(memory, dirty), P.Link(LINK), bare(max_downtime=0.01))
    expected = geometric(memory, dirty, LINK, LINK * 0.01)
    assert est.completes
    assert est.total_seconds == pytest.approx(expected, rel=0.02, abs=0.1)


@pytest.mark.parametrize("ratio", [0.2, 0.6, 0.9, 0.97])
def test_large_threshold_sends_memory_minus_threshold_at_the_net_rate(ratio: float) -> None:
    # QEMU syncs every 100 ms once pending fits: the set falls at bandwidth - dirty rate
    memory, dirty, downtime = 16 * GiB, ratio * LINK, 0.5
    threshold = LINK * downtime
    est = P.estimate(P.PRECOPY, P.Workload(memory, dirty), P.Link(LINK),
                     bare(max_downtime=downtime))
    expected = (memory - threshold) / (LINK - dirty) + threshold / LINK
    assert est.total_seconds == pytest.approx(expected, rel=0.02)
    assert est.downtime_seconds <= downtime


def test_post_copy_is_one_pass_then_the_push_at_the_line_rate() -> None:
    memory, dirty, working = 16 * GiB, 2 * LINK, 4 * GiB
    est = P.estimate(P.POST_COPY, P.Workload(memory, dirty, working),
                     P.Link(LINK / 2, line_rate=LINK), bare())
    threshold = LINK / 2 * 0.5
    first_pass = (memory - threshold) / (LINK / 2)  # until pending fits the threshold
    assert est.precopy_seconds == pytest.approx(first_pass, abs=0.1)
    # the working set, all dirty again, and the cold pages still unsent
    pushed = working + threshold * (1 - working / memory)
    assert est.postcopy_seconds == pytest.approx(P.postcopy_seconds(pushed, LINK), rel=0.02)
    assert est.total_seconds == pytest.approx(est.precopy_seconds + est.postcopy_seconds)
    assert est.ending == P.POST_COPY_DONE and est.completes
    # writes x remaining / memory, integrated while remaining falls linearly
    writes = dirty / 4096
    assert est.postcopy_page_requests == pytest.approx(
        writes * pushed * pushed / (2 * LINK * memory), rel=0.05)


def test_postcopy_seconds_is_the_push() -> None:
    assert P.postcopy_seconds(10 * GiB, 1 * GiB) == 10.0
    assert P.postcopy_seconds(0, 1 * GiB) == 0.0
    with pytest.raises(ValueError, match="bandwidth above 0"):
        P.postcopy_seconds(1, 0)


# -- against the simulator's physics -------------------------------------------------


def simulate(memory: float, working: float, dirty: float, bandwidth: float, downtime: float,
             auto: bool = False, postcopy: bool = False) -> tuple[float | None, int]:
    """The simulator's Transfer alone: (seconds to completion or None, libvirt's passes)."""
    tr = Transfer(start=0.0, memory=memory, working_set=working, dirty_rate=dirty,
                  bandwidth=bandwidth, link_rate=bandwidth, downtime_limit=downtime,
                  auto_converge=AutoConverge() if auto else None)
    t, switch = 0.0, postcopy
    while t < 4000:
        t += 0.1 if switch else 200  # post-copy: switch right after the first sync
        for h in tr.advance(t):
            if switch and isinstance(h, Iteration) and h.number == 2:
                tr.request_postcopy()
                switch = False
            if isinstance(h, Completed):
                return h.time, tr.iteration
    return None, tr.iteration


GRID = list(itertools.product(
    (1 * GiB, 16 * GiB),  # memory
    (0.05, 0.5, 0.8, 0.95, 1.2, 2.0),  # dirty rate / bandwidth
    (1e9 / 8, 10e9 / 8),  # link
    (1.0, 0.125),  # working set / memory
    (0.05, 0.5),  # max downtime, s
))


@pytest.mark.parametrize("strategy", [P.PRECOPY, P.AUTO_CONVERGE, P.POST_COPY])
def test_within_ten_percent_of_the_simulator_on_a_grid(strategy: str) -> None:
    worst, compared = 0.0, 0
    for memory, ratio, link, share, downtime in GRID:
        working, dirty = memory * share, ratio * link
        real, passes = simulate(memory, working, dirty, link, downtime,
                                auto=strategy == P.AUTO_CONVERGE,
                                postcopy=strategy == P.POST_COPY)
        est = P.estimate(strategy, P.Workload(memory, dirty, working), P.Link(link),
                         bare(max_downtime=downtime))
        case = (memory / GiB, ratio, link, share, downtime, est.reason)
        assert est.completes == (real is not None), case
        if real is None:
            continue
        compared += 1
        worst = max(worst, abs(est.total_seconds / real - 1))
        assert est.total_seconds == pytest.approx(real, rel=0.10), case
        if strategy != P.POST_COPY:
            assert est.passes == pytest.approx(passes, rel=0.25, abs=1), case
    assert compared >= len(GRID) // 2
    assert worst < 0.10


def test_the_driver_with_novas_ramp_on_the_simulator() -> None:
    """Through the real driver, monitor and steps policy: fixed costs and Nova's ramp."""
    from migrator import simulate as sim
    from migrator.policy import completion_timeout, downtime_steps
    from migrator.testing.config import make_conf

    conf = make_conf()
    for memory, ratio, share in ((4 * GiB, 0.8, 1.0), (1 * GiB, 0.95, 0.125), (1 * GiB, 1.2, 1)):
        result = sim.run(conf, memory=memory, dirty_rate=ratio * LINK, bandwidth=LINK,
                         working_set=int(memory * share))
        data_gb = max(memory / GiB, 2.0)
        ramp = tuple((at, ms / 1000) for at, ms in downtime_steps(data_gb, 500, 10, 75))
        limits = P.Limits(schedule=ramp, completion_timeout=completion_timeout(800, data_gb))
        est = P.estimate(P.PRECOPY, P.Workload(memory, ratio * LINK, memory * share),
                         P.Link(LINK), limits)
        outcome = result.outcome
        assert est.completes == (outcome.status == "completed")
        assert est.total_seconds == pytest.approx(outcome.total_seconds, rel=0.10)


def test_a_raised_max_downtime_ends_a_stuck_precopy() -> None:
    # 1 GiB working set at 2x the link: stuck until the ramp reaches 1 s at t = 60 s
    work = P.Workload(8 * GiB, 2 * LINK, 1 * GiB)
    limits = bare(schedule=((0, 0.1), (30, 0.5), (60, 1.0)))
    est = P.estimate(P.PRECOPY, work, P.Link(LINK), limits)
    assert est.completes and 60 <= est.total_seconds <= 61
    assert est.downtime_seconds == pytest.approx(1 * GiB / LINK, rel=0.01)
    assert limits.downtime_at(45) == 0.5 and limits.next_change(45) == 60
    assert not P.estimate(P.PRECOPY, work, P.Link(LINK), bare(schedule=limits.schedule[:2])
                          ).completes


# -- mid-migration ---------------------------------------------------------------------


def test_precopy_seconds_from_a_pass_boundary() -> None:
    remaining, dirty = 2 * GiB, 0.5 * LINK
    seconds = P.precopy_seconds(remaining, dirty, LINK, 0.5)
    assert seconds == pytest.approx((remaining - LINK * 0.5) / (LINK - dirty), rel=0.05)
    assert P.precopy_seconds(0, dirty, LINK, 0.5) == 0.0
    assert P.precopy_seconds(LINK * 0.4, dirty, LINK, 0.5) <= 0.1  # fits: the next check
    assert P.precopy_seconds(remaining, 1.1 * LINK, LINK, 0.5) == math.inf
    # the working set caps what can be dirty again: 1 GiB fits 1 s of max downtime
    assert P.precopy_seconds(remaining, 3 * LINK, LINK, 1.0, working_set=1 * GiB) < 3
    assert P.precopy_seconds(remaining, 3 * LINK, LINK, 0.5, working_set=1 * GiB) == math.inf


def test_model_is_cheap_even_for_hours_of_passes() -> None:
    # ~30 000 passes (a day at 0.9999 of the link): the series are summed, not stepped
    memory, dirty = 64 * GiB, 0.9999 * LINK
    est = P.estimate(P.PRECOPY, P.Workload(memory, dirty), P.Link(LINK), bare())
    assert est.completes and est.passes > 20_000
    expected = (memory - LINK * 0.5) / (LINK - dirty)
    assert est.total_seconds == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("ratio, downtime", [(1 - 3e-6, 0.05), (0.9999, 0.05), (0.9999, 0.5),
                                             (0.99, 0.01)])
def test_precopy_seconds_near_the_link_rate_is_the_closed_form(ratio, downtime) -> None:
    # days of passes, summed in closed form: a progress ETA or a policy can call it per poll
    remaining, dirty = 4 * GiB, ratio * LINK
    seconds = P.precopy_seconds(remaining, dirty, LINK, downtime)
    assert seconds == pytest.approx((remaining - LINK * downtime) / (LINK - dirty), rel=0.01)


# -- what an operator reads ------------------------------------------------------------


def test_hopeless_guest_says_why_and_what_would_help() -> None:
    w = P.Workload(8 * GiB, 1.4 * GiB, 2 * GiB)
    pred = P.predict(w, P.Link(1.1 * GiB), P.Limits())
    pre = pred.estimates[P.PRECOPY]
    assert not pre.completes and pre.ending == P.NEVER and pre.total_seconds == math.inf
    assert pre.reason.startswith("it dirties 1.4 GiB/s, the link carries 1.1 GiB/s; its working "
                                 "set of 2.0 GiB is dirty again after every pass (1818 ms at")
    assert pre.reason.endswith(": pre-copy cannot finish")
    assert "post-copy would take ~" in pred.summary()
    options = {r.option: r for r in pred.remedies}
    assert options["live_migration_permit_post_copy"].total_seconds == pytest.approx(
        pred.estimates[P.POST_COPY].total_seconds)
    assert "live_migration_permit_auto_converge" in options
    assert options["live_migration_downtime"].value > 1000  # 2 GiB at 1.1 GiB/s
    need = options["live_migration_bandwidth"].value * MiB
    faster = P.estimate(P.PRECOPY, w, P.Link(need), P.Limits())
    slower = P.estimate(P.PRECOPY, w, P.Link(need * 0.97), P.Limits())
    assert faster.completes and not slower.completes


def test_working_set_too_large_for_the_max_downtime() -> None:
    pred = P.predict(P.Workload(8 * GiB, 2 * LINK, 1 * GiB), P.Link(LINK), P.Limits())
    pre = pred.estimates[P.PRECOPY]
    assert not pre.completes
    assert pre.reason == (
        "it dirties 2.3 GiB/s, the link carries 1.2 GiB/s; its working set of 1.0 GiB is dirty "
        "again after every pass (859 ms at 1.2 GiB/s, more than the 500 ms max downtime): "
        "pre-copy cannot finish")
    # below the link rate each pass shrinks the set: it converges whatever the working set
    assert P.predict(P.Workload(8 * GiB, 0.99 * LINK, 1 * GiB), P.Link(LINK)).remedies == ()
    downtime = {r.option: r.value for r in pred.remedies}["live_migration_downtime"]
    assert 1 * GiB / LINK * 1000 <= downtime <= 1 * GiB / LINK * 1000 * 1.02


def test_permitted_post_copy_is_what_the_options_do() -> None:
    w = P.Workload(8 * GiB, 2 * LINK)
    pred = P.predict(w, P.Link(LINK), P.Limits(permit_post_copy=True))
    assert pred.configured.strategy == P.POST_COPY
    assert "with post-copy (permitted) it completes in" in pred.summary()
    assert "live_migration_permit_post_copy" not in {r.option for r in pred.remedies}


def test_converging_guest_needs_no_remedy() -> None:
    pred = P.predict(P.Workload(4 * GiB, 0.3 * LINK), P.Link(LINK))
    assert pred.configured.strategy == P.PRECOPY and pred.remedies == ()
    assert pred.summary().startswith("pre-copy completes in ~")
    doc = pred.to_dict()
    assert doc["estimates"][P.PRECOPY]["completes"] is True and doc["configured"] == P.PRECOPY


def test_completion_timeout_actions() -> None:
    w = P.Workload(4 * GiB, 2 * LINK)
    abort = P.estimate(P.PRECOPY, w, P.Link(LINK), P.Limits(completion_timeout=100))
    assert abort.ending == P.TIMEOUT_ABORT and not abort.completes
    assert abort.total_seconds == 100 and abort.reason == (
        "it dirties 2.3 GiB/s, the link carries 1.2 GiB/s: pre-copy cannot finish; the "
        "completion timeout (1m40s) aborts it")
    slow = P.estimate(P.PRECOPY, P.Workload(4 * GiB, 0.9 * LINK), P.Link(LINK),
                      P.Limits(completion_timeout=10))
    assert slow.reason.startswith("it dirties 1.0 GiB/s, the link carries 1.2 GiB/s: pre-copy "
                                  "still has ")
    assert slow.reason.endswith("the completion timeout (10.0 s) aborts it")
    pause = P.estimate(P.PRECOPY, w, P.Link(LINK),
                       P.Limits(completion_timeout=100, timeout_action="force_complete"))
    assert pause.ending == P.TIMEOUT_PAUSE and pause.completes
    assert pause.downtime_seconds == pytest.approx(4 * GiB / LINK, rel=0.05)
    post = P.estimate(P.PRECOPY, w, P.Link(LINK), P.Limits(
        completion_timeout=100, timeout_action="force_complete", permit_post_copy=True))
    assert post.ending == P.TIMEOUT_POST_COPY and post.postcopy_seconds > 0
    assert post.to_dict()["total_seconds"] == post.total_seconds
    assert abort.to_dict()["downtime_seconds"] is None
    never = P.estimate(P.PRECOPY, w, P.Link(LINK), P.Limits()).to_dict()
    assert never["total_seconds"] is None


def test_block_migration_copies_disks_first() -> None:
    without = P.estimate(P.PRECOPY, P.Workload(1 * GiB, 0), P.Link(LINK), bare())
    with_disk = P.estimate(P.PRECOPY, P.Workload(1 * GiB, 0, disk=10 * GiB), P.Link(LINK),
                           bare())
    assert with_disk.total_seconds - without.total_seconds == pytest.approx(10 * GiB / LINK)


@pytest.mark.parametrize("make, message", [
    (lambda: P.Workload(0, 1), "memory must be a finite number above 0"),
    (lambda: P.Workload(1, -1), "dirty rate must be a finite number of at least 0"),
    (lambda: P.Workload(1, float("nan")), "dirty rate"),
    (lambda: P.Workload(GiB, 1, 2 * GiB), "working set (2.0 GiB) cannot be larger"),
    (lambda: P.Link(0), "bandwidth must be"),
    (lambda: P.Limits(max_downtime=0), "max downtime must be"),
    (lambda: P.Limits(timeout_action="pause"), "timeout action must be"),
    (lambda: P.estimate("fast", P.Workload(1, 0), P.Link(1), P.Limits()), "unknown strategy"),
])
def test_bad_input_says_what_is_wrong(make, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()
