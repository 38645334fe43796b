"""A migration's handle: what the caller holds, and the methods the driver moves it with.

The caller controls the migration (``abort()``, ``force_complete()``) and waits
for it (``wait()``) from any thread.  The driver only talks to the handle
through the methods under "for the driver"; the handle never touches libvirt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING

from migrator import exception

if TYPE_CHECKING:
    from migrator.flags import Plan
    from migrator.monitor import Monitor
    from migrator.outcome import MigrationOutcome
    from migrator.progress import Progress


def chain(source: Future[bool], target: Future[bool]) -> None:
    """Resolve ``target`` the way ``source`` resolves."""

    def copy(f: Future[bool]) -> None:
        exc = f.exception()
        if exc is not None:
            target.set_exception(exc)
        else:
            target.set_result(f.result())

    source.add_done_callback(copy)


class MigrationHandle:
    """A running (or queued) migration: control it from any thread, wait for it.

    ``status``: queued, preparing, running, recovering, then the outcome's status.
    """

    def __init__(self, name: str, uuid: str, dest: str,
                 on_abort_before_start: Callable[[MigrationHandle], None] | None = None):
        self.name = name
        self.uuid = uuid
        self.dest = dest
        self.status = "queued"
        self.plan: Plan | None = None
        self.progress: Progress | None = None
        self.outcome: MigrationOutcome | None = None
        self._monitor: Monitor | None = None
        self._on_abort_before_start = on_abort_before_start
        self._cancelled = threading.Event()
        self._ended = False  # the outcome is known: controls are refused from now on
        self._done = threading.Event()  # ... and the callback has run
        self._lock = threading.Lock()
        self._early: list[tuple[str, Future[bool]]] = []

    def __repr__(self) -> str:
        return f"<MigrationHandle {self.name} -> {self.dest} {self.status}>"

    # -- for the caller -------------------------------------------------------------

    def abort(self) -> Future[bool]:
        """Cancel the migration; the guest stays on the source.

        Works before the job starts (it is then never started) and during
        pre-copy; refused in post-copy (the guest already runs on the
        destination).  The future resolves to True once libvirt accepted the
        abort, or raises :class:`~migrator.exception.AbortFailed` /
        :class:`~migrator.exception.NoActiveMigration`.
        """
        return self._control("abort")

    def force_complete(self) -> Future[bool]:
        """Finish now: switch to post-copy when permitted, else pause the guest.

        Runs once; a request before the job runs is kept until it runs.
        """
        return self._control("force_complete")

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> MigrationOutcome | None:
        """The outcome, once settled and the callback has run (None on timeout)."""
        return self.outcome if self._done.wait(timeout) else None

    def _control(self, kind: str) -> Future[bool]:
        with self._lock:
            if self._ended:
                fut: Future[bool] = Future()
                fut.set_exception(exception.NoActiveMigration(f"{self.name}: already ended"))
                return fut
            if self._monitor is not None:
                return self._monitor.request(kind)
            # Not started yet: an abort cancels it; a force-complete waits for the
            # monitor, which hands it to the policy.
            fut = Future()
            self._early.append((kind, fut))
            first_abort = kind == "abort" and not self._cancelled.is_set()
            if first_abort:
                self._cancelled.set()
        if first_abort and self._on_abort_before_start is not None:
            self._on_abort_before_start(self)
        return fut

    # -- for the driver ---------------------------------------------------------------

    def stop(self) -> None:
        """The service stops (``cleanup_host``): the monitor lets go of the job."""
        self._control("stop")

    @property
    def cancelled(self) -> bool:
        """abort() was called before a monitor took the migration over."""
        return self._cancelled.is_set()

    def attach(self, monitor: Monitor) -> None:
        """The monitor takes over: requests made meanwhile go to it, in order."""
        with self._lock:
            self._monitor = monitor
            early, self._early = self._early, []
        for kind, fut in early:
            chain(monitor.request(kind), fut)

    def detach(self) -> None:
        """The job has settled: keep no monitor (nor its libvirt objects)."""
        with self._lock:
            self._monitor = None

    def end(self, outcome: MigrationOutcome, cancelled_before_start: bool = False) -> None:
        """The outcome is known: refuse controls from now on, resolve early ones."""
        with self._lock:
            self._ended = True
            self._monitor = None
            self._on_abort_before_start = None  # a settled handle keeps nothing of the driver
            early, self._early = self._early, []
        self.outcome = outcome
        self.status = outcome.status
        for kind, fut in early:
            if kind == "abort" and cancelled_before_start:
                fut.set_result(True)
            else:
                fut.set_exception(exception.NoActiveMigration(
                    f"{self.name}: {outcome.error or outcome.status}"))

    def released(self) -> None:
        """The callback has run: ``wait()`` returns."""
        self._done.set()
