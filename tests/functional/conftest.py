"""pytest plumbing for the functional tests: two real libvirt daemons per session.

* ``rig``: started once per session (mode from ``MIGRATOR_RIG_MODE``, default loopback).
* ``netns_rig``: a rig in netns mode (link cut/shape); the same object as ``rig`` when
  ``MIGRATOR_RIG_MODE=netns``, otherwise a second pair of daemons started on first use.
* ``tls_rig``: a netns-mode rig with a test CA, host certificates and libvirtd TLS listeners
  (``Rig(tls=True)``), base dir ``<MIGRATOR_RIG_BASE>-tls``; started on first use.
* After every test a daemon that died is started again (the test that saw it die errors in
  its teardown, the later ones do not), then the guests of every started rig are destroyed
  and undefined.

If a rig cannot start, the tests that need it are skipped with the reason, or fail with it
when ``MIGRATOR_REQUIRE_RIG=1`` (CI), so a missing rig can never pass silently.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.rig import DEFAULT_BASE, Rig, RigError

_STARTED: dict[str, Rig] = {}
_CAPS_CACHE: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "functional: needs two real libvirt daemons (tests/functional)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.functional)


def _caps_cache() -> Path:
    """One QEMU capability cache for the session: the second rig starts in 0.2 s, not 4 s.
    A fresh temp dir (removed at exit) unless MIGRATOR_RIG_CAPS_CACHE names a lasting one."""
    if not _CAPS_CACHE:
        env = os.environ.get("MIGRATOR_RIG_CAPS_CACHE")
        if env:
            _CAPS_CACHE.append(Path(env))
        else:
            tmp = Path(tempfile.mkdtemp(prefix="migrator-caps-"))
            atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # also after ^C
            _CAPS_CACHE.append(tmp)
    return _CAPS_CACHE[0]


def _start(mode: str, key: str | None = None, **kwargs: object) -> Rig:
    key = key or mode
    rig = Rig(mode=mode, caps_cache=_caps_cache(), **kwargs)  # type: ignore[arg-type]
    try:
        rig.start()
    except (RigError, OSError) as e:
        msg = f"functional test rig ({key}) cannot start: {e}"
        if os.environ.get("MIGRATOR_REQUIRE_RIG") == "1":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    _STARTED[key] = rig
    return rig


def _stop(mode: str) -> None:
    rig = _STARTED.pop(mode, None)
    if rig is not None:
        rig.stop()
    if not _STARTED and _CAPS_CACHE and not os.environ.get("MIGRATOR_RIG_CAPS_CACHE"):
        shutil.rmtree(_CAPS_CACHE.pop(), ignore_errors=True)


@pytest.fixture(scope="session")
def rig() -> Iterator[Rig]:
    mode = os.environ.get("MIGRATOR_RIG_MODE", "loopback")
    r = _start(mode)
    yield r
    _stop(mode)


@pytest.fixture(scope="session")
def netns_rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    if os.environ.get("MIGRATOR_RIG_MODE") == "netns":
        yield request.getfixturevalue("rig")
        return
    r = _start("netns")
    yield r
    _stop("netns")


@pytest.fixture(scope="session")
def tls_rig() -> Iterator[Rig]:
    r = _start("netns", "tls", base=DEFAULT_BASE + "-tls", tls=True)
    yield r
    _stop("tls")


@pytest.fixture(autouse=True)
def _clean_guests() -> Iterator[None]:
    """Leave both hosts empty for the next test (also after a failure)."""
    yield
    revived = [msg for r in list(_STARTED.values()) for msg in r.revive()]
    for r in list(_STARTED.values()):
        r.cleanup_guests()
    if revived:  # this test's teardown fails, and only this one
        pytest.fail("a libvirt daemon of the rig died during this test:\n"
                    + "\n".join(revived), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # noqa: ANN201
    """On failure, attach the daemons' and guests' log tails to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for mode, r in _STARTED.items():
            try:
                rep.sections.append((f"rig ({mode}) logs", r.diagnostics()))
            except Exception as e:  # noqa: BLE001 - diagnostics must not mask the failure
                rep.sections.append((f"rig ({mode}) logs", f"unavailable: {e}"))
