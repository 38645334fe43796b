"""Run Nova 34.0.0's own functional tests with migrator doing every live migration.

Usage (tox -e nova-functional runs it in a virtualenv with ``migrator[nova]``)::

    python tests/nova/run_functional.py [--baseline | --compare]
        [--threads eventlet|native|both] [--concurrency N] [REGEX]

* Nova's source distribution (the wheel lacks ``etc/nova/api-paste.ini``, which
  every functional test needs) is downloaded with pip and unpacked once into
  ``--cache`` (default ``.nova-src``); its ``test-requirements.txt`` is installed
  with ``openstack-placement`` (as Nova's own tox does) and ``SQLAlchemy<2.1``.
* The tests run unchanged, with stestr, from the source tree.  The redirection
  of ``compute_driver = libvirt.LibvirtDriver`` to migrator's driver and the
  count of migrations are in ``harness/sitecustomize.py``, on the stestr run's
  ``PYTHONPATH`` only.
* REGEX is an stestr filter; without it, the 31 live-migration tests named in
  :data:`DEFAULT_REGEX`.
* ``--threads``: Nova 34 runs on eventlet (its ``functional`` tox environment)
  or on native threads (``functional-py313-threading``), chosen by
  ``OS_NOVA_DISABLE_EVENTLET_PATCHING``; ``both`` (the default) runs the tests
  once each way.  ``--concurrency`` is stestr's number of workers (default:
  one per CPU).
* ``--baseline`` runs the same tests with Nova's own driver (counting its
  migrations); ``--compare`` runs both and fails unless migrator passes every
  test that passes with Nova's own driver.

Fails when a test fails or when no migration went through migrator.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

NOVA_VERSION = "34.0.0"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REGRESSIONS = ("1595962", "1741364", "1888395", "1899835", "1939545", "1944619", "2139351",
               "2152697", "2153425")
DEFAULT_REGEX = (
    r"^nova\.tests\.functional\.(libvirt\.test_(numa_)?live_migration"
    r"|regressions\.test_bug_(" + "|".join(REGRESSIONS) + r"))\."
)
EXTRA_REQUIREMENTS = ("openstack-placement>=9.0.0.0b1", "SQLAlchemy<2.1")
TEST_ENV = {  # as Nova's tox.ini sets them for its functional tests
    "OS_STDOUT_CAPTURE": "1",
    "OS_STDERR_CAPTURE": "1",
    "OS_TEST_TIMEOUT": "160",
    "LC_ALL": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "NOVA_RAISE_ON_GREENLET_LEAK": "True",
}
#: OS_NOVA_DISABLE_EVENTLET_PATCHING for each way Nova 34 runs
THREADS = {"eventlet": "False", "native": "True"}


def nova_source(cache: Path) -> Path:
    """Nova's unpacked source distribution, with its test requirements installed."""
    tree = cache / f"nova-{NOVA_VERSION}"
    if not (tree / "etc" / "nova" / "api-paste.ini").exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "--no-binary", ":all:", f"nova=={NOVA_VERSION}", "-d", tmp],
                           check=True)
            (sdist,) = glob.glob(os.path.join(tmp, f"nova-{NOVA_VERSION}.tar.gz"))
            with tarfile.open(sdist) as tar:
                # the safe extraction filter where this Python has it (3.11.4+)
                kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(cache, **kwargs)
    # The requirements go into this Python's environment, so the note that they are
    # there lives in it too: a recreated virtualenv installs them again.
    marker = Path(sys.prefix) / f".migrator-nova-{NOVA_VERSION}-test-requirements"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                        "-r", str(tree / "test-requirements.txt"), *EXTRA_REQUIREMENTS],
                       check=True)
        marker.touch()
    return tree


class Run:
    """One driver on one way of threading: the tests, what came of them, the migrations."""

    def __init__(self, mode: str, threads: str):
        self.mode, self.threads = mode, threads
        self.expected: list[str] = []  # the test ids the filter selects
        self.results: dict[str, str] = {}  # test id -> subunit status (after any rerun)
        self.reruns: dict[str, str] = {}  # test id -> status on its rerun in its own process
        self.migrations: list[dict] = []  # one per migration the driver was handed
        self.seconds = 0.0

    @property
    def name(self) -> str:
        return f"driver {self.mode}, {self.threads}"

    def passed(self) -> set[str]:
        return {t for t, status in self.results.items() if status == "success"}

    def failed(self) -> list[str]:
        return sorted(set(self.expected or self.results) - self.passed())


class Stestr:
    """stestr in Nova's source tree, with one driver and one way of threading."""

    def __init__(self, tree: Path, env: dict[str, str]):
        self.tree, self.env = tree, env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "stestr", "--test-path=./nova/tests/functional", *args]

    def list(self, regex: str) -> list[str]:
        """The test ids ``regex`` selects."""
        if not (self.tree / ".stestr").is_dir():  # "list" needs the repository "run" creates
            self._check("init")
        out = self._check("list", regex)
        return [line for line in out.splitlines() if line.startswith("nova.")]

    def _check(self, *args: str) -> str:
        done = subprocess.run(self.command(*args), cwd=self.tree, env=self.env,
                              capture_output=True, text=True, check=False)
        if done.returncode:
            sys.exit(f"stestr {' '.join(args)} failed ({done.returncode}):\n"
                     f"{done.stdout[-2000:]}{done.stderr[-4000:]}")
        return done.stdout

    def run(self, *args: str) -> dict[str, str]:
        """Run, echoing stestr's output; the results of this run."""
        watch(subprocess.Popen(self.command("run", *args), cwd=self.tree, env=self.env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        return _last_results(self.tree, self.env)


#: A worker that finishes no test for this long is stuck (Nova's per-test timeout is 160 s)
STALL_SECONDS = 200
_TEST_ENDED = re.compile(r"^\{\d+\} \S+ \[")


def watch(proc: subprocess.Popen) -> int:
    """Echo a stestr run's output; kill its workers when no test ends for STALL_SECONDS.

    Nova 34.0.0's functional fixtures can deadlock a worker for good (with Nova's own
    driver too): ``_run_periodics()`` holds the cell database fixture's read lock while
    it waits for the per-node resource updates it started, which queue for a read lock
    behind a writer (the test thread polling the API) that waits for the first reader.
    The per-test timeout then fires with the writer still queued, and the worker never
    runs another test.  stestr reports the killed worker's test as failed.
    """
    last = [time.monotonic()]

    def echo() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            if _TEST_ENDED.match(line):
                last[0] = time.monotonic()
        sys.stdout.flush()

    echoing = threading.Thread(target=echo, daemon=True)
    echoing.start()
    while proc.poll() is None:
        time.sleep(2)
        if time.monotonic() - last[0] > STALL_SECONDS:
            stuck = _workers(proc.pid)
            print(f"=== no test ended for {STALL_SECONDS} s: killing stuck stestr worker(s) "
                  f"{stuck}", flush=True)
            for pid in stuck:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            last[0] = time.monotonic()
    echoing.join()
    return proc.returncode


def _workers(parent: int) -> list[int]:
    """stestr's worker processes under ``parent`` (Linux /proc)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid, ppid = _pid_and_parent(Path(stat).read_text())
            children[ppid].append(pid)
    found, todo = [], [parent]
    while todo:
        for pid in children.get(todo.pop(), []):
            todo.append(pid)
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"subunit_runner" in cmdline and not cmdline.startswith(b"/bin/sh"):
                    found.append(pid)
    return found


def _pid_and_parent(stat: str) -> tuple[int, int]:
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses
    return int(stat.split(" ", 1)[0]), int(stat.rsplit(")", 1)[1].split()[1])


def run_tests(tree: Path, regex: str, mode: str, threads: str,
              concurrency: int | None = None) -> Run:
    """Nova's tests matching ``regex`` with ``mode``'s driver on ``threads``, then
    :func:`rerun` for the ones that did not pass."""
    run = Run(mode, threads)
    fd, record = tempfile.mkstemp(prefix=f"nova-{mode}-", suffix=".jsonl")
    os.close(fd)
    env = dict(os.environ, **TEST_ENV, MIGRATOR_NOVA_HARNESS=mode, MIGRATOR_NOVA_RECORD=record,
               OS_NOVA_DISABLE_EVENTLET_PATCHING=THREADS[threads])
    # this Python's environment first, as if activated (tox -e nova-functional runs it
    # from the nova environment without activating that)
    env["PATH"] = os.pathsep.join(p for p in (os.path.dirname(sys.executable),
                                              os.environ.get("PATH")) if p)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE / "harness"), str(ROOT), os.environ.get("PYTHONPATH")) if p)
    print(f"--- Nova {NOVA_VERSION} functional tests, {run.name}, filter: {regex}", flush=True)
    stestr = Stestr(tree, env)
    start = time.monotonic()
    run.expected = stestr.list(regex)
    run.results = stestr.run(*(["--concurrency", str(concurrency)] if concurrency else []),
                             regex)
    rerun(stestr, run)
    run.seconds = time.monotonic() - start
    with open(record) as f:
        run.migrations = [json.loads(line) for line in f if line.strip()]
    os.unlink(record)
    return run


def rerun(stestr: Stestr, run: Run) -> None:
    """Run again what did not pass: the tests a stuck worker never started in one
    more worker, one after another; then each test that failed (or still did not
    run) alone in its own process.  Their last status is the one that counts."""
    never_started = [t for t in run.failed() if t not in run.results]
    if never_started:  # a stuck worker's queue: one more worker, one test after another
        print(f"--- running the {len(never_started)} test(s) a stuck worker never started",
              flush=True)
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as load_list:
            load_list.write("".join(f"{t}\n" for t in never_started))
            load_list.flush()
            ran = stestr.run("--concurrency", "1", "--load-list", load_list.name)
        for test in never_started:
            if test in ran:
                run.reruns[test] = run.results[test] = ran[test]
    for test in run.failed():
        print(f"--- rerunning alone, in its own process: {test}", flush=True)
        status = stestr.run("--no-discover", test).get(test, "not run")
        run.reruns[test] = run.results[test] = status


def _last_results(tree: Path, env: dict[str, str]) -> dict[str, str]:
    """{test id: status} of stestr's last run, read from its subunit stream."""
    import subunit
    import testtools

    stream = subprocess.run([sys.executable, "-m", "stestr", "last", "--subunit"], cwd=tree,
                            env=env, capture_output=True, check=False).stdout
    results: dict[str, str] = {}

    def on_test(test: dict) -> None:
        results[test["id"]] = test["status"]

    case = subunit.ByteStreamToStreamResult(_Bytes(stream), non_subunit_name="stdout")
    summary = testtools.StreamToDict(on_test)
    summary.startTestRun()
    case.run(summary)
    summary.stopTestRun()
    return results


class _Bytes:
    def __init__(self, data: bytes):
        import io

        self._buf = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(n)


def report(run: Run) -> None:
    counts = collections.Counter(run.results.values())
    print(f"=== {run.name}: {len(run.results)} tests in {run.seconds:.0f} s: " + ", ".join(
        f"{n} {status}" for status, n in sorted(counts.items())))
    for test, status in run.reruns.items():
        print(f"=== {run.name}: rerun: {test}: {status}")
    statuses = collections.Counter(m["status"] for m in run.migrations)
    print(f"=== {run.name}: {len(run.migrations)} live migrations went through "
          f"{'migrator' if run.mode == 'migrator' else 'Nova own driver'}"
          + (f" ({', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))})"
             if run.migrations else ""), flush=True)


def verdict(runs: list[Run], compare: bool) -> list[str]:
    """What fails the command: a migrator run that migrated nothing, and a failing
    test, or (comparing) a test that passes with Nova's driver but not with migrator's."""
    problems = []
    for run in runs:
        if not run.results:
            problems.append(f"{run.name}: no test ran")
        elif run.failed() and not compare:
            problems.append(f"{run.name}: {len(run.failed())} test(s) failed: "
                            + ", ".join(run.failed()))
        if run.mode == "migrator" and not any(
                m["status"] != "not started" for m in run.migrations):
            problems.append(f"{run.name}: no live migration went through migrator")
    if compare:
        for threads in dict.fromkeys(r.threads for r in runs):
            base, ours = (next(r for r in runs if (r.mode, r.threads) == (mode, threads))
                          for mode in ("nova", "migrator"))
            lost = sorted(base.passed() - ours.passed())
            print(f"=== compare ({threads}): {len(base.passed())} pass with Nova's driver, "
                  f"{len(ours.passed())} with migrator's; {len(lost)} pass only with Nova's"
                  + "".join(f"\n    {t}" for t in lost))
            if lost:
                problems.append(f"{threads}: {len(lost)} test(s) pass only with Nova's driver")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("regex", nargs="?", default=DEFAULT_REGEX,
                        help="stestr filter (default: the 31 live-migration tests)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--baseline", action="store_true",
                       help="run with Nova's own libvirt driver instead")
    which.add_argument("--compare", action="store_true",
                       help="run with Nova's driver, then migrator's; compare the results")
    parser.add_argument("--threads", choices=[*THREADS, "both"], default="both",
                        help="Nova on eventlet, on native threads, or both (the default)")
    parser.add_argument("--concurrency", type=int, default=None, metavar="N",
                        help="stestr workers (default: one per CPU)")
    parser.add_argument("--cache", type=Path, default=ROOT / ".nova-src",
                        help="where Nova's source distribution is unpacked")
    args = parser.parse_args(argv)
    tree = nova_source(args.cache)
    modes = ["nova", "migrator"] if args.compare else ["nova" if args.baseline else "migrator"]
    runs = []
    for threads in THREADS if args.threads == "both" else [args.threads]:
        for mode in modes:
            runs.append(run_tests(tree, args.regex, mode, threads, args.concurrency))
            report(runs[-1])
    problems = verdict(runs, args.compare)
    for problem in problems:
        print(f"=== FAIL: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
