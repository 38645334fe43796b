"""The monitor loop against scripted job stats (Nova's §5.2 harness, ported).

Each test scripts what ``jobStats`` returns poll by poll (dicts, libvirt errors,
or callables that end the ``migrateToURI3`` call) on a manual clock, then
checks the outcome, the libvirt calls made, and the recorded actions.
"""

from __future__ import annotations

import collections
import threading

import pytest

from migrator import constants as c
from migrator import exception
from migrator.concurrency import Worker
from migrator.monitor import MIN_LOOK, Hooks, LoopConfig, Monitor, Outcome
from migrator.policy import MonitorSettings, Tunables
from migrator.progress import ProgressTracker
from migrator.steps import StepsPolicy
from tests.unit.helpers.clocks import StepClock

GiB = 1024**3


class LibvirtError(Exception):
    def __init__(self, code: int, msg: str):
        super().__init__(msg)
        self.code, self.msg = code, msg

    def get_error_code(self) -> int:
        return self.code

    def get_error_message(self) -> str:
        return self.msg


ABORTED = LibvirtError(c.VIR_ERR_OPERATION_ABORTED, "operation aborted: job 'migration out' "
                       "canceled by client")


def running(iteration=1, remaining=GiB, total=4 * GiB, **extra):
    stats = {
        "type": c.VIR_DOMAIN_JOB_UNBOUNDED,
        "memory_iteration": iteration,
        "memory_total": total,
        "memory_remaining": remaining,
        "memory_processed": total - remaining,
        "data_total": total,
        "data_remaining": remaining,
        "data_processed": total - remaining,
        "memory_bps": 100 * 1024**2,
    }
    stats.update(extra)
    return stats


class Dom:
    """A scripted source domain: one script entry is consumed per jobStats call."""

    def __init__(self, script, state=(c.VIR_DOMAIN_RUNNING, 1)):
        self.script = collections.deque(script)
        self.state_value = list(state)
        self.calls: list[tuple] = []
        self.finish = threading.Event()
        self.error: Exception | None = None
        self.abort_error: Exception | None = None
        self.abort_blocks = 0.0
        self.migrate_called = False

    # steps usable in scripts
    @staticmethod
    def complete(dom):
        dom.state_value = None  # UNDEFINE_SOURCE: gone
        dom.finish.set()
        raise LibvirtError(c.VIR_ERR_OPERATION_INVALID, "Requested operation is not valid: "
                           "domain is not running")

    @staticmethod
    def fail(dom):
        dom.error = LibvirtError(c.VIR_ERR_INTERNAL_ERROR, "qemu unexpectedly closed the monitor")
        dom.finish.set()
        return {"type": c.VIR_DOMAIN_JOB_FAILED}

    def migrateToURI3(self, uri, params, flags):
        self.migrate_called = True
        assert self.finish.wait(30)
        if self.error:
            raise self.error

    def jobStats(self, flags=0):
        if flags & c.VIR_DOMAIN_JOB_STATS_COMPLETED:
            return {"type": c.VIR_DOMAIN_JOB_NONE}  # none kept: the script decides
        self.calls.append(("jobStats",))
        item = self.script.popleft() if self.script else {"type": c.VIR_DOMAIN_JOB_NONE}
        if callable(item):
            item = item(self)
        if isinstance(item, Exception):
            raise item
        return item

    def jobInfo(self):
        self.calls.append(("jobInfo",))
        return [c.VIR_DOMAIN_JOB_UNBOUNDED, 1000, 0, 4 * GiB, GiB, 3 * GiB, 4 * GiB, GiB,
                3 * GiB, 0, 0, 0]

    def abortJob(self):
        self.calls.append(("abortJob",))
        if self.abort_blocks:
            threading.Event().wait(self.abort_blocks)
        if self.abort_error:
            raise self.abort_error
        self.error = ABORTED
        self.finish.set()

    def migrateSetMaxDowntime(self, ms, flags=0):
        self.calls.append(("migrateSetMaxDowntime", ms))

    def migrateStartPostCopy(self, flags=0):
        self.calls.append(("migrateStartPostCopy",))

    def suspend(self):
        self.calls.append(("suspend",))
        self.state_value = [c.VIR_DOMAIN_PAUSED, c.VIR_DOMAIN_PAUSED_USER]

    def resume(self):
        self.calls.append(("resume",))
        self.state_value = [c.VIR_DOMAIN_RUNNING, c.VIR_DOMAIN_RUNNING_UNPAUSED]

    def state(self):
        if self.state_value is None:
            raise LibvirtError(c.VIR_ERR_NO_DOMAIN, "Domain not found")
        return list(self.state_value)

    def called(self, name):
        return [call for call in self.calls if call[0] == name]


def make_monitor(dom, *, post_copy=False, timeout=800, action="abort", data_gb=4.0,
                 on_progress=None, abort_timeout=5.0, policy=StepsPolicy):
    settings = MonitorSettings(data_gb, 500, 10, 75, post_copy, False, 5)
    worker = Worker(lambda: dom.migrateToURI3("uri", {}, 27), "test-op")
    mon = Monitor(
        domain=dom, reconnect=lambda: dom, worker=worker, policy=policy(settings),
        clock=StepClock(1000.0), tunables=lambda: Tunables(timeout, action),
        progress=ProgressTracker(5), hooks=Hooks(on_progress=on_progress),
        config=LoopConfig(poll_interval=0.5, abort_timeout=abort_timeout, data_gb=data_gb),
    )
    return mon, worker


def run(mon, worker, start=True):
    if start:
        mon.start()
    return mon.run()


class Eager(StepsPolicy):
    """Nova's ramp, but asking for each next sample after ``WISH`` seconds."""

    WISH: float | None = None

    def next_sample_in(self, now):
        return self.WISH


@pytest.mark.parametrize("wish, gap", [(0.2, 0.2), (0.0, MIN_LOOK), (3.0, 0.5), (None, 0.5)])
def test_the_next_look_is_the_policys_wish_within_min_look_and_the_poll(wish, gap):
    """A policy that knows when its next decision is due (a pass boundary) is sampled
    then, never more often than MIN_LOOK and never later than the poll interval."""
    Eager.WISH = wish
    dom = Dom([{"type": 0}, running(1), running(1), running(2), running(2), Dom.complete])
    mon, worker = make_monitor(dom, policy=Eager)
    seen = []
    stats = dom.jobStats

    def timed(flags=0):
        if not flags:
            seen.append(mon.clock.now())
        return stats(flags)

    dom.jobStats = timed
    assert run(mon, worker).status == "completed"
    gaps = [b - a for a, b in zip(seen[1:-1], seen[2:], strict=True)]  # from the 1st running one
    assert gaps and all(g == pytest.approx(gap) for g in gaps[:3])


def test_success():
    dom = Dom([{"type": 0}, running(1), running(1), running(2), Dom.complete])
    mon, worker = make_monitor(dom)
    outcome = run(mon, worker)
    assert outcome.status == "completed" and outcome.mode == "pre-copy"
    assert outcome.passes == 2
    assert dom.called("migrateSetMaxDowntime") == [("migrateSetMaxDowntime", 50)]
    assert not dom.called("abortJob")
    assert outcome.progress.percent == 100


def test_failure_leaves_guest_on_source():
    dom = Dom([running(1), Dom.fail])
    mon, worker = make_monitor(dom)
    outcome = run(mon, worker)
    assert outcome.status == "failed"
    assert "qemu unexpectedly" in outcome.error
    assert outcome.error_code == c.VIR_ERR_INTERNAL_ERROR


def test_error_but_guest_moved_is_completed():
    """A dropped client connection does not stop a P2P job: trust the domain's state."""

    def drop(dom):
        dom.error = LibvirtError(c.VIR_ERR_INTERNAL_ERROR, "client socket is closed")
        dom.state_value = None
        dom.finish.set()
        return {"type": 0}

    dom = Dom([running(1), drop])
    outcome = run(*make_monitor(dom))
    assert outcome.status == "completed"
    assert any("the guest moved" in n for n in outcome.notes)
    assert outcome.rule == "source-undefined"


def test_user_abort_is_cancelled():
    dom = Dom([running(1)] * 50)
    mon, worker = make_monitor(dom)
    mon.start()
    fut = mon.request("abort")
    outcome = mon.run()
    assert outcome.status == "cancelled"
    assert fut.result(5) is True
    assert len(dom.called("abortJob")) == 1
    assert [a.action for a in outcome.actions] == ["abort"]  # nothing after the abort


def test_abort_before_start_never_calls_libvirt():
    dom = Dom([])
    mon, worker = make_monitor(dom)
    fut = mon.request("abort")
    assert mon.start() is False  # requests made before the start are served first
    outcome = mon.run()
    assert outcome.status == "cancelled"
    assert fut.result(1) is True
    assert not dom.migrate_called and not dom.called("abortJob")


def test_abort_while_job_not_yet_running_is_retried():
    dom = Dom([{"type": 0}, {"type": 0}, running(1)] + [running(1)] * 20)
    attempts = []

    def abort_job():
        attempts.append(1)
        dom.calls.append(("abortJob",))
        if len(attempts) == 1:
            raise LibvirtError(c.VIR_ERR_OPERATION_INVALID,
                               "Requested operation is not valid: no job is active on the domain")
        dom.error = ABORTED
        dom.finish.set()

    dom.abortJob = abort_job
    mon, worker = make_monitor(dom)
    mon.start()
    fut = mon.request("abort")
    outcome = mon.run()
    assert outcome.status == "cancelled"
    assert len(attempts) == 2 and fut.result(1) is True


def test_completion_timeout_abort_is_timed_out():
    # 100 s/GiB x 2 GiB = 200 s; each poll advances 0.5 s.
    dom = Dom([running(1)] * 1000)
    outcome = run(*make_monitor(dom, timeout=100, data_gb=2.0))
    assert outcome.status == "timed_out"
    aborts = [a for a in outcome.actions if a.action == "abort"]
    assert len(aborts) == 1 and 200 < aborts[0].at <= 201
    assert "completion timeout 200 s" in aborts[0].reason
    assert len(dom.called("abortJob")) == 1


def test_timeout_force_complete_with_post_copy_switches_once():
    def postcopy_done(dom):
        dom.state_value = None  # UNDEFINE_SOURCE: gone
        dom.finish.set()
        raise LibvirtError(c.VIR_ERR_OPERATION_INVALID, "domain is not running")

    script = [running(1)] * 82 + [postcopy_done]
    dom = Dom(script)
    outcome = run(*make_monitor(dom, post_copy=True, timeout=20, action="force_complete",
                                data_gb=2.0))
    assert outcome.status == "completed" and outcome.mode == "post-copy"
    assert len(dom.called("migrateStartPostCopy")) == 1
    assert not dom.called("suspend")


def test_timeout_force_complete_without_post_copy_suspends_once():
    dom = Dom([running(1)] * 100 + [Dom.complete])
    outcome = run(*make_monitor(dom, timeout=20, action="force_complete", data_gb=2.0))
    assert outcome.status == "completed" and outcome.mode == "paused"
    assert len(dom.called("suspend")) == 1


def test_force_complete_before_start_runs_on_first_running_sample():
    dom = Dom([{"type": 0}, {"type": 0}, running(1), running(1), Dom.complete])
    mon, worker = make_monitor(dom, post_copy=True)
    fut = mon.request("force_complete")
    mon.start()
    outcome = mon.run()
    assert fut.result(1) is True
    assert len(dom.called("migrateStartPostCopy")) == 1
    assert outcome.mode == "post-copy"


def test_abort_in_post_copy_refused():
    dom = Dom([running(1), running(1)] + [running(1)] * 5 + [Dom.complete])
    mon, worker = make_monitor(dom, post_copy=True)
    mon.start()
    mon.request("force_complete")
    fut_abort = None
    # let the switch happen, then ask for an abort from "another thread"
    orig = dom.migrateStartPostCopy

    def switch(flags=0):
        nonlocal fut_abort
        orig(flags)
        fut_abort = mon.request("abort")

    dom.migrateStartPostCopy = switch
    outcome = mon.run()
    assert outcome.status == "completed"
    with pytest.raises(exception.AbortFailed, match="post-copy"):
        fut_abort.result(1)
    assert not dom.called("abortJob")


def test_requests_after_the_end_raise_no_active_migration():
    dom = Dom([running(1), Dom.complete])
    mon, worker = make_monitor(dom)
    run(mon, worker)
    for kind in ("abort", "force_complete"):
        with pytest.raises(exception.NoActiveMigration):
            mon.request(kind).result(1)


@pytest.mark.parametrize(
    "error",
    [
        LibvirtError(c.VIR_ERR_NO_DOMAIN, "Domain not found"),
        LibvirtError(c.VIR_ERR_OPERATION_INVALID, "domain is not running"),
        LibvirtError(c.VIR_ERR_INTERNAL_ERROR, "migration was active, but no RAM info was set"),
    ],
)
def test_benign_job_stats_errors(error):
    dom = Dom([running(1), error, error, running(2), Dom.complete])
    outcome = run(*make_monitor(dom))
    assert outcome.status == "completed" and outcome.monitor_error is None
    assert not dom.called("abortJob")


def test_no_support_falls_back_to_job_info():
    dom = Dom([LibvirtError(c.VIR_ERR_NO_SUPPORT, "not supported")])
    mon, worker = make_monitor(dom)
    mon.start()

    def finish_later():
        threading.Event().wait(0.3)
        dom.state_value = None
        dom.finish.set()

    threading.Thread(target=finish_later).start()
    outcome = mon.run()
    assert outcome.status == "completed"
    assert dom.called("jobInfo")


def test_persistent_stats_error_aborts_then_reports():
    err = LibvirtError(c.VIR_ERR_INTERNAL_ERROR, "unexpected failure")
    dom = Dom([running(1)] + [err] * 10)
    outcome = run(*make_monitor(dom))
    assert dom.called("abortJob")
    assert outcome.status == "failed"  # a monitor failure is not a user cancel
    assert "jobStats failed 5 times" in outcome.monitor_error


def test_transient_stats_errors_tolerated():
    err = LibvirtError(c.VIR_ERR_INTERNAL_ERROR, "unexpected failure")
    dom = Dom([running(1), err, err, err, running(2), err, running(2), Dom.complete])
    outcome = run(*make_monitor(dom))
    assert outcome.status == "completed" and outcome.monitor_error is None


def test_failed_downtime_update_is_retried():
    dom = Dom([running(1), running(1), running(1), Dom.complete])
    calls = []

    def set_downtime(ms, flags=0):
        calls.append(ms)
        if len(calls) == 1:
            raise LibvirtError(c.VIR_ERR_INTERNAL_ERROR, "busy")

    dom.migrateSetMaxDowntime = set_downtime
    outcome = run(*make_monitor(dom))
    assert calls == [50, 50]
    assert [a.ok for a in outcome.actions if a.action == "set_max_downtime"] == [False, True]


def test_suspended_guest_resumed_when_migration_fails():
    dom = Dom([running(1)] * 3 + [Dom.fail])
    mon, worker = make_monitor(dom)
    mon.start()
    mon.request("force_complete")
    outcome = mon.run()
    assert outcome.status == "failed"
    assert dom.called("suspend") and dom.called("resume")
    assert any("resumed" in n for n in outcome.notes)


def test_progress_callback_error_is_reported_not_fatal():
    def boom(progress):
        raise RuntimeError("hook exploded")

    dom = Dom([running(1), running(2), Dom.complete])
    outcome = run(*make_monitor(dom, on_progress=boom))
    assert outcome.status == "completed"
    assert any("hook exploded" in n for n in outcome.notes)


def test_hanging_abort_is_bounded_by_watchdog():
    dom = Dom([running(1)] * 200)
    dom.abort_blocks = 2.0
    mon, worker = make_monitor(dom, abort_timeout=0.2)
    mon.start()
    fut = mon.request("abort")
    threading.Timer(1.0, dom.finish.set).start()  # the job ends on its own later
    outcome = mon.run()
    with pytest.raises(exception.AbortFailed, match="did not return within 0.2 s"):
        fut.result(1)
    (abort,) = [a for a in outcome.actions if a.action == "abort"]
    assert abort.ok is False and "did not return" in abort.error


def test_progress_reported_every_interval_and_monotonic():
    seen = []
    script = [running(1, remaining=r * GiB // 10) for r in (30, 25, 28, 20, 26, 15)] * 5
    dom = Dom(script + [Dom.complete])
    outcome = run(*make_monitor(dom, on_progress=seen.append))
    percents = [p.percent for p in seen]
    assert percents == sorted(percents) and all(p < 100 for p in percents)
    assert len(seen) >= 2
    assert outcome.progress.percent == 100


@pytest.mark.parametrize(
    ("status", "safe"),
    [("completed", False), ("failed", True), ("cancelled", True), ("timed_out", True),
     ("stalled", True), ("postcopy_failed", False), ("unknown", False)],
)
def test_rollback_safe_only_when_the_guest_stays_on_the_source(status, safe):
    outcome = Outcome(status=status, mode=None, total_seconds=0.0, downtime_ms=None,
                              passes=0)
    assert outcome.rollback_safe is safe
