"""A policy harness: settings, action results, and the loop's execute-and-report step.

Both policies (StepsPolicy, AdaptivePolicy) are driven through these, so their
tests read the same way.
"""

from __future__ import annotations

from collections.abc import Callable

from migrator.policy import Action, ActionKind, MonitorSettings

# What executing an action gave: (succeeded, error text).
Result = Callable[[Action], tuple[bool, str | None]]


def make_settings(data_gb: float = 4.0, **overrides) -> MonitorSettings:
    """Nova's defaults for a guest of ``data_gb`` GiB, with ``overrides``."""
    values = dict(
        data_gb=data_gb,
        downtime_ms=500,
        downtime_steps=10,
        downtime_delay=75,
        post_copy_enabled=False,
        auto_converge_enabled=False,
        monitor_interval=5,
    )
    values.update(overrides)
    return MonitorSettings(**values)


def succeed(action: Action) -> tuple[bool, str | None]:
    return True, None


def fail_kind(kind: ActionKind, error: str = "boom") -> Result:
    """Actions of ``kind`` fail with ``error``; every other action succeeds."""

    def result(action: Action) -> tuple[bool, str | None]:
        return (False, error) if action.kind is kind else (True, None)

    return result


def execute(policy, actions: list[Action], result: Result = succeed) -> list[Action]:
    """What the loop does: execute each action, report it, run follow-ups at once."""
    done: list[Action] = []
    queue = list(actions)
    while queue:
        action = queue.pop(0)
        done.append(action)
        ok, error = result(action)
        queue[0:0] = policy.action_result(action, ok, error, action.at)
    return done


def kinds(actions: list[Action]) -> list[ActionKind]:
    return [a.kind for a in actions]
