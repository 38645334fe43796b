"""Test harness only: send Nova's functional tests' migrations through migrator, count them.

Python imports ``sitecustomize`` at start-up from ``sys.path``; run_functional.py
puts this directory on ``PYTHONPATH`` of the stestr run and of nothing else.
With ``MIGRATOR_NOVA_HARNESS=migrator`` it does the following once Nova's and
migrator's modules are imported (it imports nothing itself before, so Nova's
choice of eventlet or native threads is not disturbed):

* the redirection: ``nova.virt.driver.load_compute_driver`` loads
  ``migrator.LibvirtDriver`` where a test asks for ``libvirt.LibvirtDriver``,
  through the same loader the ``migrator-nova-compute`` command uses;
* the connections: Nova's fake libvirt keeps each host's guests on one
  connection object, which Nova's tests hand out by mocking
  ``Host.get_connection``; a connection opened anew (as migrator's driver
  opens its own in production, ``connection.open_own_connection``) would be
  an empty fake host.  The harness lends migrator Nova's mocked connection
  instead (the fake's migrateToURI3 returns at once, so the libvirt client
  hang that separate connections avoid cannot happen there);
* the domain's state: Nova's fake ``Domain`` has no ``state()`` (libvirt's
  virDomainGetState, which migrator reads to establish where the guest runs);
  the harness gives it one from the fake's own ``_state``, with reason 0
  (unknown);
* the job a test scripts for Nova's reader: the tests end a migration job on
  the fake (``complete_job()`` / ``fail_job()``, which ``jobStats`` then
  reports), except one (bug 1595962), which mocks ``migrateToURI3`` and Nova's
  own ``Guest.get_job_info`` instead, so that only Nova's reader learns the
  job's end.  migrator reads libvirt (``jobStats``), so the harness lets the
  fake's ``jobStats`` report what that mock reports, once the mocked
  ``migrateToURI3`` has been called: what ``complete_job()`` would have done
  in the test's stub;
* the count: every migration Nova hands to migrator's driver appends one JSON
  line (the outcome) to ``MIGRATOR_NOVA_RECORD``.

With ``MIGRATOR_NOVA_HARNESS=nova`` (the baseline) nothing is redirected and
every migration Nova's own driver starts is counted the same way.  Nova's
tests and Nova's code are not changed.
"""

from __future__ import annotations

import functools
import importlib.abc
import json
import os
import sys

MODE = os.environ.get("MIGRATOR_NOVA_HARNESS", "")
RECORD = os.environ.get("MIGRATOR_NOVA_RECORD", "")


def _record(**fields) -> None:
    line = json.dumps(fields) + "\n"
    # O_APPEND: one write per line, so parallel stestr workers never interleave
    fd = os.open(RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _redirect(module) -> None:
    from migrator.nova import loader

    original = module.load_compute_driver

    @functools.wraps(original)
    def load_compute_driver(virtapi, compute_driver=None):
        name = compute_driver or module.CONF.compute_driver
        if name == loader.NOVA_COMPUTE_DRIVER:
            loader.make_reachable()
            name = loader.COMPUTE_DRIVER
        return original(virtapi, name)

    module.load_compute_driver = load_compute_driver


def _lend_novas_connection(module) -> None:
    module.open_own_connection = module.HostConnection


def _adapt_novas_fake(module) -> None:
    from unittest import mock

    domain = module.Domain
    if not hasattr(domain, "state"):
        domain.state = lambda self, flags=0: [self._state, 0]
    job_stats = domain.jobStats

    @functools.wraps(job_stats)
    def jobStats(self, flags=0):  # noqa: N802 - libvirt's name
        from nova.virt.libvirt import guest

        call = domain.migrateToURI3
        # NonCallableMock: Nova's tests replace mock.Mock itself with an autospec class
        mocks = isinstance(guest.Guest.get_job_info, mock.NonCallableMock) and isinstance(
            call, mock.NonCallableMock)
        if mocks and call.called:
            scripted = guest.Guest(self).get_job_info()  # what Nova's monitor would read
            if isinstance(scripted, guest.JobInfo):
                return {"type": scripted.type}
        return job_stats(self, flags)

    domain.jobStats = jobStats


def _count_migrator(module) -> None:
    original = module.MigrationRun.call_back

    @functools.wraps(original)
    def call_back(self, *args, **kwargs):
        out = self.outcome
        _record(driver="migrator", instance=self.instance.uuid,
                status=out.status if out is not None else "not started",
                flags=out.plan.flags if out is not None and out.plan else None)
        return original(self, *args, **kwargs)

    module.MigrationRun.call_back = call_back


def _count_nova(module) -> None:
    cls = module.LibvirtDriver
    original = cls._live_migration

    @functools.wraps(original)
    def _live_migration(self, context, instance, *args, **kwargs):
        if type(self).__module__.startswith("nova."):
            _record(driver="nova", instance=instance.uuid, status="started")
        return original(self, context, instance, *args, **kwargs)

    cls._live_migration = _live_migration


HOOKS = {
    "migrator": {"nova.virt.driver": _redirect, "migrator.nova.run": _count_migrator,
                 "migrator.nova.connection": _lend_novas_connection,
                 "nova.tests.fixtures.libvirt": _adapt_novas_fake},
    "nova": {"nova.virt.libvirt.driver": _count_nova},
}.get(MODE, {})


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a hook on a module right after it has been imported for the first time."""

    def find_spec(self, fullname, path, target=None):
        hook = HOOKS.get(fullname)
        if hook is None:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        real_exec = spec.loader.exec_module

        def exec_module(module):
            real_exec(module)
            hook(module)

        spec.loader.exec_module = exec_module
        return spec


if HOOKS and RECORD:
    import importlib.util  # noqa: E402 - stdlib only, before anything of Nova's

    sys.meta_path.insert(0, _AfterImport())

if MODE:
    import faulthandler  # noqa: E402 - stdlib only
    import signal  # noqa: E402

    # run_functional.py's stall watch sends SIGUSR1 before it kills a stuck worker:
    # every thread's stack goes to the run's output, to show where it waits
    faulthandler.register(signal.SIGUSR1, all_threads=True)
