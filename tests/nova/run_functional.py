"""Run Nova 34.0.0's own functional tests with migrator doing every live migration.

Usage (tox -e nova-functional runs it in a virtualenv with ``migrator[nova]``)::

    python tests/nova/run_functional.py [--baseline | --compare] [REGEX]

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
* ``--baseline`` runs the same tests with Nova's own driver (counting its
  migrations); ``--compare`` runs both and fails unless migrator passes every
  test that passes with Nova's own driver.

Fails when a test fails or when no migration went through migrator.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import subprocess
import sys
import tarfile
import tempfile
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
}


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
    marker = tree / ".migrator-test-requirements-installed"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                        "-r", str(tree / "test-requirements.txt"), *EXTRA_REQUIREMENTS],
                       check=True)
        marker.touch()
    return tree


def run_tests(tree: Path, regex: str, mode: str) -> tuple[int, dict[str, str], list[dict]]:
    """(stestr's exit code, {test id: status}, migrations recorded) for one run."""
    fd, record = tempfile.mkstemp(prefix=f"nova-{mode}-", suffix=".jsonl")
    os.close(fd)
    env = dict(os.environ, **TEST_ENV, MIGRATOR_NOVA_HARNESS=mode, MIGRATOR_NOVA_RECORD=record)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE / "harness"), str(ROOT), os.environ.get("PYTHONPATH")) if p)
    print(f"--- Nova {NOVA_VERSION} functional tests, driver: {mode}, filter: {regex}",
          flush=True)
    rc = subprocess.run([sys.executable, "-m", "stestr", "--test-path=./nova/tests/functional",
                         "run", regex], cwd=tree, env=env).returncode
    results = _last_results(tree, env)
    with open(record) as f:
        migrations = [json.loads(line) for line in f if line.strip()]
    os.unlink(record)
    return rc, results, migrations


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


def report(mode: str, results: dict[str, str], migrations: list[dict]) -> None:
    counts = collections.Counter(results.values())
    print(f"=== driver {mode}: {len(results)} tests: " + ", ".join(
        f"{n} {status}" for status, n in sorted(counts.items())))
    statuses = collections.Counter(m["status"] for m in migrations)
    print(f"=== driver {mode}: {len(migrations)} live migrations went through "
          f"{'migrator' if mode == 'migrator' else 'Nova own driver'}"
          + (f" ({', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))})"
             if migrations else ""), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("regex", nargs="?", default=DEFAULT_REGEX,
                        help="stestr filter (default: the 31 live-migration tests)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--baseline", action="store_true",
                       help="run with Nova's own libvirt driver instead")
    which.add_argument("--compare", action="store_true",
                       help="run with Nova's driver, then migrator's; compare the results")
    parser.add_argument("--cache", type=Path, default=ROOT / ".nova-src",
                        help="where Nova's source distribution is unpacked")
    args = parser.parse_args(argv)
    tree = nova_source(args.cache)
    modes = ["nova", "migrator"] if args.compare else ["nova" if args.baseline else "migrator"]
    runs = {}
    for mode in modes:
        runs[mode] = run_tests(tree, args.regex, mode)
        report(mode, runs[mode][1], runs[mode][2])
    failed = False
    if "migrator" in runs:
        rc, results, migrations = runs["migrator"]
        if not any(m["status"] != "not started" for m in migrations):
            print("=== FAIL: no live migration went through migrator")
            failed = True
        failed = failed or rc != 0 or not results
    if args.compare:
        base = {t for t, s in runs["nova"][1].items() if s == "success"}
        ours = {t for t, s in runs["migrator"][1].items() if s == "success"}
        lost = sorted(base - ours)
        print(f"=== compare: {len(base)} pass with Nova's driver, {len(ours)} with migrator's; "
              f"{len(lost)} pass only with Nova's" + "".join(f"\n    {t}" for t in lost))
        failed = failed or bool(lost)
    elif args.baseline:
        failed = runs["nova"][0] != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
