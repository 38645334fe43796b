"""Follow a migration that something else started (Nova, virsh, another process), read-only.

``migrator watch`` uses it: it reads the job's statistics, the max downtime
and speed in force and the guest's state, tells what changed as the actions it
can see (a new max downtime, a speed cap, auto-converge's throttle, the switch
to post-copy, the guest paused to finish), and when the job is over
establishes the outcome with the same rules as the driver
(:mod:`migrator.classify`).  It never calls anything that changes the job or
the guest; stopping it (Ctrl-C) leaves the migration as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from migrator import classify, constants, startup
from migrator._libvirt import error_code
from migrator.clock import Clock
from migrator.facts import JobReader, read_source
from migrator.jobstats import JobSample
from migrator.outcome import ActionRecord, Outcome

SEEN = "seen"  # the reason of an action the watcher saw rather than took starts with this
# Errors that mean "not allowed on this connection" (a read-only one: VIR_ERR_OPERATION_DENIED)
# or "not supported here": the value is skipped.
VIR_ERR_OPERATION_DENIED = 29
_DENIED = (VIR_ERR_OPERATION_DENIED, constants.VIR_ERR_NO_SUPPORT)


@dataclass(frozen=True)
class Reading:
    """One look at the job: the sample and what else the source shows."""

    sample: JobSample
    max_downtime_ms: int | None
    max_speed_mibps: int | None
    state: int | None
    reason: int | None


@dataclass
class Changes:
    """Turns consecutive readings into the actions that show in them (pure).

    The first reading is the baseline: what was set before the watcher
    attached has no time, so it is not reported as an action.
    """

    post_copy: bool = False
    suspended: bool = False
    _last: Reading | None = field(default=None, repr=False)

    def see(self, t: float, now: Reading) -> list[ActionRecord]:
        last, self._last = self._last, now
        if last is None:
            self.post_copy = _paused(now, constants.VIR_DOMAIN_PAUSED_POSTCOPY)
            self.suspended = _paused(now, constants.VIR_DOMAIN_PAUSED_USER)
            return []
        seen = []
        if now.max_downtime_ms is not None and now.max_downtime_ms != last.max_downtime_ms:
            seen.append(ActionRecord(t, "set_max_downtime", now.max_downtime_ms,
                                     f"{SEEN}: max downtime {last.max_downtime_ms} -> "
                                     f"{now.max_downtime_ms} ms"))
        if now.max_speed_mibps is not None and now.max_speed_mibps != last.max_speed_mibps:
            seen.append(ActionRecord(t, "set_max_speed", now.max_speed_mibps,
                                     f"{SEEN}: bandwidth cap {last.max_speed_mibps} -> "
                                     f"{now.max_speed_mibps} MiB/s"))
        throttle = now.sample.auto_converge_throttle
        if throttle > last.sample.auto_converge_throttle:
            seen.append(ActionRecord(t, "auto_converge", throttle,
                                     f"{SEEN}: auto-converge slows the guest's vCPUs by "
                                     f"{throttle} %"))
        if not self.post_copy and _paused(now, constants.VIR_DOMAIN_PAUSED_POSTCOPY):
            self.post_copy = True
            seen.append(ActionRecord(t, "start_post_copy", None, f"{SEEN}: the job switched "
                                     "to post-copy; the guest runs on the destination"))
        if not self.suspended and _paused(now, constants.VIR_DOMAIN_PAUSED_USER):
            self.suspended = True
            seen.append(ActionRecord(t, "suspend", None, f"{SEEN}: the guest was paused so "
                                     "the copy can finish"))
        return seen


def _paused(reading: Reading, reason: int) -> bool:
    return reading.state == constants.VIR_DOMAIN_PAUSED and reading.reason == reason


def _optional(call: Callable[[], Any]) -> int | None:
    """A value the connection may not be allowed to read, or that is gone (None then).

    libvirt-python returns None instead of raising when migrateGetMaxDowntime
    fails, e.g. when the job ended between this and the job-stats read (the
    next read sees the end)."""
    try:
        value = call()
        return None if value is None else int(value)
    except Exception as exc:  # noqa: BLE001 - libvirtError
        if error_code(exc) in _DENIED:
            return None
        raise


def downtime_on(domain: Any) -> int | None:
    """The actual downtime from the completed-job stats libvirt keeps (kept for others: a
    read without KEEP_COMPLETED would take them from Nova or whoever asks next)."""
    flags = constants.VIR_DOMAIN_JOB_STATS_COMPLETED | constants.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED
    try:
        stats = domain.jobStats(flags)
    except Exception:  # noqa: BLE001 - libvirtError: no completed stats to read
        return None
    value = stats.get("downtime") if isinstance(stats, dict) else None
    return int(value) if isinstance(value, int) and stats.get("type") else None


def read(domain: Any) -> Reading:
    """One look at the job on the source (raises libvirtError when the domain is gone)."""
    sample = JobSample.from_stats(domain.jobStats())
    state, reason = domain.state()[:2]
    return Reading(sample, _optional(lambda: domain.migrateGetMaxDowntime(0)),
                   _optional(lambda: domain.migrateGetMaxSpeed(0)), state, reason)


@dataclass
class Watch:
    """How to watch: the clock, the poll interval, the hooks, how long to establish the end."""

    clock: Clock
    interval: float = 0.5
    on_sample: Callable[[float, JobSample], None] = lambda t, s: None
    on_action: Callable[[ActionRecord], None] = lambda record: None
    dest: Callable[[], classify.DestFacts] = lambda: classify.NOT_ASKED
    downtime: Callable[[], int | None] = lambda: None  # the destination's completed stats
    establish_timeout: float = 60.0
    stop: threading.Event = field(default_factory=threading.Event)


def follow(domain: Any, how: Watch) -> Outcome | None:
    """Follow the outgoing migration of ``domain`` to its end; None when stopped first.

    Raises :class:`~migrator.exception.MigrationRefused` when no outgoing
    migration runs on it.
    """
    found = startup.running_migration(domain)
    persistent = bool(domain.isPersistent())
    changes, actions, last = Changes(), [], found.elapsed
    passes, ended_as = 0, constants.VIR_DOMAIN_JOB_NONE
    while not how.stop.is_set():
        try:
            now = read(domain)
        except Exception as exc:  # noqa: BLE001 - libvirtError: the domain left, or the job
            if error_code(exc) in (constants.VIR_ERR_NO_DOMAIN,
                                   constants.VIR_ERR_OPERATION_INVALID):
                break
            raise
        if not now.sample.is_running:
            ended_as = now.sample.type  # libvirt may say how the job ended (CANCELLED)
            break
        last = now.sample.time_elapsed_ms / 1000 or last
        passes = max(passes, now.sample.memory_iteration)
        how.on_sample(last, now.sample)
        for record in changes.see(last, now):
            actions.append(record)
            how.on_action(record)
        how.clock.wait(how.stop, how.interval)
    if how.stop.is_set():
        return None
    conduct = classify.Conduct(call=classify.CallEnd.NONE, reattached=True, seen_running=True,
                               post_copy=changes.post_copy, suspended=changes.suspended,
                               persistent=persistent, undefine_source=True)
    if ended_as == constants.VIR_DOMAIN_JOB_CANCELLED:
        conduct.call_code = constants.VIR_ERR_OPERATION_ABORTED  # someone aborted the job
    return _establish(domain, how, conduct, Outcome("unknown", None, last, None, passes, actions))


def _establish(domain: Any, how: Watch, conduct: classify.Conduct, result: Outcome) -> Outcome:
    """The verdict of the driver's rules on what the hosts show, looking again while they
    cannot tell yet (a hand-over under way), for at most ``establish_timeout``."""
    started = how.clock.now()
    while True:
        source = read_source(domain, lambda s: True, JobReader())
        if constants.VIR_DOMAIN_JOB_CANCELLED in (source.last_job, source.job):
            conduct.call_code = constants.VIR_ERR_OPERATION_ABORTED  # someone aborted the job
        waited = how.clock.now() - started
        out_of_time = waited >= how.establish_timeout
        verdict = classify.classify(classify.Facts(conduct, source, how.dest(),
                                                   out_of_time=out_of_time, waited=waited))
        if verdict.next is not classify.Next.SETTLE and out_of_time:
            verdict = classify.give_up(verdict, waited)  # a job that runs again is not ours
        if verdict.next is classify.Next.SETTLE:
            result.status = verdict.status or "unknown"
            result.mode = classify.mode_of(result.status, conduct)
            result.error, result.rule, result.reason = verdict.error, verdict.rule, verdict.reason
            if result.status == "completed":
                result.downtime_ms = _kept_downtime(how)
            return result
        if how.clock.wait(how.stop, how.interval):
            result.notes.append("stopped before the end could be established")
            return result


def _kept_downtime(how: Watch, patience: float = 10.0) -> int | None:
    """The destination keeps the completed job's stats once its side has finished, which
    may be a moment after it runs the guest: look a few times."""
    started = how.clock.now()
    while True:
        value = how.downtime()
        if value is not None or how.clock.now() - started >= patience:
            return value
        if how.clock.wait(how.stop, how.interval):
            return None
