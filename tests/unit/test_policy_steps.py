"""StepsPolicy: Nova's monitor decisions (nova-live-migration.md §4.3-4.6, §5.3), quirks fixed."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from migrator import constants
from migrator.jobstats import JobSample
from migrator.maxdowntime import MAX_DOWNTIME_ATTEMPTS
from migrator.policy import (
    Action,
    ActionKind,
    Policy,
    Tunables,
    completion_timeout,
    downtime_steps,
    timeout_expired,
)
from migrator.steps import StepsPolicy
from tests.unit.helpers.policy import Result, execute, fail_kind, kinds, make_settings, succeed

RUNNING = JobSample(type=constants.VIR_DOMAIN_JOB_UNBOUNDED)
OFF = Tunables(completion_timeout=0, timeout_action="abort")
NOVA = Tunables(completion_timeout=800, timeout_action="abort")

K = ActionKind


def make_policy(steps=None, **overrides) -> StepsPolicy:
    return StepsPolicy(make_settings(**overrides), steps=steps)


def tick(
    policy: StepsPolicy, now: float, tunables: Tunables = OFF, result: Result = succeed
) -> list[Action]:
    return execute(policy, policy.on_sample(RUNNING, now, tunables), result)


# -- the ramp -----------------------------------------------------------------


def test_downtime_steps_worked_example_4gib():
    assert list(downtime_steps(4.0, 500, 10, 75)) == [
        (0, 50),
        (300, 95),
        (600, 140),
        (900, 185),
        (1200, 230),
        (1500, 275),
        (1800, 320),
        (2100, 365),
        (2400, 410),
        (2700, 455),
        (3000, 500),
    ]


def test_downtime_steps_upstream_table():
    # nova test_migration.py::test_live_migration_downtime_steps
    assert list(downtime_steps(3.0, 400, 10, 30)) == [
        (0, 40),
        (90, 76),
        (180, 112),
        (270, 148),
        (360, 184),
        (450, 220),
        (540, 256),
        (630, 292),
        (720, 328),
        (810, 364),
        (900, 400),
    ]


def test_downtime_steps_small_flavor_clamped_to_2gib():
    steps = list(downtime_steps(2.0, 500, 10, 75))
    assert [t for t, _ in steps] == list(range(0, 1501, 150))


def test_downtime_steps_block_16gib():
    steps = list(downtime_steps(16.0, 500, 10, 75))
    assert steps[1] == (1200, 95)
    assert steps[-1] == (12000, 500)


@pytest.mark.parametrize(("downtime", "steps"), [(103, 10), (100, 22)])
def test_downtime_steps_last_step_is_exact(downtime, steps):
    # Nova's int truncation ended at 102 and 99 here.
    ramp = list(downtime_steps(2.0, downtime, steps, 30))
    assert ramp[-1][1] == downtime
    assert ramp[-2][1] < downtime
    # Every other step keeps Nova's value.
    base = downtime / steps
    offset = (downtime - base) / steps
    assert [v for _, v in ramp[:-1]] == [int(base + offset * i) for i in range(steps)]


def test_downtime_steps_fractional_delay_is_truncated_once():
    # delay_s = int(75 * 2.5) = 187; step times are multiples of it.
    assert [t for t, _ in downtime_steps(2.5, 500, 3, 75)] == [0, 187, 374, 561]


def test_downtime_steps_rejects_zero_steps():
    with pytest.raises(ValueError):
        list(downtime_steps(4.0, 500, 0, 75))


@settings(max_examples=300, deadline=None)
@given(
    downtime=st.integers(100, 10000),
    steps=st.integers(3, 50),
    delay=st.integers(3, 300),
    gb=st.floats(2, 200, allow_nan=False),
)
def test_downtime_steps_property(downtime, steps, delay, gb):
    ramp = list(downtime_steps(gb, downtime, steps, delay))
    values = [v for _, v in ramp]
    times = [t for t, _ in ramp]
    assert len(ramp) == steps + 1
    assert values == sorted(values)
    assert times == sorted(times)
    assert values[0] == int(downtime / steps)
    assert values[-1] == downtime
    assert max(values) <= downtime


# -- downtime updates ---------------------------------------------------------


def test_step0_on_first_running_sample_even_at_zero():
    policy = make_policy()
    actions = tick(policy, 0.0)
    assert kinds(actions) == [K.SET_MAX_DOWNTIME]
    assert actions[0].value == 50
    assert actions[0].at == 0.0
    assert actions[0].reason == "downtime step 0/10: 50 ms after 0 s (delay 75 s/GiB x 4.0 GiB)"
    assert policy.applied_downtime_ms == 50


def test_no_action_before_the_job_runs():
    policy = make_policy()
    for job_type in (constants.VIR_DOMAIN_JOB_NONE, constants.VIR_DOMAIN_JOB_BOUNDED):
        assert policy.on_sample(JobSample(type=job_type), 10.0, NOVA) == []
    assert policy.applied_downtime_ms is None


def test_worked_example_4gib_ramp_and_timeout_every_half_second():
    policy = make_policy()
    emitted = []
    now = 0.0
    while now <= 3300:
        emitted += tick(policy, now, NOVA)
        now += 0.5
    ramp = [a for a in emitted if a.kind is K.SET_MAX_DOWNTIME]
    assert [a.value for a in ramp] == [50, 95, 140, 185, 230, 275, 320, 365, 410, 455, 500]
    assert [a.at for a in ramp] == [0.0] + [300.0 * i + 0.5 for i in range(1, 11)]
    assert ramp[3].reason == "downtime step 3/10: 185 ms after 900 s (delay 75 s/GiB x 4.0 GiB)"
    aborts = [a for a in emitted if a.kind is K.ABORT]
    assert len(aborts) == 1
    assert aborts[0].at == 3200.5  # strictly after the 3200 s timeout
    assert aborts[0].timeout is True


def test_update_downtime_no_steps():
    policy = make_policy(steps=[])
    assert tick(policy, 5000.0) == []


def test_update_downtime_too_early():
    policy = make_policy(steps=[(10, 50), (30, 300)])
    assert tick(policy, 5.0) == []
    assert tick(policy, 10.0) == []  # strictly after the step time


def test_update_downtime_step1():
    policy = make_policy(steps=[(10, 50), (30, 300)])
    actions = tick(policy, 20.0)
    assert [(a.kind, a.value) for a in actions] == [(K.SET_MAX_DOWNTIME, 50)]
    assert actions[0].reason == "downtime step 0/1: 50 ms after 10 s (custom ramp)"


def test_update_downtime_nostep1():
    policy = make_policy(steps=[(10, 50), (30, 300)])
    tick(policy, 20.0)
    assert tick(policy, 25.0) == []


def test_update_downtime_step2():
    policy = make_policy(steps=[(10, 50), (30, 300)])
    tick(policy, 20.0)
    assert [a.value for a in tick(policy, 35.0)] == [300]


def test_update_downtime_late_poll_jumps_to_newest_step():
    policy = make_policy()
    actions = tick(policy, 1000.0)
    assert [a.value for a in actions] == [185]
    assert actions[0].reason.startswith("downtime step 3/10: 185 ms after 900 s")


def test_update_downtime_err_is_retried_next_pass():
    # Nova returned the new value after a failure and never retried.
    policy = make_policy(steps=[(10, 50), (30, 300)])
    first = tick(policy, 20.0, result=fail_kind(K.SET_MAX_DOWNTIME))
    assert [a.value for a in first] == [50]
    assert policy.applied_downtime_ms is None
    retry = tick(policy, 20.5)
    assert [a.value for a in retry] == [50]
    assert "attempt 2/3" in retry[0].reason
    assert policy.applied_downtime_ms == 50
    assert tick(policy, 21.0) == []


def test_update_downtime_retries_are_bounded_per_value():
    policy = make_policy(steps=[(10, 50), (30, 300)])
    failing = fail_kind(K.SET_MAX_DOWNTIME)
    emitted = []
    for i in range(10):
        emitted += tick(policy, 20.0 + i * 0.5, result=failing)
    assert len(emitted) == MAX_DOWNTIME_ATTEMPTS
    assert any("50 ms failed 3 times" in n.text for n in policy.pop_notes())
    # The next step is a new value and is tried again.
    assert [a.value for a in tick(policy, 31.0)] == [300]


def test_downtime_not_reemitted_while_pending_but_newer_step_is():
    policy = make_policy(steps=[(10, 50), (30, 300)])
    first = policy.on_sample(RUNNING, 20.0, OFF)  # the loop has not reported yet
    assert [a.value for a in first] == [50]
    assert policy.on_sample(RUNNING, 20.5, OFF) == []
    assert [a.value for a in policy.on_sample(RUNNING, 31.0, OFF)] == [300]


def test_nova_monitor_downtime_scenario():
    # test_live_migration_monitor_downtime: fake steps, times 0,1,30,95,150,200,300.
    policy = make_policy(steps=[(90, 10), (180, 50), (270, 200), (500, 300)])
    values = []
    for now in (0, 1, 30, 95, 150, 200, 300):
        values += [a.value for a in tick(policy, float(now))]
    assert values == [10, 50, 200]


def test_downtime_capped_at_qemu_maximum():
    policy = make_policy(downtime_ms=5_000_000, downtime_steps=3)
    assert policy.steps[-1][1] == constants.QEMU_MAX_DOWNTIME_MS
    actions = tick(policy, 1e6)
    assert [a.value for a in actions] == [constants.QEMU_MAX_DOWNTIME_MS]


# -- completion timeout -------------------------------------------------------


def test_abort_too_long():
    assert timeout_expired(4500, 2000, False) is True
    policy = make_policy(data_gb=2.0, steps=[])
    actions = tick(policy, 4500.0, Tunables(1000, "abort"))
    assert kinds(actions) == [K.ABORT]
    assert actions[0].timeout is True


def test_abort_no_comp_timeout():
    assert timeout_expired(4500, 0, False) is False
    policy = make_policy(data_gb=2.0, steps=[])
    assert tick(policy, 4500.0, Tunables(0, "abort")) == []


def test_abort_still_working():
    assert timeout_expired(4500, 9000, False) is False
    policy = make_policy(data_gb=2.0, steps=[])
    assert tick(policy, 4500.0, Tunables(4500, "abort")) == []


def test_timeout_never_in_post_copy():
    assert timeout_expired(4500, 2000, True) is False


def test_completion_timeout_formula():
    assert completion_timeout(800, 4.0) == 3200
    assert completion_timeout(800, 16.0) == 12800
    assert completion_timeout(100, 2.0) == 200
    assert completion_timeout(15, 2.5) == 37
    assert completion_timeout(0, 4.0) == 0
    assert completion_timeout(-5, 4.0) == 0
    assert make_policy().completion_timeout(NOVA) == 3200


def test_completion_scenario_abort_once_marked_timeout():
    # test_live_migration_monitor_completion: 100 s/GiB x 2 GiB = 200 s, times step by 40.
    policy = make_policy(data_gb=2.0)
    tunables = Tunables(100, "abort")
    by_time = {t: tick(policy, float(t), tunables) for t in range(0, 401, 40)}
    aborts = [(t, a) for t, acts in by_time.items() for a in acts if a.kind is K.ABORT]
    assert [t for t, _ in aborts] == [240]
    action = aborts[0][1]
    assert action.timeout is True
    assert action.value is None
    assert action.reason == (
        "not completed after 240 s; completion timeout 200 s = 100 s/GiB x 2.0 GiB"
    )
    # Nothing else is emitted together with the abort.
    assert kinds(by_time[240]) == [K.ABORT]


def test_timeout_reason_worked_example():
    policy = make_policy()
    policy.on_sample(RUNNING, 0.0, NOVA)
    actions = policy.on_sample(RUNNING, 3201.0, NOVA)
    assert actions[0].kind is K.ABORT
    assert actions[0].reason == (
        "not completed after 3201 s; completion timeout 3200 s = 800 s/GiB x 4.0 GiB"
    )


def test_timeout_block_16gib_is_strict():
    policy = make_policy(data_gb=16.0)
    tick(policy, 0.0, NOVA)
    assert [a for a in tick(policy, 12800.0, NOVA) if a.kind is K.ABORT] == []
    actions = tick(policy, 12800.5, NOVA)
    assert kinds(actions) == [K.ABORT]
    assert actions[0].reason == (
        "not completed after 12800.5 s; completion timeout 12800 s = 800 s/GiB x 16.0 GiB"
    )


def test_timeout_abort_pending_is_not_repeated():
    policy = make_policy(data_gb=2.0, steps=[])
    tunables = Tunables(100, "abort")
    assert kinds(policy.on_sample(RUNNING, 201.0, tunables)) == [K.ABORT]
    for i in range(1, 50):  # never reported: still pending
        assert policy.on_sample(RUNNING, 201.0 + i * 0.5, tunables) == []


def test_timeout_abort_failure_retried_at_most_once_per_interval():
    policy = make_policy(data_gb=2.0, steps=[], monitor_interval=5)
    tunables = Tunables(100, "abort")
    failing = fail_kind(K.ABORT, "no job is active")
    emitted = []
    now = 201.0
    while now < 213.0:
        emitted += [(now, a) for a in tick(policy, now, tunables, result=failing)]
        now += 0.5
    assert [t for t, _ in emitted] == [201.0, 206.0, 211.0]
    assert all(a.timeout for _, a in emitted)
    assert "retrying the abort after it failed" in emitted[1][1].reason


def test_timeout_abort_done_is_final():
    policy = make_policy(data_gb=2.0, steps=[])
    tunables = Tunables(100, "abort")
    assert kinds(tick(policy, 201.0, tunables)) == [K.ABORT]
    assert tick(policy, 500.0, tunables) == []


def test_mutable_timeout_lowered_between_passes():
    policy = make_policy()  # 4 GiB
    assert [a for a in tick(policy, 1000.0, NOVA) if a.kind is K.ABORT] == []
    lowered = Tunables(200, "abort")  # 800 s for 4 GiB
    actions = tick(policy, 1000.5, lowered)
    assert kinds(actions) == [K.ABORT]
    assert "completion timeout 800 s = 200 s/GiB" in actions[0].reason


def test_mutable_timeout_raised_or_disabled_between_passes():
    policy = make_policy(data_gb=2.0, steps=[])
    assert tick(policy, 100.0, Tunables(100, "abort")) == []
    assert tick(policy, 300.0, Tunables(800, "abort")) == []  # deadline moved to 1600 s
    assert tick(policy, 2000.0, Tunables(0, "abort")) == []  # switched off
    assert kinds(tick(policy, 2000.5, Tunables(800, "abort"))) == [K.ABORT]


def test_unknown_timeout_action_aborts():
    policy = make_policy(data_gb=2.0, steps=[])
    assert kinds(tick(policy, 201.0, Tunables(100, "bogus"))) == [K.ABORT]


def test_timeout_not_enforced_in_post_copy_noted_once():
    policy = make_policy(data_gb=2.0, post_copy_enabled=True)
    tick(policy, 1.0, NOVA)
    policy.post_copy_started(2.0)
    tunables = Tunables(100, "abort")
    for now in (201.0, 201.5, 300.0):
        assert tick(policy, now, tunables) == []
    notes = policy.pop_notes()
    assert len(notes) == 1
    assert "not enforced in post-copy" in notes[0].text
    assert notes[0].at == 201.0


# -- force-complete -----------------------------------------------------------


def test_force_complete_postcopy_on_timeout():
    # test_live_migration_monitor_force_complete_postcopy: timeout 40 s, action
    # force_complete, post-copy on: the switch happens in the same pass.
    policy = make_policy(data_gb=2.0, post_copy_enabled=True)
    tunables = Tunables(20, "force_complete")
    assert K.START_POST_COPY not in kinds(tick(policy, 0.0, tunables))
    assert K.START_POST_COPY not in kinds(tick(policy, 40.0, tunables))
    actions = tick(policy, 40.5, tunables)
    assert kinds(actions) == [K.START_POST_COPY]
    assert actions[0].timeout is False
    assert actions[0].reason == (
        "not completed after 40.5 s; completion timeout 40 s = 20 s/GiB x 2.0 GiB; "
        "timeout action force_complete: switch to post-copy"
    )
    assert policy.in_post_copy
    # From now on nothing: no abort, no downtime, no second switch.
    for now in (41.0, 200.0, 5000.0):
        assert tick(policy, now, tunables) == []


def test_timeout_force_complete_without_postcopy_suspends_once():
    # Nova re-queued force-complete every 0.5 s after the deadline and paused again.
    policy = make_policy(data_gb=2.0, steps=[])
    tunables = Tunables(20, "force_complete")
    emitted = []
    for i in range(200):
        emitted += tick(policy, 40.5 + i * 0.5, tunables)
    assert kinds(emitted) == [K.SUSPEND]
    assert "post-copy not enabled" in emitted[0].reason
    assert policy.guest_suspended


def test_timeout_force_complete_fires_once_even_if_it_failed():
    policy = make_policy(data_gb=2.0, steps=[])
    tunables = Tunables(20, "force_complete")
    failing = fail_kind(K.SUSPEND)
    emitted = []
    for i in range(20):
        emitted += tick(policy, 40.5 + i * 0.5, tunables, result=failing)
    assert kinds(emitted) == [K.SUSPEND, K.SUSPEND]  # once, plus its one retry
    assert any("suspend failed 2 times (boom); given up" in n.text for n in policy.pop_notes())


def test_handle_postcopy_normal():
    policy = make_policy(post_copy_enabled=True)
    tick(policy, 0.0)
    actions = policy.request_force_complete(10.0)
    assert kinds(actions) == [K.START_POST_COPY]
    assert actions[0].reason == "force-complete requested: switch to post-copy"
    assert actions[0].at == 10.0
    execute(policy, actions)
    assert policy.in_post_copy
    assert tick(policy, 10.5) == []


def test_handle_pause_normal():
    policy = make_policy()
    tick(policy, 0.0)
    actions = execute(policy, policy.request_force_complete(10.0))
    assert kinds(actions) == [K.SUSPEND]
    assert policy.guest_suspended
    assert not policy.in_post_copy


@pytest.mark.parametrize(
    ("post_copy", "expected"),
    [(True, [K.START_POST_COPY]), (False, [K.SUSPEND, K.SET_MAX_DOWNTIME])],
)
def test_handle_force_complete_on_start(post_copy, expected):
    # Requested before the job runs: queued, executed on the first running sample.
    policy = make_policy(post_copy_enabled=post_copy)
    assert policy.request_force_complete(0.2) == []
    assert "queued" in policy.pop_notes()[0].text
    assert policy.on_sample(JobSample(), 0.5, OFF) == []
    actions = tick(policy, 1.0)
    assert kinds(actions) == expected
    assert actions[0].reason.startswith("force-complete requested at 0.2 s, before the job")


@pytest.mark.parametrize(
    "end_type",
    [
        constants.VIR_DOMAIN_JOB_COMPLETED,
        constants.VIR_DOMAIN_JOB_FAILED,
        constants.VIR_DOMAIN_JOB_CANCELLED,
    ],
)
@pytest.mark.parametrize("post_copy", [True, False])
def test_handle_force_complete_on_finish_cancel_failure(end_type, post_copy):
    # Queued, but the job ends without another running pass: nothing happens.
    policy = make_policy(post_copy_enabled=post_copy)
    policy.request_force_complete(0.0)
    assert policy.on_sample(JobSample(type=end_type), 1.0, NOVA) == []
    assert not policy.in_post_copy
    assert not policy.guest_suspended


@pytest.mark.parametrize("post_copy", [True, False])
def test_handle_force_complete_on_postcopy(post_copy):
    policy = make_policy(post_copy_enabled=post_copy)
    tick(policy, 0.0)
    policy.post_copy_started(5.0)
    assert policy.request_force_complete(6.0) == []
    notes = policy.pop_notes()
    assert [n.text for n in notes] == [
        "force-complete ignored: the migration is already in post-copy"
    ]
    assert notes[0].at == 6.0
    assert tick(policy, 6.5) == []


def test_force_complete_runs_once():
    policy = make_policy(post_copy_enabled=True)
    tick(policy, 0.0)
    first = policy.request_force_complete(1.0)
    assert kinds(first) == [K.START_POST_COPY]
    assert policy.request_force_complete(1.2) == []  # pending
    execute(policy, first)
    assert policy.request_force_complete(2.0) == []  # done (and in post-copy)
    assert len(policy.pop_notes()) == 2


def test_force_complete_suspend_done_is_not_repeated():
    policy = make_policy()
    tick(policy, 0.0)
    execute(policy, policy.request_force_complete(1.0))
    assert policy.request_force_complete(2.0) == []
    assert "already requested (done)" in policy.pop_notes()[0].text
    assert K.SUSPEND not in kinds(tick(policy, 2.5, Tunables(1, "force_complete")))


def test_queued_force_complete_is_not_queued_twice():
    policy = make_policy()
    policy.request_force_complete(0.0)
    policy.request_force_complete(0.1)
    assert kinds(tick(policy, 1.0)).count(K.SUSPEND) == 1
    assert tick(policy, 1.5) == []


def test_postcopy_failure_falls_back_to_suspend():
    policy = make_policy(post_copy_enabled=True)
    tick(policy, 0.0)
    done = execute(
        policy,
        policy.request_force_complete(3.0),
        fail_kind(K.START_POST_COPY, "post-copy can only be started while outgoing"),
    )
    assert kinds(done) == [K.START_POST_COPY, K.SUSPEND]
    assert done[1].reason == (
        "post-copy switch failed (post-copy can only be started while outgoing); "
        "suspend the guest instead until the copy finishes"
    )
    assert done[1].at == 3.0
    assert not policy.in_post_copy
    assert policy.guest_suspended


def test_suspend_failure_retried_once_then_given_up():
    policy = make_policy(steps=[])
    tick(policy, 0.0)
    failing = fail_kind(K.SUSPEND, "agent busy")
    assert kinds(execute(policy, policy.request_force_complete(1.0), failing)) == [K.SUSPEND]
    retry = tick(policy, 1.5, result=failing)
    assert kinds(retry) == [K.SUSPEND]
    assert retry[0].reason == "suspend failed (agent busy); attempt 2/2"
    assert tick(policy, 2.0) == []
    assert any("given up" in n.text for n in policy.pop_notes())
    # A new explicit request after a definitive failure is honoured.
    assert kinds(execute(policy, policy.request_force_complete(3.0))) == [K.SUSPEND]
    assert policy.guest_suspended


def test_post_copy_event_while_switch_pending():
    policy = make_policy(post_copy_enabled=True)
    tick(policy, 0.0)
    pending = policy.request_force_complete(1.0)
    policy.post_copy_started(1.1)
    assert policy.in_post_copy
    # A late failure report must not suspend a guest that runs in post-copy.
    assert policy.action_result(pending[0], False, "late", 1.2) == []
    assert tick(policy, 2.0, Tunables(1, "abort")) == []


def test_no_downtime_change_while_post_copy_switch_pending():
    policy = make_policy(post_copy_enabled=True)
    tick(policy, 0.0)
    policy.request_force_complete(1.0)  # not reported yet
    assert policy.on_sample(RUNNING, 400.0, OFF) == []


def test_no_timeout_abort_while_force_complete_pending_then_abort_after_suspend():
    policy = make_policy(data_gb=2.0, steps=[])
    tick(policy, 0.0)
    suspend = policy.request_force_complete(100.0)
    tunables = Tunables(100, "abort")
    assert policy.on_sample(RUNNING, 201.0, tunables) == []  # suspend result unknown
    policy.action_result(suspend[0], True, None, 201.2)
    actions = tick(policy, 201.5, tunables)
    assert kinds(actions) == [K.ABORT]  # a paused guest still times out, as in Nova


def test_force_complete_ignored_while_timeout_abort_in_flight():
    policy = make_policy(data_gb=2.0, steps=[], post_copy_enabled=True)
    tick(policy, 201.0, Tunables(100, "abort"))
    assert policy.request_force_complete(202.0) == []
    assert "being aborted" in policy.pop_notes()[0].text


def test_force_complete_allowed_after_failed_abort():
    policy = make_policy(data_gb=2.0, steps=[], post_copy_enabled=True)
    tick(policy, 201.0, Tunables(100, "abort"), result=fail_kind(K.ABORT))
    assert kinds(policy.request_force_complete(202.0)) == [K.START_POST_COPY]


def test_action_result_of_foreign_actions_is_ignored():
    policy = make_policy()
    tick(policy, 0.0)
    speed = Action(K.SET_MAX_SPEED, 100, "user", 1.0)
    user_abort = Action(K.ABORT, None, "user", 1.0)
    assert policy.action_result(speed, True, None, 1.0) == []
    assert policy.action_result(user_abort, False, "x", 1.0) == []
    # The foreign abort's failure did not count as the timeout abort: it still fires.
    assert kinds(tick(policy, 4.5, Tunables(1, "abort"))) == [K.ABORT]


def test_steps_policy_satisfies_protocol():
    policy: Policy = make_policy()
    assert policy.name == "steps"
    assert policy.in_post_copy is False


def test_action_kind_is_a_string():
    assert K.START_POST_COPY == "start_post_copy"
    assert f"{K.ABORT}" == "abort"


# -- invariants under random event sequences ------------------------------------

events = st.lists(
    st.one_of(
        st.tuples(st.just("sample"), st.floats(0, 60)),
        st.tuples(st.just("force"), st.floats(0, 60)),
        st.tuples(st.just("postcopy"), st.floats(0, 60)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(
    script=events,
    outcomes=st.lists(st.booleans(), min_size=1, max_size=20),
    post_copy=st.booleans(),
    action=st.sampled_from(["abort", "force_complete"]),
    per_gib=st.integers(0, 20),
)
# a retried abort exactly one interval later, where now - last rounds to just under it
@example(script=[("sample", 11.709632775041245), ("sample", 5.0)], outcomes=[False],
         post_copy=False, action="abort", per_gib=1)
def test_invariants(script, outcomes, post_copy, action, per_gib):
    policy = make_policy(data_gb=2.0, downtime_delay=3, post_copy_enabled=post_copy)
    tunables = Tunables(per_gib, action)
    results = iter(outcomes * 100)
    aborted = False
    last_abort_at = None

    seen: list[tuple[Action, bool]] = []

    def result(a: Action) -> tuple[bool, str | None]:
        ok = next(results)
        seen.append((a, ok))
        return ok, "err"

    now = 0.0
    switches = 0
    for kind, dt in script:
        now += dt
        was_post_copy = policy.in_post_copy
        if kind == "sample":
            batch = policy.on_sample(RUNNING, now, tunables)
        elif kind == "force":
            batch = policy.request_force_complete(now)
        else:
            policy.post_copy_started(now)
            continue
        if was_post_copy:
            assert batch == []
        batch_kinds = kinds(batch)
        assert not (K.ABORT in batch_kinds and len(batch) > 1)
        assert K.SET_MAX_SPEED not in batch_kinds
        if K.ABORT in batch_kinds:
            # Once successful, never again; after a failure, not within an interval
            # (compared as the policy does: now - last can round to just under it).
            assert not aborted
            assert last_abort_at is None or now >= last_abort_at + 5
            last_abort_at = now
        seen.clear()
        done = execute(policy, batch, result)
        aborted = aborted or any(a.kind is K.ABORT and ok for a, ok in seen)
        switches += kinds(done).count(K.START_POST_COPY)
        for a in done:
            assert a.at == now
            assert a.reason
            if a.kind is K.SET_MAX_DOWNTIME:
                assert 0 < a.value <= 500
    forces = sum(1 for kind, _ in script if kind == "force")
    assert switches <= forces + 1
