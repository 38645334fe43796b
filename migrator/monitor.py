"""The monitor: follow one migration job, steer it by its policy, establish how it ended.

This is the I/O half (decisions live in :mod:`migrator.policy` and
:mod:`migrator.classify`).  One :class:`Monitor` follows one migration on its
own libvirt connection (libvirt 9.0's client can hang when a thread calls the
API on a connection another thread has blocked in ``migrateToURI3``).  It:

* **follows** the job: reads ``jobStats``, hands running samples of *our* job
  to the policy and executes its actions; a job that began before our call is
  never touched;
* **establishes** how it ended: gathers the facts (:mod:`migrator.facts`) and
  classifies them; while they cannot be had (the source daemon unreachable, a
  hand-over in progress) it looks again with backoff, for at most
  ``establish_timeout`` seconds, then settles ``unknown``; a job that goes on
  after ``migrateToURI3`` returned is followed again;
* keeps its deadlines on the clock: the completion timeout fires and the
  monitor gives up even when ``jobStats`` gives nothing usable;
* aborts the job first when it fails itself, and never aborts in post-copy.
"""

from __future__ import annotations

import logging as std_logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from oslo_log import log as logging

from migrator import constants, exception
from migrator._libvirt import connection_lost, error_code, error_message
from migrator.classify import (
    NOT_ASKED,
    SERVICE_STOPPED,
    AbortBy,
    CallEnd,
    Conduct,
    DestFacts,
    Facts,
    Next,
    SourceFacts,
    Verdict,
    classify,
    give_up,
    mode_of,
)
from migrator.clock import Clock
from migrator.concurrency import Worker
from migrator.control import Controls
from migrator.facts import (
    JobIdentity,
    JobReader,
    JobRecord,
    Reading,
    read_record,
    read_source,
    refused_by_job_lock,
)
from migrator.journal import Journal
from migrator.outcome import (  # noqa: F401 - re-exported: the statuses' historical home
    CANCELLED,
    COMPLETED,
    FAILED,
    MODE_PAUSED,
    MODE_POST_COPY,
    MODE_PRE_COPY,
    POSTCOPY_FAILED,
    ROLLBACK_SAFE,
    STALLED,
    TIMED_OUT,
    UNKNOWN,
    ActionRecord,
    Outcome,
)
from migrator.policy import Policy, Tunables, completion_timeout
from migrator.progress import Progress, ProgressTracker

LOG = logging.getLogger(__name__)

# Consecutive unexplained jobStats failures tolerated before the monitor gives up.
MAX_STATS_ERRORS = 5
# Seconds without a usable reading of a job our call still waits on: the monitor
# then gives up (and aborts), whatever jobStats returns (garbage, refusals).
BLIND_LIMIT = 60.0
# Longest wait between two looks while the facts cannot be had.
MAX_BACKOFF = 30.0
# Shortest wait between two looks a policy may ask for (next_sample_in): jobStats
# is a QMP round trip, and a policy's wish is not to become a busy loop.
MIN_LOOK = 0.05


@dataclass(frozen=True)
class LoopConfig:
    poll_interval: float = 0.5
    abort_timeout: float = 30.0  # abortJob's watchdog (KubeVirt's 30 s)
    establish_timeout: float = 600.0  # live_migration_establish_timeout
    data_gb: float = 0.0  # for the completion timeout measured on the clock
    label: str = ""


@dataclass(frozen=True)
class Hooks:
    """The caller's hooks; whatever they raise is reported and the job goes on."""

    on_progress: Callable[[Progress], None] | None = None
    on_sample: Callable[[float, Any], None] | None = None
    on_post_copy: Callable[[], None] | None = None  # once, right after the switch
    on_action: Callable[[Any], None] | None = None  # each ActionRecord, as it is recorded


class Monitor:
    """Follows one migration to its established end.

    ``domain`` is the guest on the monitor's own connection; ``reconnect``
    returns a fresh one (or raises).  ``worker`` runs our ``migrateToURI3``
    (None: a job started before a restart is re-attached, or none was started;
    ``conduct`` then says which).  ``dest`` looks at the destination.
    ``job_started`` (re-attach) is the job's start on ``clock``: time counts
    from there.
    """

    def __init__(self, *, domain: Any, reconnect: Callable[[], Any], policy: Policy,
                 clock: Clock, tunables: Callable[[], Tunables], progress: ProgressTracker,
                 worker: Worker | None = None, config: LoopConfig = LoopConfig(),
                 hooks: Hooks = Hooks(), dest: Callable[[], DestFacts] | None = None,
                 conduct: Conduct | None = None, job_started: float | None = None):
        self.domain = domain
        self._reconnect_fn = reconnect
        self.worker = worker
        self.policy = policy
        self.clock = clock
        self._tunables = tunables
        self.tracker = progress
        self.hooks = hooks
        self.cfg = config
        self._dest = dest or (lambda: NOT_ASKED)
        self.conduct = conduct or Conduct(call=CallEnd.PENDING if worker else CallEnd.NONE)
        self.journal = Journal(config.label,
                               lambda rec: self._hook("action hook", hooks.on_action, rec))
        self.controls = Controls(
            domain=lambda: self.domain, reconnect=self._reconnect, now=self.now,
            conduct=self.conduct, journal=self.journal, policy=policy,
            abort_timeout=config.abort_timeout, worker=worker, may_run=self._job_may_run,
            on_post_copy=lambda: self._hook("post-copy hook", hooks.on_post_copy),
            ours_now=self._ours_now)
        self.wake = threading.Event()
        self._start = clock.now() if job_started is None else job_started
        self._reader = JobReader()
        self._errors = 0  # consecutive unexplained jobStats failures
        self._identity = JobIdentity(started=job_started)
        # libvirt's completed-job record just before our call: a record that differs
        # from it afterwards is our job's (None: no call, or unreadable; none is ours)
        self._record_before: JobRecord | None = None
        if worker is None and not self.conduct.reattached:
            self._identity.disown()  # nothing was started: any job is somebody else's
        self._window = (clock.now(), clock.now())  # the clock around the last jobStats
        self._last_seen = clock.now()  # the last running sample of our job (clock time)
        self._follow_job = self.conduct.reattached
        self._waiting_since: float | None = None
        self._ended_at: float | None = None
        self._passes = 0
        if worker is not None:
            worker.on_done = self.wake.set
        if self.conduct.post_copy:  # re-attached in post-copy
            self.conduct.post_copy = False
            self.controls.post_copy_seen()

    # -- requests from other threads -----------------------------------------------

    def request(self, kind: str) -> Future[bool]:
        """Queue 'abort', 'force_complete' or 'stop'; the future says what became of it."""
        future = self.controls.request(kind)
        self.wake.set()
        return future

    def now(self) -> float:
        return self.clock.now() - self._start

    @property
    def actions(self) -> list[ActionRecord]:
        return self.journal.actions

    def start(self) -> bool:
        """Serve requests made before the start, then start the call; False if cancelled.

        Raises what starting the call's thread raises (the call is then not made).
        """
        self.controls.serve()
        if self.worker is None or self.conduct.call is not CallEnd.PENDING:
            return False
        self._identity.called_at = self.clock.now()
        self._record_before = read_record(self.domain)
        try:
            return self.worker.start()
        except BaseException:
            self.conduct.call = CallEnd.NONE
            raise

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> Outcome:
        verdict: Verdict | None = None
        while verdict is None:
            try:
                self._follow()
            except Exception as exc:  # noqa: BLE001 - abort first, then report
                self._fail(exc)
                continue
            verdict = self._establish()
        return self._settle(verdict)

    def _follow(self) -> None:
        """Read, decide, act, until the job is over or cannot be read."""
        while True:
            self.controls.serve()
            if self._call_just_ended() or not self._has_job() or self.controls.stopping:
                return
            before = self.clock.now()
            reading = self._reader.read(self.domain)
            self._window = (before, self.clock.now())
            if self._over(reading):
                self._follow_job = False
                return
            if reading.lost and not self._reconnect(reading.problem or "connection lost"):
                return
            if self._steering():
                self._take(reading)
                self._keep_deadlines()
            else:
                self._abort_again()
                if self._out_of_time():
                    return
            self._drain_notes()
            self._sleep(self._until_next_look())

    def _until_next_look(self) -> float:
        """The poll interval, or sooner when the policy's next decision is due sooner
        (a pass boundary), but never sooner than :data:`MIN_LOOK`."""
        wish = self.policy.next_sample_in(self.now()) if self._steering() else None
        if wish is None:
            return self.cfg.poll_interval
        return min(self.cfg.poll_interval, max(wish, MIN_LOOK))

    def _steering(self) -> bool:
        """Until the monitor itself fails it steers the job; from then on it only aborts."""
        return self.conduct.monitor_error is None

    def _has_job(self) -> bool:
        return self.conduct.call is CallEnd.PENDING or self._follow_job

    def _job_may_run(self) -> bool:
        """For requests: our job may still run (the call did not end in success)."""
        return self.conduct.call in (CallEnd.PENDING, CallEnd.ERROR) or self._follow_job

    def _call_just_ended(self) -> bool:
        """Record the end of our call the first time it is seen; True then."""
        worker = self.worker
        if self.conduct.call is not CallEnd.PENDING or worker is None or not worker.done.is_set():
            return False
        err = worker.error
        if err is None:
            self.conduct.call = CallEnd.OK
            self._ended_at = self.now()
        else:
            self.conduct.call = CallEnd.ERROR
            self.conduct.call_error = error_message(err)
            self.conduct.call_code = error_code(err)
            self.conduct.call_lost = connection_lost(err)
            if refused_by_job_lock(self.conduct.call_code, self.conduct.call_error):
                # another job held the domain all along: whatever ran was not ours
                self._identity.disown()
                self.conduct.seen_running = False
                self._follow_job = False
        return True

    def _over(self, reading: Reading) -> bool:
        """Is the job we follow over (or replaced)?  Only asked once our call returned."""
        if self.conduct.call is CallEnd.PENDING:
            return False
        if reading.running:
            assert reading.sample is not None
            return not self._identify(reading.sample)
        no_job = reading.sample is not None and reading.sample.type == constants.VIR_DOMAIN_JOB_NONE
        return reading.finishing or no_job

    def _take(self, reading: Reading) -> None:
        if reading.sample is None:
            self._trouble(reading)
            return
        self._errors = 0
        sample = reading.sample
        self._hook("sample hook", self.hooks.on_sample, self.now(), sample)
        if not reading.running:
            return
        if not self._identify(sample):
            self.journal.once("a migration job migrator did not start runs on the domain; "
                              "it is not touched", self.now(), std_logging.WARNING)
            return
        self._seen(sample)
        if self.controls.abort_req is not None:
            self.controls.abort_job("abort requested", record=False)
        if self.conduct.abort_accepted or not (sample.memory_total or sample.disk_total):
            return  # aborted, or QEMU's transfer has not begun (libvirt's setup): hands off
        now = self.now()
        self.controls.policy_fed = True
        for action in self.policy.on_sample(sample, now, self._tunables()):
            self.controls.execute(action)
        progress = self.tracker.update(sample, now)
        if progress is not None:
            self._report_progress(progress)

    def _seen(self, sample: Any) -> None:
        self.conduct.seen_running = True
        self._last_seen = self.clock.now()
        self._identity.seen(sample, *self._window)
        self._passes = max(self._passes, sample.memory_iteration)
        if sample.memory_postcopy_requests and not self.controls.in_post_copy():
            self.controls.post_copy_seen()

    def _ours_now(self) -> bool:
        """Is the job running on the domain now ours (or is there none)?  Read afresh."""
        before = self.clock.now()
        reading = self._reader.read(self.domain)
        if not reading.running:  # none, or one without stats yet: ours unless disowned
            return not self._identity.none_ours
        return self._identity.is_ours(reading.sample, before, self.clock.now())

    def _identify(self, sample: Any) -> bool:
        return self._identity.is_ours(sample, *self._window)

    def _trouble(self, reading: Reading) -> None:
        now = self.now()
        if reading.finishing:
            self._check_post_copy_state()
            return
        if reading.failed:
            self._errors += 1
            self.journal.once(f"jobStats failed: {reading.problem}", now, std_logging.WARNING)
            if self._errors >= MAX_STATS_ERRORS:
                raise exception.MonitorError(
                    f"jobStats failed {self._errors} times in a row: {reading.problem}")
        elif reading.problem:
            self.journal.once(reading.problem, now, std_logging.WARNING)

    def _keep_deadlines(self) -> None:
        """The monitor's give-up and the completion timeout, on the clock."""
        blind = self.clock.now() - self._last_seen
        if self.conduct.call is CallEnd.PENDING and blind >= BLIND_LIMIT:
            raise exception.MonitorError(
                f"no usable reading of the job for {blind:.0f} s; the monitor cannot follow it")
        tunables = self._tunables()
        timeout = completion_timeout(tunables.completion_timeout, self.cfg.data_gb)
        grace = max(5.0, 3 * self.cfg.poll_interval)
        if (not timeout or self.controls.in_post_copy() or self.conduct.abort_by is not None
                or self.now() <= timeout + grace or self.now() - blind > timeout):
            return
        self.controls.set_abort(
            AbortBy.TIMEOUT, f"not completed after {self.now():.0f} s; completion timeout "
            f"{timeout} s, and the job could not be read for {blind:.0f} s (the policy could "
            "not act): aborting")
        self.controls.abort_job(self.conduct.abort_reason or "completion timeout", record=True)

    def _reconnect(self, why: str) -> bool:
        try:
            self.domain = self._reconnect_fn()
        except Exception as exc:  # noqa: BLE001 - unreachable for now
            self.journal.once(f"lost the connection to the source libvirt ({why}); "
                              f"reconnecting failed: {error_message(exc)}", self.now(),
                              std_logging.WARNING)
            return False
        LOG.info("%sMonitor connection re-opened after: %s", self.cfg.label, why)
        self._errors = 0
        return True

    def _fail(self, exc: Exception) -> None:
        """The monitor cannot follow the job: from now on it only aborts it."""
        LOG.error("%sMonitoring failed, aborting the job: %s", self.cfg.label, exc)
        self.conduct.monitor_error = str(exc)
        self.controls.set_abort(AbortBy.MONITOR, f"the monitor failed: {exc}")
        if self._waiting_since is None:
            self._waiting_since = self.clock.now()
        self._abort_again(record=True)

    def _abort_again(self, record: bool = False) -> None:
        if self.conduct.abort_accepted or self.controls.in_post_copy() or not self._has_job():
            return
        self.controls.abort_job(self.conduct.abort_reason or "abort", record=record)

    # -- establishing ------------------------------------------------------------------

    def _establish(self) -> Verdict | None:
        """Classify the facts; look again with backoff while they cannot be had."""
        delay = self.cfg.poll_interval
        while True:
            self.controls.serve()
            self._call_just_ended()
            verdict = classify(self._facts())
            if verdict.next is Next.SETTLE:
                return verdict
            if self.controls.stopping:
                return SERVICE_STOPPED
            if verdict.next is Next.FOLLOW:
                if not self._steering() and self._out_of_time():
                    return give_up(verdict, self._waited())
                return self._follow_again(verdict)
            if self._waiting_since is None:
                self._waiting_since = self.clock.now()
            self.journal.once(f"waiting: {verdict.reason}", self.now())
            self._drain_notes()
            self._sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)

    def _follow_again(self, verdict: Verdict) -> None:
        if self._steering():
            self._waiting_since = None
        if verdict.rule == "post-copy-running" and not self.controls.in_post_copy():
            self.controls.post_copy_seen()
        if self.conduct.call is not CallEnd.PENDING and not self._follow_job:
            self.journal.once("migrateToURI3 returned but the job goes on in libvirt; "
                              "following it to its end", self.now())
        self._follow_job = True
        return None

    def _facts(self) -> Facts:
        source = self._source_facts()
        dest = NOT_ASKED if source.job_running and source.job_ours else self._dest()
        waited = self._waited()
        return Facts(self.conduct, source, dest, self._out_of_time(), waited)

    def _source_facts(self) -> SourceFacts:
        facts = self._read_source()
        if facts.reachable or not self._reconnect("looking at the source"):
            return facts
        return self._read_source()

    def _read_source(self) -> SourceFacts:
        before = self.clock.now()
        return read_source(self.domain, lambda sample: self._identity.is_ours(
            sample, before, self.clock.now()), self._reader, self._record_before)

    def _waited(self) -> float:
        since = self._waiting_since
        return 0.0 if since is None else self.clock.now() - since

    def _out_of_time(self) -> bool:
        return self._waiting_since is not None and self._waited() >= self.cfg.establish_timeout

    # -- requests ----------------------------------------------------------------------

    def _check_post_copy_state(self) -> None:
        """jobStats is refused once the source has stopped: is it post-copy?"""
        if self.controls.in_post_copy():
            return
        try:
            state, reason = self.domain.state()[:2]
        except Exception:  # noqa: BLE001 - the domain may be gone: establishing tells
            return
        if state == constants.VIR_DOMAIN_PAUSED and reason == constants.VIR_DOMAIN_PAUSED_POSTCOPY:
            self.controls.post_copy_seen()

    def _hook(self, what: str, hook: Callable[..., Any] | None, *args: Any) -> None:
        if hook is None:
            return
        try:
            hook(*args)
        except BaseException as exc:  # noqa: BLE001 - the caller's hook: reported, job goes on
            self.journal.once(f"{what} raised {type(exc).__name__}: {exc}", self.now(),
                              std_logging.WARNING)

    def _report_progress(self, progress: Progress) -> None:
        LOG.debug("%sprogress %.1f%% (pass %d)", self.cfg.label, progress.percent,
                  progress.iteration)
        self._hook("progress callback", self.hooks.on_progress, progress)

    def report_final(self, progress: Progress, notes: list[str]) -> None:
        """The last progress report (100 % only on completion), after the job settled."""
        try:
            if self.hooks.on_progress is not None:
                self.hooks.on_progress(progress)
        except BaseException as exc:  # noqa: BLE001 - the job is settled; reported
            notes.append(f"progress callback raised {type(exc).__name__}: {exc}")
            LOG.warning("%sprogress callback failed: %s", self.cfg.label, exc)

    def _drain_notes(self) -> None:
        for note in self.policy.pop_notes():
            self.journal.note(note.text)

    def _sleep(self, seconds: float) -> None:
        self.clock.wait(self.wake, seconds)
        self.wake.clear()

    # -- settling ------------------------------------------------------------------------

    def _settle(self, verdict: Verdict) -> Outcome:
        self.controls.close()
        self._drain_notes()
        status = verdict.status or UNKNOWN
        k = self.conduct
        if status == POSTCOPY_FAILED:
            self.controls.mark_post_copy()
        if status == COMPLETED and k.call is CallEnd.ERROR:
            self.journal.note(f"migrateToURI3 raised, but the guest moved: {k.call_error}")
        if status in ROLLBACK_SAFE and k.suspended:
            self._resume_guest()
        self.journal.summarise()
        end = self._ended_at if self._ended_at is not None else self.now()
        return Outcome(
            status=status, mode=mode_of(status, k), total_seconds=end, downtime_ms=None,
            passes=self._passes, actions=list(self.journal.actions),
            error=None if status == COMPLETED else verdict.error,
            error_code=None if status == COMPLETED else k.call_code,
            monitor_error=k.monitor_error, notes=list(self.journal.notes),
            progress=self.tracker.final(end, completed=status == COMPLETED),
            rule=verdict.rule, reason=verdict.reason,
        )

    def _resume_guest(self) -> None:
        """Force-complete paused the guest and the migration did not finish: resume it."""
        try:
            if self.domain.state()[0] == constants.VIR_DOMAIN_PAUSED:
                self.domain.resume()
                self.journal.note("resumed the guest on the source (it was paused to force "
                                  "completion)")
        except Exception as exc:  # noqa: BLE001
            LOG.warning("%scould not resume the guest on the source: %s", self.cfg.label, exc)
