"""The monitor loop: read the job, ask the policy, execute its actions, settle the outcome.

This is the I/O half of the monitor (the decisions live in
:mod:`migrator.policy`).  One :class:`Monitor` follows one migration on its
own libvirt connection (libvirt 9.0's client can hang when a thread calls the
API on a connection another thread has blocked in ``migrateToURI3``).  Its
rules for not losing the guest:

* the outcome follows what libvirt did, never what the monitor hoped: a
  ``migrateToURI3`` error is checked against the domain's state before the
  migration is called failed (a dropped client connection does not stop a
  peer-to-peer migration);
* any error the monitor cannot handle aborts the job first, then is reported;
* nothing is ever aborted once the job is in post-copy;
* ``abort()`` and ``force_complete()`` wake the loop at once, at any time,
  also before the job has started.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any

from oslo_log import log as logging

from migrator import concurrency, exception
from migrator import constants as c
from migrator._libvirt import error_code, error_message, shut_off_by_migration
from migrator.clock import Clock
from migrator.jobstats import JobSample, StatsError, classify_stats_error
from migrator.policy import Action, ActionKind, Policy, Tunables
from migrator.progress import Progress, ProgressTracker

LOG = logging.getLogger(__name__)

COMPLETED = "completed"
CANCELLED = "cancelled"  # by the user (abort())
TIMED_OUT = "timed_out"  # the completion timeout's abort
STALLED = "stalled"  # the policy gave up early on a migration that cannot converge
FAILED = "failed"
# The link failed after the switch to post-copy: the guest runs on the destination
# but part of its memory is still on the source.  Never rolled back; resumable.
POSTCOPY_FAILED = "postcopy_failed"
# Where the guest runs could not be established before the monitor's bound ran out
# (a daemon unreachable, a job that never ended): the caller must not roll back.
UNKNOWN = "unknown"
# The only outcomes after which the guest is known to run on the source with no job
# left: a caller may clean up the destination (Nova's rollback) after these alone.
ROLLBACK_SAFE = frozenset({FAILED, CANCELLED, TIMED_OUT, STALLED})

MODE_PRE_COPY = "pre-copy"
MODE_POST_COPY = "post-copy"
MODE_PAUSED = "paused"

# Consecutive jobStats failures tolerated before the monitor gives up (and aborts).
MAX_STATS_ERRORS = 5
# Reconnection attempts for a dropped monitor connection, one per poll.
MAX_RECONNECTS = 5


@dataclass(frozen=True)
class ActionRecord:
    """An action the loop executed, and how it went."""

    at: float
    action: str
    value: int | float | None
    reason: str
    ok: bool = True
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Outcome:
    """How one migration ended, as the caller's callbacks and the CLI see it."""

    status: str  # completed | cancelled | timed_out | stalled | failed | postcopy_failed | unknown
    mode: str | None  # pre-copy | post-copy | paused | None (no switchover)
    total_seconds: float
    downtime_ms: int | None
    passes: int
    actions: list[ActionRecord] = field(default_factory=list)
    error: str | None = None
    error_code: int | None = None
    monitor_error: str | None = None
    notes: list[str] = field(default_factory=list)
    progress: Progress | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == COMPLETED

    @property
    def rollback_safe(self) -> bool:
        """True when the guest runs on the source and no job is left: cleaning up the
        destination cannot destroy it.  False for ``completed``, ``postcopy_failed``
        and ``unknown`` (the guest may run only on the destination)."""
        return self.status in ROLLBACK_SAFE

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.status,
            "mode": self.mode,
            "total_seconds": round(self.total_seconds, 3),
            "downtime_ms": self.downtime_ms,
            "passes": self.passes,
            "actions": [a.to_dict() for a in self.actions],
            "error": self.error,
            "error_code": self.error_code,
            "monitor_error": self.monitor_error,
            "notes": list(self.notes),
        }


class Worker:
    """Runs the blocking ``migrateToURI3`` in its own thread and keeps its result."""

    def __init__(self, call: Callable[[], None], name: str):
        self._call = call
        self._name = name
        self.done = threading.Event()
        self.started = False
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._cancelled = False
        self.on_done: Callable[[], None] | None = None

    def start(self) -> bool:
        """Start the call unless it was cancelled first (VDSM's pre-start guard)."""
        with self._lock:
            if self._cancelled:
                self.done.set()
                return False
            self.started = True
        concurrency.spawn(self._run, self._name)
        return True

    def forget(self) -> None:
        """Drop the call (and the libvirt objects it holds) once the job has settled."""
        self._call = lambda: None
        self.on_done = None
        if self.error is not None:
            # Its traceback holds the call's frames, and with them the virDomain and its
            # connection: a settled handle would keep a libvirtd client slot open.
            self.error.__traceback__ = None
            self.error.__context__ = None

    def cancel_before_start(self) -> bool:
        """Prevent the call if it has not started; True if it was prevented."""
        with self._lock:
            if self.started:
                return False
            self._cancelled = True
            return True

    def _run(self) -> None:
        try:
            self._call()
        except BaseException as exc:  # noqa: BLE001 - the monitor settles it
            self.error = exc
        finally:
            self.done.set()
            if self.on_done:
                self.on_done()


class _Request:
    __slots__ = ("kind", "future")

    def __init__(self, kind: str):
        self.kind = kind
        self.future: Future[bool] = Future()


class Monitor:
    """Follows one running migration to its end.

    ``domain`` is the guest on the monitor's own connection; ``reconnect``
    returns a fresh one (or raises) when that connection drops.
    """

    def __init__(
        self,
        *,
        domain: Any,
        reconnect: Callable[[], Any],
        worker: Worker,
        policy: Policy,
        clock: Clock,
        tunables: Callable[[], Tunables],
        progress: ProgressTracker,
        on_progress: Callable[[Progress], None] | None = None,
        on_sample: Callable[[float, JobSample], None] | None = None,
        on_post_copy: Callable[[], None] | None = None,
        on_action: Callable[[ActionRecord], None] | None = None,
        poll_interval: float = 0.5,
        abort_timeout: float = 30.0,
        label: str = "",
    ):
        self.domain = domain
        self._reconnect = reconnect
        self.worker = worker
        self.policy = policy
        self.clock = clock
        self._tunables = tunables
        self.tracker = progress
        self._on_progress = on_progress
        self._on_sample = on_sample
        self._on_post_copy = on_post_copy
        self._on_action = on_action
        self._post_copy_reported = False
        self.poll_interval = poll_interval
        self.abort_timeout = abort_timeout
        self.label = label
        self.wake = threading.Event()
        self._requests: collections.deque[_Request] = collections.deque()
        self._lock = threading.Lock()
        self._finished = False
        self.actions: list[ActionRecord] = []
        self.notes: list[str] = []
        self._start = clock.now()
        self._use_job_info = False
        self._stats_errors = 0
        self._reconnects = 0
        self._abort_pending: _Request | None = None
        self._user_abort = False
        self._timeout_abort = False
        self._policy_abort: str | None = None  # reason of an early abort by the policy
        self._monitor_failed = False
        self._abort_hung = False
        self._aborted = False  # libvirt accepted an abort: the policy has nothing left to do
        self._passes = 0
        self._last_progress: Progress | None = None
        self._seen_running = False
        worker.on_done = self.wake.set

    # -- requests from other threads -----------------------------------------

    def request(self, kind: str) -> Future[bool]:
        """Queue 'abort' or 'force_complete'; the future says what became of it."""
        req = _Request(kind)
        with self._lock:
            if self._finished:
                req.future.set_exception(
                    exception.NoActiveMigration(f"the migration has already ended ({kind})")
                )
                return req.future
            self._requests.append(req)
        self.wake.set()
        return req.future

    def now(self) -> float:
        return self.clock.now() - self._start

    def serve_requests(self) -> None:
        """Handle queued requests now (the driver calls it before starting the job)."""
        self._serve_requests()

    # -- the loop -------------------------------------------------------------

    def run(self) -> Outcome:
        monitor_error: BaseException | None = None
        try:
            self._loop()
        except Exception as exc:  # noqa: BLE001 - settle first, then report
            monitor_error = exc
            self._monitor_failed = True
            LOG.error("%sMonitoring failed, aborting the job: %s", self.label, exc)
            self._abort_until_done(f"the monitor failed: {exc}")
        outcome = self._settle()
        if monitor_error is not None:
            outcome.monitor_error = str(monitor_error)
            if outcome.error is None:
                outcome.error = f"monitor error: {monitor_error}"
        return outcome

    def _abort_until_done(self, reason: str) -> None:
        """Abort (again and again, reconnecting) until migrateToURI3 returns.

        A job left running after the monitor gave up would move the guest behind
        the caller's back (Nova bug 1905944).  The job may still complete in
        spite of the abort: the outcome then follows libvirt's word.
        """
        first = True
        while not self.worker.done.is_set():
            if not self._aborted and not self.policy.in_post_copy:
                try:
                    ok = self._abort_job(reason=reason, record=first)
                except Exception:  # noqa: BLE001 - e.g. a dead connection: reconnect
                    ok = False
                first = False
                if not ok and not self._abort_hung:
                    with contextlib.suppress(Exception):
                        self.domain = self._reconnect()
            self.clock.wait(self.wake, self.poll_interval)
            self.wake.clear()

    def _ask(self, question: Callable[[Any], Any]) -> Any:
        """``question(domain)``, reconnecting first when the connection was lost."""
        for attempt in range(MAX_RECONNECTS + 1):
            try:
                return question(self.domain)
            except Exception as exc:  # noqa: BLE001 - libvirtError
                if not self._connection_lost(exc) or attempt == MAX_RECONNECTS:
                    raise
                with contextlib.suppress(Exception):
                    self.domain = self._reconnect()
                    continue
                self.clock.wait(self.wake, self.poll_interval)
                self.wake.clear()
        raise AssertionError("unreachable")

    def _loop(self) -> None:
        while True:
            self._serve_requests()
            if self.worker.done.is_set():
                if self.worker.error is None or not self._job_still_running():
                    return
            else:
                self._poll_once()
            self._drain_notes()
            self.clock.wait(self.wake, self.poll_interval)
            self.wake.clear()

    def _poll_once(self) -> None:
        sample = self._read_job()
        if sample is None:
            return
        if self._on_sample is not None:
            try:
                self._on_sample(self.now(), sample)
            except Exception as exc:  # noqa: BLE001 - the caller's hook: reported, job goes on
                self._note_once(f"sample hook raised {type(exc).__name__}: {exc}")
        if sample.type == c.VIR_DOMAIN_JOB_UNBOUNDED:
            self._seen_running = True
            self._passes = max(self._passes, sample.memory_iteration)
            if self._abort_pending is not None:
                self._abort_job(reason=self._abort_reason(), record=False)
            if self._aborted:
                return
            now = self.now()
            for action in self.policy.on_sample(sample, now, self._tunables()):
                self._execute(action)
            progress = self.tracker.update(sample, now)
            if progress is not None:
                self._report_progress(progress)
        elif sample.type not in (
            c.VIR_DOMAIN_JOB_NONE,
            c.VIR_DOMAIN_JOB_COMPLETED,
            c.VIR_DOMAIN_JOB_FAILED,
            c.VIR_DOMAIN_JOB_CANCELLED,
        ):
            LOG.warning("%sUnexpected migration job type %d", self.label, sample.type)

    # -- reading the job -------------------------------------------------------

    def _read_job(self) -> JobSample | None:
        try:
            if self._use_job_info:
                sample = JobSample.from_job_info(self.domain.jobInfo())
            else:
                sample = JobSample.from_stats(self.domain.jobStats())
        except Exception as exc:  # noqa: BLE001 - libvirtError, without importing libvirt
            return self._stats_error(exc)
        self._stats_errors = 0
        return sample

    def _stats_error(self, exc: BaseException) -> None:
        code = error_code(exc)
        if code is None:
            raise exc
        kind = classify_stats_error(code, error_message(exc))
        if kind is StatsError.NO_SUPPORT and not self._use_job_info:
            LOG.info("%sjobStats is not supported; falling back to jobInfo", self.label)
            self._use_job_info = True
            return None
        if kind in (StatsError.FINISHING, StatsError.NOT_STARTED):
            self._stats_errors = 0
            if kind is StatsError.FINISHING:
                self._check_post_copy_state()
            return None
        self._stats_errors += 1
        LOG.warning(
            "%sjobStats failed (%d/%d): %s", self.label, self._stats_errors, MAX_STATS_ERRORS,
            error_message(exc),
        )
        if self._connection_lost(exc):
            self._try_reconnect(exc)
        if self._stats_errors >= MAX_STATS_ERRORS:
            raise exception.MonitorError(
                f"jobStats failed {self._stats_errors} times in a row: {error_message(exc)}"
            )
        return None

    @staticmethod
    def _connection_lost(exc: BaseException) -> bool:
        code = error_code(exc)
        text = error_message(exc).lower()
        return code in (c.VIR_ERR_SYSTEM_ERROR, c.VIR_ERR_RPC) or (
            code == c.VIR_ERR_INTERNAL_ERROR
            and ("socket is closed" in text or "connection" in text)
        )

    def _try_reconnect(self, exc: BaseException) -> None:
        if self._reconnects >= MAX_RECONNECTS:
            return
        self._reconnects += 1
        try:
            self.domain = self._reconnect()
        except Exception as again:  # noqa: BLE001
            LOG.warning("%sReconnecting the monitor failed: %s", self.label, again)
            return
        LOG.info("%sMonitor connection re-opened after: %s", self.label, error_message(exc))
        self._stats_errors = 0

    def _check_post_copy_state(self) -> None:
        """jobStats is refused once the source has stopped: is it post-copy?"""
        if self.policy.in_post_copy:
            return
        try:
            state, reason = self.domain.state()[:2]
        except Exception:  # noqa: BLE001 - the domain may be gone: completion
            return
        if state == c.VIR_DOMAIN_PAUSED and reason == c.VIR_DOMAIN_PAUSED_POSTCOPY:
            self.policy.post_copy_started(self.now())
            self._report_post_copy()

    def _job_still_running(self) -> bool:
        """After migrateToURI3 raised: does the job go on without the client?"""
        if self._user_abort or self._timeout_abort or self._policy_abort:
            return False
        if self._post_copy_failed():  # the paused job stays, but nothing moves any more
            return False
        try:
            sample = JobSample.from_stats(self._ask(lambda d: d.jobStats()))
        except Exception as exc:  # noqa: BLE001
            if self._connection_lost(exc):
                raise exception.MonitorError(
                    f"lost the connection to the source libvirt and could not reconnect: "
                    f"{error_message(exc)}") from exc
            code = error_code(exc)
            if code is not None and classify_stats_error(code, error_message(exc)) in (
                StatsError.FINISHING, StatsError.NOT_STARTED
            ):
                return self._still_finishing()
            return False
        if sample.type == c.VIR_DOMAIN_JOB_UNBOUNDED:
            self._note_once("migrateToURI3 returned an error but the job goes on in libvirt; "
                            "following it to its end")
            return True
        return False

    # -- executing -------------------------------------------------------------

    def _serve_requests(self) -> None:
        while True:
            with self._lock:
                if not self._requests:
                    return
                req = self._requests.popleft()
            if req.kind == "abort":
                self._serve_abort(req)
            else:
                self._serve_force_complete(req)

    def _serve_force_complete(self, req: _Request) -> None:
        if self.worker.done.is_set():
            req.future.set_exception(exception.NoActiveMigration("the migration has ended"))
            return
        actions = self.policy.request_force_complete(self.now())
        for action in actions:
            self._execute(action)
        req.future.set_result(bool(actions) or not self._seen_running)

    def _serve_abort(self, req: _Request) -> None:
        if self.worker.cancel_before_start():
            self._user_abort = True
            self._record(ActionKind.ABORT, None, "cancelled before the job started", True)
            req.future.set_result(True)
            return
        if self.worker.done.is_set():
            req.future.set_exception(exception.NoActiveMigration("the migration has ended"))
            return
        if self.policy.in_post_copy:
            msg = "cannot abort: the migration is in post-copy (the guest runs on the destination)"
            self._note(msg)
            req.future.set_exception(exception.AbortFailed(msg))
            return
        self._user_abort = True
        self._abort_pending = req
        self._abort_job(reason="abort requested", record=True)

    def _abort_reason(self) -> str:
        return "completion timeout" if self._timeout_abort else "abort requested"

    def _abort_job(self, reason: str, record: bool) -> bool:
        """abortJob with a watchdog; a 'no job yet' refusal leaves the abort pending."""
        domain = self.domain
        finished, result = concurrency.call_with_timeout(
            domain.abortJob, self.abort_timeout, "migrator-abort"
        )
        req = self._abort_pending
        if not finished:
            self._abort_hung = True
            msg = f"abortJob did not return within {self.abort_timeout:g} s"
            LOG.error("%s%s", self.label, msg)
            if record:
                self._record(ActionKind.ABORT, None, reason, False, msg)
            if req is not None:
                self._abort_pending = None
                req.future.set_exception(exception.AbortFailed(msg))
            return False
        if isinstance(result, BaseException):
            text = error_message(result)
            if error_code(result) == c.VIR_ERR_OPERATION_INVALID and "no job" in text.lower():
                # The job is not there yet (or any more): retry on the next running sample.
                if record:
                    self._record(ActionKind.ABORT, None, reason + " (job not started yet; "
                                 "retried when it runs)", True)
                return False
            if record:
                self._record(ActionKind.ABORT, None, reason, False, text)
            if req is not None:
                self._abort_pending = None
                req.future.set_exception(exception.AbortFailed(text))
            return False
        self._aborted = True
        if record:
            self._record(ActionKind.ABORT, None, reason, True)
        if req is not None:
            self._abort_pending = None
            req.future.set_result(True)
        return True

    def _execute(self, action: Action) -> None:
        queue = [action]
        while queue:
            act = queue.pop(0)
            ok, error = self._call(act)
            self._record(act.kind, act.value, act.reason, ok, error, at=act.at)
            if act.kind is ActionKind.ABORT and ok:
                if act.timeout:
                    self._timeout_abort = True
                else:
                    self._policy_abort = act.reason
            queue.extend(self.policy.action_result(act, ok, error, self.now()))
            self._report_post_copy()

    def _call(self, action: Action) -> tuple[bool, str | None]:
        dom = self.domain
        try:
            if action.kind is ActionKind.SET_MAX_DOWNTIME:
                dom.migrateSetMaxDowntime(int(action.value or 0), 0)
                self.tracker.max_downtime_ms = int(action.value or 0)
            elif action.kind is ActionKind.SET_MAX_SPEED:
                dom.migrateSetMaxSpeed(int(action.value or 0), 0)
            elif action.kind is ActionKind.START_POST_COPY:
                dom.migrateStartPostCopy(0)
            elif action.kind is ActionKind.SUSPEND:
                dom.suspend()
            elif action.kind is ActionKind.ABORT:
                if self.policy.in_post_copy:
                    return False, "the migration is in post-copy; it is never aborted"
                if action.timeout:
                    self._timeout_abort = True
                ok = self._abort_job(action.reason, record=False)
                if not ok and self._abort_hung:
                    return False, f"abortJob did not return within {self.abort_timeout:g} s"
                if not ok:
                    self._timeout_abort = False
                    return False, "abortJob failed"
            return True, None
        except Exception as exc:  # noqa: BLE001 - libvirtError: reported to the policy
            return False, error_message(exc)

    def _record(self, kind: ActionKind, value, reason: str, ok: bool, error: str | None = None,
                at: float | None = None) -> None:
        rec = ActionRecord(self.now() if at is None else at, str(kind), value, reason, ok, error)
        self.actions.append(rec)
        if self._on_action is not None:
            try:
                self._on_action(rec)
            except Exception as exc:  # noqa: BLE001 - the caller's hook: reported, job goes on
                self._note_once(f"action hook raised {type(exc).__name__}: {exc}")
        if ok:
            LOG.info("%s%s%s: %s", self.label, kind, "" if value is None else f" {value}", reason)
        else:
            LOG.warning("%s%s failed (%s): %s", self.label, kind, error, reason)

    def _note_once(self, text: str) -> None:
        if text not in self.notes:
            self._note(text)

    def _note(self, text: str) -> None:
        self.notes.append(text)
        LOG.info("%s%s", self.label, text)

    def _drain_notes(self) -> None:
        for note in self.policy.pop_notes():
            self._note(note.text)

    def _report_post_copy(self) -> None:
        """Tell the caller once that the job switched to post-copy (Nova then marks its
        Migration 'running (post-copy)' and activates the destination's ports early)."""
        if self._post_copy_reported or not self.policy.in_post_copy:
            return
        self._post_copy_reported = True
        self.tracker.post_copy = True  # the progress outlook: pages pushed, no convergence
        if self._on_post_copy is None:
            return
        try:
            self._on_post_copy()
        except Exception as exc:  # noqa: BLE001 - the caller's hook: reported, job goes on
            self._note(f"post-copy hook raised {type(exc).__name__}: {exc}")
            LOG.exception("%spost-copy hook failed", self.label)

    def _report_progress(self, progress: Progress) -> None:
        self._last_progress = progress
        LOG.debug("%sprogress %.1f%% (pass %d)", self.label, progress.percent, progress.iteration)
        if self._on_progress is not None:
            try:
                self._on_progress(progress)
            except Exception as exc:  # noqa: BLE001 - reported, the job goes on
                self._note(f"progress callback raised {type(exc).__name__}: {exc}")
                LOG.exception("%sprogress callback failed", self.label)

    # -- settling ----------------------------------------------------------------

    def _settle(self) -> Outcome:
        with self._lock:
            self._finished = True
            pending = list(self._requests)
            self._requests.clear()
        for req in pending:
            req.future.set_exception(exception.NoActiveMigration("the migration has ended"))
        if self._abort_pending is not None:
            self._abort_pending.future.set_exception(
                exception.NoActiveMigration("the migration ended before the abort took effect")
            )
        self._drain_notes()
        err = self.worker.error
        status, error, code = self._status(err)
        mode = None
        if status == POSTCOPY_FAILED:
            mode = MODE_POST_COPY
        elif status == COMPLETED:
            if self.policy.in_post_copy:
                mode = MODE_POST_COPY
            elif getattr(self.policy, "guest_suspended", False):
                mode = MODE_PAUSED
            else:
                mode = MODE_PRE_COPY
        elif getattr(self.policy, "guest_suspended", False):
            self._resume_guest()
        progress = self.tracker.final(self.now(), completed=status == COMPLETED)
        return Outcome(
            status=status,
            mode=mode,
            total_seconds=self.now(),
            downtime_ms=None,
            passes=self._passes,
            actions=list(self.actions),
            error=error,
            error_code=code,
            notes=list(self.notes),
            progress=progress,
        )

    def _status(self, err: BaseException | None) -> tuple[str, str | None, int | None]:
        if err is None:
            if self.worker.started:
                return COMPLETED, None, None
            return CANCELLED, "cancelled before the migration started", None
        code = error_code(err)
        text = error_message(err)
        if self._post_copy_failed():
            return POSTCOPY_FAILED, text, code
        if self.policy.in_post_copy:
            # The guest already runs on the destination: never a rollback.  Either the
            # job finished (the source is gone / shut off by migration), or we cannot
            # tell yet: the driver then follows it up as a failed post-copy.
            if self._guest_left_source():
                return COMPLETED, None, None
            return POSTCOPY_FAILED, text, code
        if self._monitor_failed and not self._user_abort:
            if self._guest_left_source():
                return COMPLETED, None, None
            return FAILED, text, code
        aborted = self._user_abort or self._timeout_abort or self._policy_abort
        if code == c.VIR_ERR_OPERATION_ABORTED or aborted:
            if self._guest_left_source():
                return COMPLETED, None, None
            if self._timeout_abort:
                return TIMED_OUT, text, code
            if self._policy_abort and not self._user_abort:
                return STALLED, f"aborted early: {self._policy_abort}", code
            return CANCELLED, text, code
        if self._guest_left_source():
            LOG.warning(
                "%smigrateToURI3 raised (%s) but the guest has left the source: completed",
                self.label, text,
            )
            self._note(f"migrateToURI3 raised after the guest moved: {text}")
            return COMPLETED, None, None
        return FAILED, text, code

    def _still_finishing(self) -> bool:
        """The job refuses stats: is the source still handing over (paused by migration)?"""
        try:
            state, reason = self._ask(lambda d: d.state())[:2]
        except Exception:  # noqa: BLE001 - gone: settled (moved)
            return False
        return state == c.VIR_DOMAIN_PAUSED and reason in (
            c.VIR_DOMAIN_PAUSED_MIGRATION,
            c.VIR_DOMAIN_PAUSED_POSTCOPY,
        )

    def _post_copy_failed(self) -> bool:
        """Did the job fail after the switch to post-copy (source paused, POSTCOPY_FAILED)?"""
        try:
            state, reason = self._ask(lambda d: d.state())[:2]
        except Exception:  # noqa: BLE001 - gone: not a post-copy failure
            return False
        if state == c.VIR_DOMAIN_PAUSED and reason == c.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED:
            self.policy.post_copy_started(self.now())
            self._report_post_copy()
            return True
        return False

    def _guest_left_source(self) -> bool:
        """Did the guest move although the client saw an error?

        With UNDEFINE_SOURCE the source domain disappears only after success; a
        source domain shut off by migration also means it moved.
        """
        try:
            state, reason = self._ask(lambda d: d.state())[:2]
        except Exception as exc:  # noqa: BLE001
            return error_code(exc) == c.VIR_ERR_NO_DOMAIN
        return shut_off_by_migration(state, reason)

    def _resume_guest(self) -> None:
        """Force-complete paused the guest and the migration did not finish: resume it."""
        try:
            state = self.domain.state()[0]
            if state == c.VIR_DOMAIN_PAUSED:
                self.domain.resume()
                self._note("resumed the guest on the source (it was paused to force completion)")
        except Exception as exc:  # noqa: BLE001
            LOG.warning("%scould not resume the guest on the source: %s", self.label, exc)
