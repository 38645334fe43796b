"""Options and a guest's facts into the model; the driver's predict() then a real migration."""

from __future__ import annotations

import dataclasses

import pytest

from migrator import exception, forecast, measure
from migrator import predict as P
from migrator.driver import LiveMigrationDriver
from migrator.forecast import DirtyRate
from migrator.testing import GiB, MiB
from migrator.testing.config import make_conf
from migrator.tuning import AdaptiveTuning
from tests.unit.helpers.driver_run import open_driver

LINK = 10e9 / 8  # the fake's default 10 Gbit/s hosts


def test_limits_follow_the_policy_and_the_timeout() -> None:
    steps = forecast.limits(make_conf(), 4 * GiB)
    assert steps.max_downtime == 0.5 and not steps.post_copy_early
    assert steps.schedule[0] == (0, 0.05) and steps.schedule[-1] == (3000, 0.5)  # 75 s/GiB
    assert steps.completion_timeout == 3200 and steps.timeout_action == "abort"
    adaptive = forecast.limits(make_conf(live_migration_convergence="adaptive",
                                         live_migration_permit_post_copy=True,
                                         live_migration_completion_timeout=0), 1 * GiB)
    assert adaptive.schedule == () and adaptive.post_copy_early
    assert adaptive.permit_post_copy and adaptive.completion_timeout == 0
    # Nova counts RAM and each disk as at least 2 GiB
    assert forecast.limits(make_conf(), 1 * GiB, disk=3 * GiB).completion_timeout == 4000


def test_link_is_the_cap_or_the_network() -> None:
    assert forecast.link(make_conf(live_migration_bandwidth=100)) == P.Link(100 * MiB)
    capped = forecast.link(make_conf(live_migration_bandwidth=100), link_rate=LINK)
    assert capped.bandwidth == 100 * MiB and capped.line == LINK
    assert forecast.link(make_conf(), link_rate=LINK) == P.Link(LINK, line_rate=LINK)
    with pytest.raises(exception.ConfigError, match="give the migration network's rate"):
        forecast.link(make_conf())


def test_configured_strategy_follows_the_flag_rules() -> None:
    facts = forecast.GuestFacts("vm", 8 * GiB, DirtyRate(2 * LINK))
    steps_pc = forecast.forecast(make_conf(live_migration_permit_post_copy=True), facts, LINK)
    assert steps_pc.configured.strategy == P.PRECOPY  # steps switches only at the timeout
    assert steps_pc.configured.ending == P.TIMEOUT_ABORT
    adaptive_pc = forecast.forecast(make_conf(live_migration_permit_post_copy=True,
                                              live_migration_convergence="adaptive"), facts, LINK)
    assert adaptive_pc.configured.strategy == P.POST_COPY
    auto = forecast.forecast(make_conf(live_migration_permit_auto_converge=True), facts, LINK)
    assert auto.configured.strategy == P.AUTO_CONVERGE and auto.configured.completes
    both = forecast.forecast(make_conf(live_migration_permit_auto_converge=True,
                                       live_migration_permit_post_copy=True), facts, LINK)
    assert both.configured.strategy == P.PRECOPY  # post-copy wins, switched at the timeout


def test_guest_facts_read_memory_and_take_a_given_rate(fake) -> None:
    fake.world.add_guest("src", "vm", memory=4 * GiB, dirty_rate=100 * MiB, state="paused")
    dom = fake.module.open("qemu+tcp://src/system").lookupByName("vm")
    facts = measure.guest_facts(dom, 50 * MiB)
    assert facts.memory == 4 * GiB and facts.resident == 4 * GiB
    assert facts.dirty == DirtyRate(50 * MiB) and facts.workload() == P.Workload(4 * GiB,
                                                                                   50 * MiB)
    assert measure.guest_facts(dom, 0, memory=GiB).memory == GiB
    with pytest.raises(exception.MeasurementFailed, match="vm is paused"):
        measure.guest_facts(dom)
    assert facts.to_dict()["dirty_rate"]["source"] == "given"


@pytest.mark.parametrize("policy", ["steps", "adaptive"])
@pytest.mark.parametrize("memory, working_set, rate", [
    (4 * GiB, 4 * GiB, 0.8 * LINK),
    (2 * GiB, 256 * MiB, 0.95 * LINK),
    (2 * GiB, 1 * GiB, 1.5 * LINK),
])
def test_driver_predicts_then_migrates(fake, policy, memory, working_set, rate) -> None:
    """Measure, predict, migrate, on the simulator: the prediction holds within 10 %."""
    fake.world.add_guest("src", "vm", memory=memory, working_set=working_set, dirty_rate=rate)
    driver, conn = open_driver(
        fake, make_conf(live_migration_convergence=policy, live_migration_completion_timeout=100))
    dom = conn.lookupByName("vm")
    prediction = driver.predict(dom, link_rate=LINK)
    handle = driver.live_migration(dom, "dst", post_method=lambda o: None,
                                   recover_method=lambda o: None)
    outcome = handle.wait(60)
    est = prediction.configured
    assert bool(prediction.caveat) == (working_set < rate)  # saturated within 1 s
    if prediction.caveat:  # the measured rate is a lower bound: the truth may be worse
        flips = "; above ~" in prediction.caveat
        assert est.completes == (outcome.status == "completed") or flips, prediction.caveat
        return
    assert est.completes == (outcome.status == "completed"), (est.reason, outcome.status)
    if est.completes:
        assert est.total_seconds == pytest.approx(outcome.total_seconds, rel=0.10), est.reason


def test_a_saturated_measurement_says_where_the_verdict_would_change():
    facts = forecast.GuestFacts("vm", 2 * GiB, DirtyRate(256 * MiB, 256 * MiB, at_least=True))
    pred = forecast.forecast(make_conf(live_migration_completion_timeout=100), facts, LINK)
    assert pred.workload.dirty_rate == 256 * MiB and pred.configured.completes
    assert pred.caveat.startswith(
        "the guest rewrote its whole 256.0 MiB working set within the 1 s measurement window, "
        "so it may write faster than 256.0 MiB/s; above ~")
    assert pred.caveat.endswith(" it does not complete")
    assert pred.summary().endswith(f"({pred.caveat})") and pred.to_dict()["caveat"]
    small = forecast.GuestFacts("vm", 2 * GiB, DirtyRate(64 * MiB, 64 * MiB, at_least=True))
    assert forecast.forecast(make_conf(), small, LINK).caveat.endswith(
        ": the verdict holds up to the link's rate")


def migrate(conf, prior: bool, memory, working_set, rate):
    """One migration through the driver in a world of its own; with ``prior``, its
    prediction made first.  (outcome, when the max downtime reached the ceiling)"""
    from migrator.testing.fixture import fake_hosts

    with fake_hosts(require_event_loop=False) as fx:
        fx.world.add_guest("src", "vm", memory=memory, working_set=working_set, dirty_rate=rate)
        driver, conn = open_driver(fx, conf)
        dom = conn.lookupByName("vm")
        prediction = driver.predict(dom, link_rate=LINK) if prior else None
        outcome = driver.live_migration(dom, "dst", post_method=lambda o: None,
                                        recover_method=lambda o: None,
                                        prediction=prediction).wait(60)
    ceiling = [a.at for a in outcome.actions if a.ok and (
        a.action == "start_post_copy" or a.action == "set_max_downtime" and a.value == 500)]
    return outcome, ceiling[0] if ceiling else None


def test_the_prior_ends_a_hopeless_migration_passes_sooner():
    """Predicted not to converge: the stall is confirmed in 2 passes instead of 6 and 40 s."""
    conf = make_conf(live_migration_convergence="adaptive")
    guest = (4 * GiB, 4 * GiB, 1.2 * LINK)
    learned, learned_at = migrate(conf, False, *guest)
    told, told_at = migrate(conf, True, *guest)
    assert told.status == learned.status == "stalled"
    assert told.passes < learned.passes and told_at < learned_at
    assert told.total_seconds < learned.total_seconds / 2
    for outcome in (told, learned):  # the same limits: never above the ceiling
        assert all((a.value or 0) <= 500 for a in outcome.actions
                   if a.action == "set_max_downtime")
    assert any("predicted before the start: dirties" in n for n in told.notes)


def test_with_post_copy_the_hopeless_guest_switches_at_the_first_boundary_either_way():
    """Post-copy when it pays needs no prior: the first boundary already shows that
    pre-copy at the ceiling would never end, so both switch there; with the prior the
    ceiling from the start makes QEMU sync (and the switch come) sooner."""
    conf = make_conf(live_migration_convergence="adaptive", live_migration_permit_post_copy=True)
    guest = (4 * GiB, 4 * GiB, 1.2 * LINK)
    learned, learned_at = migrate(conf, False, *guest)
    told, told_at = migrate(conf, True, *guest)
    assert told.status == learned.status == "completed"
    assert told.mode == learned.mode == "post-copy"
    assert told.passes == learned.passes <= 3 and told_at <= learned_at
    assert told.total_seconds <= learned.total_seconds + 1e-6


def test_a_hot_working_set_read_low_by_qemu_switches_a_pass_sooner_with_the_prior():
    """QEMU counts a page once per pass: a guest rewriting a 512 MiB working set reads
    ~15 MiB/s at the first boundary, so pre-copy looks able to end; the rate measured
    before the start says it cannot, and post-copy starts at that boundary."""
    conf = make_conf(live_migration_convergence="adaptive", live_migration_permit_post_copy=True)
    slow = 1e9 / 8

    def run(prior):
        from migrator.testing.fixture import fake_hosts
        with fake_hosts(require_event_loop=False, link_gbps=1) as fx:
            fx.world.add_guest("src", "vm", memory=4 * GiB, working_set=GiB // 2,
                               dirty_rate=1.2 * slow)
            driver, conn = open_driver(fx, conf)
            dom = conn.lookupByName("vm")
            prediction = driver.predict(dom, link_rate=slow) if prior else None
            return driver.live_migration(dom, "dst", post_method=lambda o: None,
                                         recover_method=lambda o: None,
                                         prediction=prediction).wait(60)

    learned, told = run(False), run(True)
    assert told.mode == learned.mode == "post-copy"
    assert told.total_seconds < learned.total_seconds
    assert told.passes < learned.passes


def test_the_prior_stops_a_guest_whose_first_set_fits_at_the_first_sync():
    """Dirtying faster than the link into a working set that fits the ceiling: the
    ceiling from the start lets QEMU stop the guest at the first sync, a pass sooner
    than learning the set there; the downtime stays within the ceiling."""
    conf = make_conf(live_migration_convergence="adaptive")
    guest = (GiB, GiB // 8, 1.2 * LINK)
    learned, _ = migrate(conf, False, *guest)
    told, _ = migrate(conf, True, *guest)
    assert told.status == learned.status == "completed"
    assert told.passes < learned.passes and told.total_seconds < learned.total_seconds
    assert all(a.value <= 500 for a in told.actions if a.action == "set_max_downtime")
    first = next(a for a in told.actions if a.action == "set_max_downtime")
    assert first.value == 500 and "from the prediction" in first.reason


def test_with_auto_converge_the_prior_keeps_the_stall_window():
    """Faster than the link, whole memory: pre-copy alone never ends, auto-converge's
    throttle must rise a step per sync; a 2-pass window would call it exhausted."""
    conf = make_conf(live_migration_convergence="adaptive",
                     live_migration_permit_auto_converge=True)
    guest = (GiB, GiB, 1.2 * LINK)
    learned, _ = migrate(conf, False, *guest)
    told, _ = migrate(conf, True, *guest)
    assert told.status == learned.status == "completed"
    assert told.total_seconds <= learned.total_seconds + 1e-6
    workload = P.Workload(GiB, 1.2 * LINK)
    tuning = forecast.adaptive_tuning(P.predict(workload, P.Link(LINK), P.Limits(
        permit_auto_converge=True)))
    assert tuning.stall_window_passes == AdaptiveTuning().stall_window_passes
    assert tuning.initial_downtime_ms == 500  # the ceiling: QEMU syncs, and throttles, sooner


def test_a_guest_predicted_to_converge_keeps_step_0_and_the_stall_window():
    conf = make_conf(live_migration_convergence="adaptive")
    guest = (4 * GiB, 4 * GiB, 0.8 * LINK)
    learned, _ = migrate(conf, False, *guest)
    told, _ = migrate(conf, True, *guest)
    assert (told.status, told.passes) == (learned.status, learned.passes)
    assert told.total_seconds == pytest.approx(learned.total_seconds)
    tuning = forecast.adaptive_tuning(P.predict(P.Workload(4 * GiB, 0.8 * LINK), P.Link(LINK)))
    assert tuning.initial_downtime_ms is None
    assert tuning.stall_window_passes == AdaptiveTuning().stall_window_passes


@pytest.mark.parametrize("rate, working_set, expected", [
    (0.5 * LINK, None, False),  # each pass at least halves the set: step 0
    (0.8 * LINK, None, False),  # 3.2 GiB first set does not fit: full passes first
    (0.8 * LINK, 0.25 * GiB, True),  # the first set is the working set, which fits
    (1.2 * LINK, None, True),  # faster than the link: pre-copy cannot shrink it
])
def test_starts_at_ceiling(rate, working_set, expected):
    assert forecast.starts_at_ceiling(0.5, 4 * GiB, rate, LINK, working_set) is expected


def test_a_rate_known_only_from_below_counts_as_the_links_at_least():
    """Page sampling saw the whole 128 MiB working set rewritten within a window: the
    guest may write any faster, so the first boundary finds the working set (fits)."""
    low = P.predict(P.Workload(GiB, 0.1 * LINK, working_set=128 * MiB), P.Link(LINK))
    assert forecast.adaptive_tuning(low).initial_downtime_ms is None
    floor = dataclasses.replace(low, rate_at_least=True)
    assert (low.fastest_rate, floor.fastest_rate) == (0.1 * LINK, LINK)
    tuning = forecast.adaptive_tuning(floor)
    assert tuning.initial_downtime_ms == 500
    assert tuning.prior_dirty_rate == 0.1 * LINK and tuning.prior_working_set == 128 * MiB
    assert "at least" in tuning.prior


def test_a_migration_predicted_to_fail_is_refused_when_the_option_says_so(fake):
    fake.world.add_guest("src", "vm", memory=4 * GiB, dirty_rate=2 * LINK)
    conn = fake.module.open("qemu+tcp://src/system")
    refuse = make_conf(live_migration_refuse_predicted_failure=True)
    driver = LiveMigrationDriver(refuse, conn, clock=fake.clock)
    driver.init_host()
    dom = conn.lookupByName("vm")
    prediction = driver.predict(dom, link_rate=LINK)
    calls = []
    with pytest.raises(exception.MigrationRefused) as refused:
        driver.live_migration(dom, "dst", post_method=calls.append,
                              recover_method=calls.append, prediction=prediction)
    text = str(refused.value)
    assert text.startswith("predicted not to complete under these options: it dirties 2.3 GiB/s,"
                           " the link carries 1.2 GiB/s")
    assert "pre-copy cannot finish" in text
    assert "what would help: live_migration_permit_post_copy = True" in text
    assert text.endswith("(live_migration_refuse_predicted_failure = True)")
    assert not fake.world.jobs and calls == []  # nothing started, no callback
    assert forecast.refusal(make_conf(), prediction) is None  # off by default
    assert forecast.refusal(refuse, None) is None  # no prediction: nothing to go by
    converging = forecast.forecast(refuse, forecast.GuestFacts("vm", GiB, DirtyRate(MiB)), LINK)
    assert forecast.refusal(refuse, converging) is None
