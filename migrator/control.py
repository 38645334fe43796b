"""The monitor's hands: requests, abortJob behind a watchdog, the policy's actions.

Requests (abort, force-complete, stop) come from any thread and are served in
the monitor's.  Every call that changes the job goes through :class:`Controls`, which records
it (:class:`~migrator.journal.Journal`) and keeps what was done in the
migration's :class:`~migrator.classify.Conduct`: who asked for an abort, whether
libvirt accepted it, whether the guest was paused, whether post-copy began.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from migrator import concurrency, constants, exception
from migrator._libvirt import connection_lost, error_code, error_message
from migrator.classify import AbortBy, CallEnd, Conduct
from migrator.concurrency import Worker
from migrator.journal import Journal
from migrator.policy import Action, ActionKind, Policy

# Who wins when several asked for an abort: the status names the strongest.
_ABORT_RANK = (AbortBy.MONITOR, AbortBy.POLICY, AbortBy.USER, AbortBy.TIMEOUT)


class Request:
    """abort / force_complete / stop, from another thread; the future says what became of it."""

    __slots__ = ("kind", "future")

    def __init__(self, kind: str):
        self.kind = kind
        self.future: Future[bool] = Future()


class Controls:
    """Requests from other threads, and every call that changes the job."""

    def __init__(self, *, domain: Callable[[], Any], reconnect: Callable[[str], bool],
                 now: Callable[[], float], conduct: Conduct, journal: Journal, policy: Policy,
                 abort_timeout: float, worker: Worker | None,
                 may_run: Callable[[], bool], on_post_copy: Callable[[], None],
                 ours_now: Callable[[], bool]):
        self._domain, self._reconnect, self._now = domain, reconnect, now
        self.conduct, self.journal, self.policy = conduct, journal, policy
        self.abort_timeout = abort_timeout
        self.abort_req: Request | None = None  # the user's abort, until libvirt answers
        self.abort_error: str | None = None  # why the last abortJob was refused
        self.stopping = False  # the service stops: settle as soon as possible
        self.policy_fed = False  # the policy has had a sample of the transfer
        self._worker, self._may_run, self._on_post_copy = worker, may_run, on_post_copy
        self._ours_now = ours_now  # reads the job: is the one running now ours?
        self._requests: collections.deque[Request] = collections.deque()
        self._lock = threading.Lock()
        self._closed = False

    def request(self, kind: str) -> Future[bool]:
        req = Request(kind)
        with self._lock:
            if self._closed:
                req.future.set_exception(
                    exception.NoActiveMigration(f"the migration has already ended ({kind})"))
                return req.future
            self._requests.append(req)
        return req.future

    def close(self) -> None:
        """The migration settled: every request still open is answered."""
        with self._lock:
            self._closed = True
            pending = list(self._requests)
            self._requests.clear()
        for req in pending:
            req.future.set_exception(exception.NoActiveMigration("the migration has ended"))
        self.resolve_abort(
            exception.NoActiveMigration("the migration ended before the abort took effect"))

    def serve(self) -> None:
        """Handle the queued requests (in the monitor's thread)."""
        while True:
            with self._lock:
                if not self._requests:
                    return
                req = self._requests.popleft()
            if req.kind == "abort":
                self._serve_abort(req)
            elif req.kind == "stop":
                self._serve_stop(req)
            else:
                self._serve_force_complete(req)

    def _serve_stop(self, req: Request) -> None:
        if self._worker is not None and self._worker.cancel_before_start():
            self.conduct.call = CallEnd.NONE
            self.conduct.cancelled_before_start = True
        self.stopping = True
        req.future.set_result(True)

    def _serve_force_complete(self, req: Request) -> None:
        if not self._may_run():
            req.future.set_exception(exception.NoActiveMigration("the migration has ended"))
            return
        actions = self.policy.request_force_complete(self._now())
        for action in actions:
            self.execute(action)
        # True: acted on, or kept by the policy until the job's first transfer sample
        req.future.set_result(bool(actions) or not self.policy_fed)

    def _serve_abort(self, req: Request) -> None:
        if self._worker is not None and self._worker.cancel_before_start():
            self.conduct.call = CallEnd.NONE
            self.conduct.cancelled_before_start = True
            self.set_abort(AbortBy.USER, "abort requested")
            self.journal.record(ActionKind.ABORT, None, "cancelled before the job started", True,
                                None, self._now())
            req.future.set_result(True)
            return
        if not self._may_run():
            req.future.set_exception(exception.NoActiveMigration("the migration has ended"))
            return
        if self.in_post_copy():
            msg = "cannot abort: the migration is in post-copy (the guest runs on the destination)"
            self.journal.note(msg)
            req.future.set_exception(exception.AbortFailed(msg))
            return
        self.set_abort(AbortBy.USER, "abort requested")
        self.abort_req = req
        self.abort_job("abort requested", record=True)

    def set_abort(self, by: AbortBy, reason: str) -> None:
        current = self.conduct.abort_by
        if current is None or _ABORT_RANK.index(by) > _ABORT_RANK.index(current):
            self.conduct.abort_by, self.conduct.abort_reason = by, reason

    def abort_job(self, reason: str, record: bool) -> bool:
        """abortJob with a watchdog; a 'no job yet' refusal leaves the abort pending.

        Never on a job that is not ours: the request then waits for our job.
        The error of a refusal is kept in ``abort_error``.
        """
        self.abort_error = None
        if not self._ours_now():
            self.journal.once("abort held back: the running job is not ours", self._now())
            self.abort_error = "the running job is not ours"
            return False
        finished, result = concurrency.call_with_timeout(
            self._domain().abortJob, self.abort_timeout, "migrator-abort")
        if not finished:
            return self._refused(
                reason, record, f"abortJob did not return within {self.abort_timeout:g} s")
        if isinstance(result, BaseException):
            text = error_message(result)
            if connection_lost(result):
                self._reconnect("abortJob")
            if (error_code(result) == constants.VIR_ERR_OPERATION_INVALID
                    and "no job" in text.lower()):
                self.abort_error = "no job yet"
                if record:  # not there yet (or any more): retried on the next running sample
                    self.journal.record(ActionKind.ABORT, None, reason + " (job not started "
                                        "yet; retried when it runs)", True, None, self._now())
                return False
            return self._refused(reason, record, text)
        self.conduct.abort_accepted = True
        if record:
            self.journal.record(ActionKind.ABORT, None, reason, True, None, self._now())
        self.resolve_abort(True)
        return True

    def _refused(self, reason: str, record: bool, error: str) -> bool:
        self.abort_error = error
        if record:
            self.journal.record(ActionKind.ABORT, None, reason, False, error, self._now())
        self.resolve_abort(exception.AbortFailed(error))
        return False

    def resolve_abort(self, result: bool | BaseException) -> None:
        req, self.abort_req = self.abort_req, None
        if req is None:
            return
        if isinstance(result, BaseException):
            req.future.set_exception(result)
        else:
            req.future.set_result(result)

    def execute(self, action: Action) -> None:
        queue = [action]
        while queue:
            act = queue.pop(0)
            ok, error = self._call(act)
            self.journal.record(act.kind, act.value, act.reason, ok, error, act.at)
            queue.extend(self.policy.action_result(act, ok, error, self._now()))
        if self.policy.in_post_copy:
            self.mark_post_copy()

    def _call(self, action: Action) -> tuple[bool, str | None]:
        dom = self._domain()
        kind = action.kind
        try:
            if kind is ActionKind.SET_MAX_DOWNTIME:
                dom.migrateSetMaxDowntime(int(action.value or 0), 0)
            elif kind is ActionKind.SET_MAX_SPEED:
                dom.migrateSetMaxSpeed(int(action.value or 0), 0)
            elif kind is ActionKind.START_POST_COPY:
                dom.migrateStartPostCopy(0)
            elif kind is ActionKind.SUSPEND:
                dom.suspend()
                self.conduct.suspended = True
            elif kind is ActionKind.ABORT:
                return self._policy_abort(action)
            return True, None
        except Exception as exc:  # noqa: BLE001 - libvirtError: reported to the policy
            return False, error_message(exc)

    def _policy_abort(self, action: Action) -> tuple[bool, str | None]:
        if self.in_post_copy():
            return False, "the migration is in post-copy; it is never aborted"
        if not self.abort_job(action.reason, record=False):
            return False, self.abort_error or "abortJob failed"
        self.set_abort(AbortBy.TIMEOUT if action.timeout else AbortBy.POLICY, action.reason)
        return True, None

    def in_post_copy(self) -> bool:
        return self.conduct.post_copy or self.policy.in_post_copy

    def post_copy_seen(self) -> None:
        """The job switched to post-copy: record it and tell the policy."""
        self.policy.post_copy_started(self._now())
        self.mark_post_copy()

    def mark_post_copy(self) -> None:
        """Record the switch to post-copy; the caller's hook hears of it once."""
        if not self.conduct.post_copy:
            self.conduct.post_copy = True
            self._on_post_copy()

