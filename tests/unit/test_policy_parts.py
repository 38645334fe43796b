"""The parts every policy is made of: the max downtime's one owner, Nova's job control."""

from __future__ import annotations

import inspect

import pytest

from migrator import simulate
from migrator.adaptive import AdaptivePolicy
from migrator.jobcontrol import JobControl
from migrator.maxdowntime import MAX_DOWNTIME_ATTEMPTS, MaxDowntime
from migrator.policy import Action, ActionKind, MonitorSettings, Note, Policy, Tunables
from migrator.steps import StepsPolicy
from migrator.testing.config import make_conf

K = ActionKind
GiB = 1024**3
SETTINGS = MonitorSettings(
    data_gb=2.0, downtime_ms=500, downtime_steps=10, downtime_delay=75,
    post_copy_enabled=False, auto_converge_enabled=False, monitor_interval=5,
)


def _members(cls) -> set[str]:
    return {n for n in vars(cls) if not n.startswith("_")} | set(cls.__annotations__)


@pytest.mark.parametrize("policy", [StepsPolicy(SETTINGS), AdaptivePolicy(SETTINGS)])
def test_every_policy_answers_everything_the_monitor_asks(policy):
    wanted = _members(Policy)
    assert wanted >= {"guest_suspended", "applied_downtime_ms", "in_post_copy", "on_sample"}
    for name in wanted:
        assert hasattr(policy, name), name
        if inspect.isfunction(getattr(Policy, name, None)):
            assert callable(getattr(policy, name)), name
    assert policy.guest_suspended is False and policy.applied_downtime_ms is None


def test_max_downtime_one_value_in_flight_and_bounded_retries():
    notes: list[Note] = []
    md = MaxDowntime(notes)
    first = md.set(50, "why", 0.0)
    assert [a.value for a in first] == [50]
    assert md.set(50, "why", 0.1) == []  # pending: not sent twice
    md.result(first[0], True, 0.2)
    assert md.applied == 50 and not md.wanted(50)
    for i in range(MAX_DOWNTIME_ATTEMPTS):
        (action,) = md.set(80, "why", 1.0 + i)
        assert ("after a failure" in action.reason) == (i > 0)
        md.result(action, False, 1.0 + i)
    assert md.given_up(80) and md.set(80, "why", 9.0) == []
    assert md.applied == 50  # a refused value never counts as applied
    assert [n.text for n in notes] == ["max downtime 80 ms failed 3 times; not retried"]


def test_job_control_ignores_results_of_actions_it_did_not_emit():
    notes: list[Note] = []
    jobs = JobControl(SETTINGS, notes)
    jobs.on_sample(0.0, Tunables(0, "abort"))
    users = Action(K.ABORT, None, "user", 1.0)
    jobs.action_result(users, True, None, 1.0)
    assert not jobs.abort_requested
    (timeout,) = jobs.on_sample(41.0, Tunables(20, "abort"))
    assert timeout.timeout and jobs.abort_by_timeout and jobs.aborting


def test_a_policy_abort_under_way_is_not_repeated_by_the_timeout():
    notes: list[Note] = []
    jobs = JobControl(SETTINGS, notes)
    (mine,) = jobs.abort(3.0, "stalled")
    assert not mine.timeout
    assert jobs.on_sample(41.0, Tunables(20, "abort")) == []
    assert jobs.on_sample(42.0, Tunables(20, "abort")) == []
    assert [n.text for n in notes] == [
        "not completed after 41 s; completion timeout 40 s = 20 s/GiB x 2.0 GiB: "
        "the job is already being aborted (stalled)"
    ]
    assert jobs.request_force_complete(43.0) == []
    assert notes[-1].text == "force-complete ignored: the job is being aborted (stalled)"


def test_a_refused_policy_abort_is_taken_over_by_the_timeout_at_once():
    jobs = JobControl(SETTINGS, [])
    (mine,) = jobs.abort(3.0, "stalled")
    jobs.action_result(mine, False, "busy", 3.0)
    assert jobs.on_sample(4.0, Tunables(20, "abort")) == []  # retry not due yet
    (again,) = jobs.on_sample(8.5, Tunables(20, "abort"))
    assert again.reason == "stalled; retrying the abort after it failed"
    jobs.action_result(again, False, "busy", 8.5)
    (timeout,) = jobs.on_sample(41.0, Tunables(20, "abort"))
    assert timeout.timeout and "retrying" not in timeout.reason


def test_a_policy_suspend_is_a_force_complete_already_done():
    notes: list[Note] = []
    jobs = JobControl(SETTINGS, notes)
    jobs.on_sample(0.0, Tunables(0, "abort"))
    (suspend,) = jobs.suspend(5.0, "stalled: suspend", "stall")
    jobs.action_result(suspend, True, None, 5.0)
    assert jobs.guest_suspended
    assert jobs.on_sample(41.0, Tunables(20, "force_complete")) == []
    assert jobs.request_force_complete(42.0) == []
    assert [n.text for n in notes] == [
        "not completed after 41 s; completion timeout 40 s = 20 s/GiB x 2.0 GiB; "
        "the guest is already suspended (stall)",
        "force-complete ignored: the guest is already suspended (stall)",
    ]


@pytest.mark.parametrize("policy", ["steps", "adaptive"])
def test_progress_reports_the_max_downtime_the_policy_applied(policy):
    """The policy owns the applied max downtime; each report shows the value of its time."""
    seen = []
    res = simulate.run(make_conf(live_migration_convergence=policy), memory=GiB,
                       dirty_rate=0.8 * 1.25e9, bandwidth=1.25e9, on_progress=seen.append)
    applied = [(a.at, a.value) for a in res.outcome.actions
               if a.action == "set_max_downtime" and a.ok]
    assert applied and seen
    for p in seen:
        before = [v for at, v in applied if at <= p.elapsed]
        assert p.max_downtime_ms == (before[-1] if before else None)
