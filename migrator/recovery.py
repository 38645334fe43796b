"""Post-copy recovery: resume a post-copy whose link failed (``POSTCOPY_RESUME``, libvirt >= 8.5).

After the switch to post-copy the guest runs on the destination while part of
its memory is still on the source; a broken link pauses it there.  Nothing is
ever rolled back: the job is resumed once the hosts reach each other again, for
at most ``live_migration_postcopy_recovery_timeout`` seconds, or the outcome
says exactly where the guest is and what the operator must do.  Everything
this needs is passed in; it calls libvirt only through the given
:class:`~migrator.facts.SourceView`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from oslo_log import log as logging

from migrator import constants
from migrator._libvirt import error_message
from migrator.clock import Clock
from migrator.concurrency import Worker
from migrator.facts import GONE, SourceView
from migrator.flags import Plan, format_version
from migrator.outcome import COMPLETED, Outcome

LOG = logging.getLogger(__name__)

# Longest pause between two attempts.
RETRY_EVERY = 5.0


@dataclass(frozen=True)
class Recovery:
    """What a recovery needs: where to look, how to call, how long to try."""

    source: SourceView
    plan: Plan
    clock: Clock
    libvirt_version: constants.Version
    timeout: float  # live_migration_postcopy_recovery_timeout; 0: off
    poll_interval: float
    dest_gone: Callable[[], bool]  # the destination answered and no longer runs the guest
    label: str = ""
    stopping: threading.Event | None = None  # the service stops: give up at once


def recover(result: Outcome, r: Recovery) -> None:
    """Resume the failed post-copy ``result`` describes; updates ``result`` in place."""
    first_error = result.error
    since = constants.MIGRATE_FLAGS["POSTCOPY_RESUME"].since
    if r.libvirt_version < since:
        _give_up(result, r, f"post-copy failed ({first_error}); resuming it needs libvirt "
                 f"{format_version(since)}",
                 "the guest runs on the destination with part of its memory on the source; "
                 "repair the link and resume the migration by hand")
        return
    if r.timeout <= 0:
        _give_up(result, r, f"post-copy failed ({first_error}); automatic resume is off "
                 "(live_migration_postcopy_recovery_timeout = 0)",
                 "repair the link and resume it with virsh migrate --postcopy --postcopy-resume")
        return
    _Attempts(result, r, first_error).run()


class _Attempts:
    def __init__(self, result: Outcome, r: Recovery, first_error: str | None):
        self.result, self.r, self.first_error = result, r, first_error
        self.start = r.clock.now()
        self.attempt = 0
        self.last = first_error
        self.idle = threading.Event()

    def waited(self) -> float:
        return self.r.clock.now() - self.start

    def run(self) -> None:
        r = self.r
        while True:
            if r.source.moved():
                # libvirt/QEMU finished the post-copy by itself once the link was back
                self._completed(f"post-copy was interrupted ({self.first_error}) and "
                                f"finished after {self.waited():.1f} s")
                return
            if r.stopping is not None and r.stopping.is_set():
                self._stop("the service stopped during the recovery",
                           "the guest runs on the destination; resume the migration by hand")
                return
            with r.source.looking() as dom:
                reachable = dom is not None and dom is not GONE
                if reachable and self._resume(dom):
                    return
            if not reachable:
                if self.waited() >= r.timeout:
                    self._stop(f"the source libvirt stayed unreachable for {r.timeout} s",
                               "the guest runs on the destination; check where its memory is")
                    return
                self._pause(min(RETRY_EVERY, max(r.timeout - self.waited(), 0.1)))
                continue
            if self.waited() >= r.timeout:
                self._stop(f"could not be resumed within {r.timeout} s ({self.attempt} "
                           f"attempts, last error: {self.last})",
                           "the guest runs on the destination, paused on missing memory that "
                           "is still on the source; repair the link between the hosts and "
                           "resume the migration (virsh migrate --postcopy --postcopy-resume)")
                return
            self._pause(min(RETRY_EVERY, r.timeout - self.waited()))

    def _resume(self, dom: object) -> bool:
        """One POSTCOPY_RESUME attempt; True when the migration completed."""
        r = self.r
        self.attempt += 1
        LOG.warning("%spost-copy failed (%s); resuming it, attempt %d", r.label, self.last,
                    self.attempt)
        plan = r.plan
        flags = plan.flags | constants.VIR_MIGRATE_POSTCOPY | constants.VIR_MIGRATE_POSTCOPY_RESUME
        worker = Worker(lambda: dom.migrateToURI3(plan.uri, plan.params, flags),  # type: ignore[attr-defined]
                        f"migrator-resume-{self.attempt}")
        worker.on_done = self.idle.set
        worker.start()
        while not worker.done.is_set():
            r.clock.wait(self.idle, r.poll_interval)
        self.idle.clear()
        if worker.error is None or r.source.moved():
            s = "s" if self.attempt > 1 else ""
            self._completed(f"post-copy failed ({self.first_error}) and was resumed after "
                            f"{self.waited():.1f} s ({self.attempt} attempt{s})")
            return True
        self.last = error_message(worker.error)
        return False

    def _pause(self, seconds: float) -> None:
        self.r.clock.wait(self.idle, seconds)

    def _completed(self, note: str) -> None:
        res = self.result
        res.status, res.error, res.error_code = COMPLETED, None, None
        res.rule, res.reason = "post-copy-recovered", note
        res.notes.append(note)
        res.total_seconds += self.waited()
        LOG.info("%s%s", self.r.label, note)

    def _stop(self, what: str, where_and_advice: str) -> None:
        self.result.total_seconds += self.waited()
        _give_up(self.result, self.r, f"post-copy failed ({self.first_error}) and {what}",
                 where_and_advice)


def _give_up(result: Outcome, r: Recovery, what: str, where_and_advice: str) -> None:
    """The terminal message of a post-copy that stays broken.

    It normally tells the operator the guest waits on the destination; if the
    destination no longer runs it (destroyed during the recovery), that advice
    would be dangerous: the paused source copy lacks every page changed there.
    """
    if r.dest_gone():
        where_and_advice = (
            "the guest is no longer running on the destination, so the memory it changed "
            "there is lost; the copy left paused on the source is incomplete and must not "
            "be resumed: restart the guest from its disks")
    result.error = f"{what}: {where_and_advice}"
    LOG.error("%s%s", r.label, result.error)
