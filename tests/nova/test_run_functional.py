"""The verdict of the Nova functional runner (tests/nova/run_functional.py): what fails it.

Pure: no Nova, no stestr; the runs are described by hand.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "run_functional", Path(__file__).with_name("run_functional.py"))
run_functional = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_functional)


def run(mode, threads="eventlet", migrations=("completed",), **results):
    r = run_functional.Run(mode, threads)
    r.expected = ["t1", "t2"]
    r.results = results or {"t1": "success", "t2": "success"}
    r.migrations = [{"status": s} for s in migrations]
    return r


def test_all_passing_through_migrator_is_green():
    assert run_functional.verdict([run("migrator"), run("migrator", "native")], False) == []


def test_a_failing_test_fails_the_run():
    (problem,) = run_functional.verdict([run("migrator", t1="fail", t2="success")], False)
    assert "1 test(s) failed: t1" in problem


def test_a_test_that_never_ran_is_a_failure():
    (problem,) = run_functional.verdict([run("migrator", t1="success")], False)
    assert "failed: t2" in problem


def test_a_run_in_which_no_migration_went_through_migrator_fails():
    for migrations in ((), ("not started",)):
        (problem,) = run_functional.verdict([run("migrator", migrations=migrations)], False)
        assert "no live migration went through migrator" in problem


def test_no_test_at_all_fails():
    empty = run("migrator")
    empty.results = {}
    assert run_functional.verdict([empty], False)


def test_compare_fails_on_a_test_that_passes_only_with_novas_driver():
    base, ours = run("nova", migrations=()), run("migrator", t1="success", t2="fail")
    (problem,) = run_functional.verdict([base, ours], True)
    assert "pass only with Nova's driver" in problem


def test_compare_accepts_a_test_that_fails_with_both_drivers():
    base = run("nova", migrations=(), t1="success", t2="fail")
    ours = run("migrator", t1="success", t2="fail")
    assert run_functional.verdict([base, ours], True) == []


def test_compare_is_per_threading_mode():
    runs = [run("nova", migrations=()), run("migrator"),
            run("nova", "native", migrations=()), run("migrator", "native", t1="success",
                                                       t2="fail")]
    (problem,) = run_functional.verdict(runs, True)
    assert problem.startswith("native:")


def test_the_stall_watch_finds_stestr_workers_under_a_parent():
    assert run_functional._pid_and_parent("123 (py (x) y) S 45 1 1") == (123, 45)


def test_a_stuck_worker_is_killed_and_the_output_echoed(monkeypatch, capsys):
    import subprocess
    import sys

    monkeypatch.setattr(run_functional, "STALL_SECONDS", 3)
    worker = ("import time, sys; print('{0} nova.t1 [1.0s] ... ok', flush=True); "
              "time.sleep(600)")
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys; subprocess.run([sys.executable, '-c', sys.argv[1], "
         "'subunit_runner'])", worker],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_functional.watch(parent)
    out = capsys.readouterr().out
    assert "{0} nova.t1 [1.0s] ... ok" in out
    assert "killing stuck stestr worker(s)" in out


class FakeStestr:
    """Answers each run with the given statuses; records what was asked."""

    def __init__(self, *answers):
        self.answers, self.calls = list(answers), []

    def run(self, *args):
        if "--load-list" in args:
            with open(args[args.index("--load-list") + 1]) as f:
                args = (*args, sorted(f.read().split()))
        self.calls.append(args)
        return self.answers.pop(0)


def test_a_stuck_workers_tests_run_together_then_each_failure_alone():
    r = run_functional.Run("migrator", "native")
    r.expected = ["t1", "t2", "t3", "t4"]
    r.results = {"t1": "success", "t2": "fail"}  # t3, t4: the stuck worker never got to them
    stestr = FakeStestr({"t3": "success", "t4": "fail"}, {"t2": "success"}, {"t4": "success"})
    run_functional.rerun(stestr, r)
    together, alone_t2, alone_t4 = stestr.calls
    assert together[:2] == ("--concurrency", "1") and together[-1] == ["t3", "t4"]
    assert (alone_t2, alone_t4) == (("--no-discover", "t2"), ("--no-discover", "t4"))
    assert r.failed() == [] and r.reruns == {"t2": "success", "t3": "success", "t4": "success"}


def test_a_test_that_never_passes_stays_failed():
    r = run_functional.Run("migrator", "native")
    r.expected = ["t1"]
    r.results = {}
    run_functional.rerun(FakeStestr({}, {}), r)
    assert r.failed() == ["t1"] and r.reruns == {"t1": "not run"}
