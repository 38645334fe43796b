"""One live migration inside Nova: migrator runs it, Nova's thread records it.

migrator's hooks (progress, the switch to post-copy, the outcome) fire in
migrator's threads; they are queued here and applied by the thread that called
Nova's ``live_migration()``, which writes the Migration record and the instance
and then calls Nova's callback, as Nova's own monitor does in that thread.
"""

from __future__ import annotations

import os
import queue
import threading
import xml.etree.ElementTree as ET
from concurrent import futures
from typing import Any

from nova import exception as nova_exception
from nova.virt.libvirt import guest as libvirt_guest
from oslo_log import log as logging

from migrator import exception, monitor
from migrator.driver import LiveMigrationDriver, MigrationOutcome, MigrationRequest
from migrator.progress import Progress

LOG = logging.getLogger(__name__)

#: Nova's Migration status while in post-copy; the compute manager finds the migration
#: by it when libvirt reports the switch, to activate the destination's ports early.
POST_COPY_STATUS = "running (post-copy)"
#: Rollback-safe outcomes Nova records as 'cancelled' (its own timeout abort does so).
CANCELLED_STATUSES = frozenset({monitor.CANCELLED, monitor.TIMED_OUT, monitor.STALLED})
#: Seconds an abort from Nova's API waits for libvirt to accept it.
ABORT_WAIT = 60.0


class HandOverGuest(libvirt_guest.Guest):
    """Nova's ``Guest`` for the domain, whose ``migrate()`` hands the call to migrator.

    Nova's ``_live_migration_operation`` prepares the call and then calls
    ``migrate()``; the URIs, flags, bandwidth and parallel connections Nova
    computed are computed again by migrator from the same options and facts,
    by its rules (which refuse unsafe combinations and explain each flag).
    """

    def __init__(self, domain: Any, run: MigrationRun):
        super().__init__(domain)
        self._run = run

    def migrate(self, destination, migrate_uri=None, migrate_disks=None,
                destination_xml=None, flags=0, bandwidth=0, parallel=0):
        self._run.migrate(self._domain, destination_xml, migrate_disks)


class MigrationRun:
    """One migration of one instance, from Nova's call to Nova's callback."""

    def __init__(self, live: LiveMigrationDriver, instance: Any, dest: str, migrate_data: Any,
                 disk_paths: list[str], vpmem: bool):
        self._live = live
        self.instance = instance
        self.dest = dest
        self.migrate_data = migrate_data
        self._disk_paths = disk_paths
        self._vpmem = vpmem
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        self._handle = None
        self._early: list[tuple[str, futures.Future | None]] = []
        self._closed = False
        self.outcome: MigrationOutcome | None = None
        self.not_started: str | None = None  # why migrator never got the call

    # -- in Nova's thread -------------------------------------------------------------

    def migrate(self, domain: Any, destination_xml: str | None, migrate_disks) -> None:
        """Start the migration in migrator, record it until it settles; raise unless it
        completed (Nova's ``_live_migration_operation`` then logs the failure)."""
        try:
            handle = self._live.live_migration(
                domain, request=self._request(destination_xml, migrate_disks),
                post_method=self._settled, recover_method=self._settled,
                on_progress=lambda p: self._events.put(("progress", p)),
                on_post_copy=lambda: self._events.put(("post-copy", None)))
        except exception.MigratorError as exc:
            self.not_started = f"refused by migrator: {exc}"
            raise nova_exception.MigrationError(reason=self.not_started) from exc
        self._started(handle)
        try:
            self._follow()
        except Exception:  # noqa: BLE001 - Nova's side failed (its database, say)
            LOG.exception("Recording the live migration failed; aborting it first",
                          instance=self.instance)
            handle.abort()
            self._drain()
        self.outcome = handle.wait()
        if not self.outcome.succeeded:
            raise nova_exception.MigrationError(
                reason=f"{self.outcome.status}: {self.outcome.error}")

    def operation_failed(self, exc: BaseException) -> None:
        """Nova's preparation or migrate() raised: keep why, unless migrator settled it."""
        if self.outcome is None and self.not_started is None:
            self.not_started = f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        """No more controls: requests made before a start that never came fail."""
        with self._lock:
            self._closed = True
            early, self._early = self._early, []
        for _kind, fut in early:
            if fut is not None:
                fut.set_exception(exception.NoActiveMigration("the migration never started"))

    def call_back(self, context: Any, post_method, recover_method, block_migration) -> None:
        """Nova's callback for the outcome, or an exception when neither is safe."""
        inst, dest, data, out = self.instance, self.dest, self.migrate_data, self.outcome
        if out is None:  # nothing was started: the guest runs on the source
            LOG.error("Live migration to %s did not start (%s); rolling back", dest,
                      self.not_started, instance=inst)
            recover_method(context, inst, dest, data)
        elif out.succeeded:
            LOG.info("Live migration to %s completed by migrator (%s, %.1f s)", dest,
                     out.mode, out.total_seconds, instance=inst)
            post_method(context, inst, dest, block_migration, data)
        elif out.rollback_safe:
            LOG.warning("Live migration to %s ended %s (%s); the guest runs on the source, "
                        "rolling back", dest, out.status, out.error, instance=inst)
            if out.status in CANCELLED_STATUSES:
                recover_method(context, inst, dest, data, migration_status="cancelled")
            else:
                recover_method(context, inst, dest, data)
        else:
            reason = (f"live migration to {dest} ended {out.status}: {out.error}; the guest may "
                      "run on the destination, so nothing is rolled back")
            LOG.error("%s", reason, instance=inst)
            raise nova_exception.MigrationError(reason=reason)

    def _request(self, destination_xml: str | None, migrate_disks) -> MigrationRequest:
        data = self.migrate_data
        inbound = data.target_connect_addr if "target_connect_addr" in data else None
        return MigrationRequest(
            dest=self.dest, inbound_addr=inbound,
            block_migration=bool(data.block_migration),
            disks=tuple(migrate_disks or ()), disk_sizes=_sizes(self._disk_paths),
            vfio=_has_hostdev(destination_xml), vpmem=self._vpmem,
            destination_xml=destination_xml, persistent_xml=destination_xml,
            migrate_data=data)

    def _follow(self) -> None:
        while True:
            kind, payload = self._events.get()
            if kind == "settled":
                return
            if kind == "progress":
                self._save_progress(payload)
            elif kind == "post-copy":
                self._save_post_copy()

    def _drain(self) -> None:
        while self._events.get()[0] != "settled":
            pass

    def _migration(self) -> Any:
        return self.migrate_data.migration if "migration" in self.migrate_data else None

    def _save_progress(self, p: Progress) -> None:
        migration = self._migration()
        if migration is not None:
            migration.memory_total = p.memory_total
            migration.memory_processed = p.memory_processed
            migration.memory_remaining = p.memory_remaining
            migration.disk_total = p.disk_total
            migration.disk_processed = p.disk_processed
            migration.disk_remaining = p.disk_remaining
            migration.save()
        # migrator's percentage never goes back and reaches 100 only on completion
        self.instance.progress = int(p.percent)
        self.instance.save()

    def _save_post_copy(self) -> None:
        LOG.info("Switched the live migration to post-copy", instance=self.instance)
        migration = self._migration()
        if migration is not None:
            migration.status = POST_COPY_STATUS
            migration.save()

    # -- in migrator's threads, and Nova's API threads ---------------------------------

    def _settled(self, outcome: MigrationOutcome) -> None:
        self._events.put(("settled", outcome))

    def _started(self, handle) -> None:
        with self._lock:
            self._handle = handle
            early, self._early = self._early, []
        for kind, fut in early:
            _chain(handle.abort() if kind == "abort" else handle.force_complete(), fut)

    def force_complete(self) -> None:
        """Nova's force-complete: queued like Nova's, acted on by migrator's monitor."""
        handle = self._control("force_complete", None)
        if handle is not None:
            _chain(handle.force_complete(), None)

    def abort(self) -> None:
        fut: futures.Future = futures.Future()
        handle = self._control("abort", fut)
        if handle is not None:
            _chain(handle.abort(), fut)
        try:
            fut.result(timeout=ABORT_WAIT)
        except exception.NoActiveMigration as exc:
            raise nova_exception.NoActiveMigrationForInstance(
                instance_id=self.instance.uuid) from exc
        except exception.AbortFailed as exc:
            raise nova_exception.MigrationError(reason=f"abort refused: {exc}") from exc
        except futures.TimeoutError as exc:
            raise nova_exception.MigrationError(
                reason=f"libvirt did not accept the abort within {ABORT_WAIT:g} s") from exc

    def _control(self, kind: str, fut: futures.Future | None):
        """The handle, or None after keeping the request for the start."""
        with self._lock:
            if self._handle is not None:
                return self._handle
            if self._closed:
                raise nova_exception.NoActiveMigrationForInstance(
                    instance_id=self.instance.uuid)
            self._early.append((kind, fut))
            return None


def _chain(source: futures.Future, target: futures.Future | None) -> None:
    """Copy ``source``'s result into ``target``; log a refused request nobody waits for."""

    def copy(done: futures.Future) -> None:
        exc = done.exception()
        if target is None:
            if exc is not None:
                LOG.warning("migrator did not force completion: %s", exc)
        elif exc is not None:
            target.set_exception(exc)
        else:
            target.set_result(done.result())

    source.add_done_callback(copy)


def _sizes(paths: list[str]) -> tuple[int, ...]:
    """Bytes of each copied disk, for the completion timeout (as Nova counts them).

    One size per disk, in order: a disk that cannot be stat'ed counts as 0 bytes
    (then the 2 GiB every disk counts at least; Nova leaves it out) and never
    stops the migration, as in Nova.
    """
    sizes = []
    for path in paths:
        try:
            sizes.append(os.stat(path).st_size)
        except OSError as exc:
            LOG.warning("Unable to stat %s: %s", path, exc)
            sizes.append(0)
    return tuple(sizes)


def _has_hostdev(xml: str | None) -> bool:
    """Does the guest keep an assigned host device (VFIO) on the destination?"""
    if not xml:
        return False
    try:
        return ET.fromstring(xml).find("./devices/hostdev") is not None
    except ET.ParseError as exc:
        # libvirt refuses such XML when the migration starts and says why; until then
        # the flag rules are told "no host device", and the operator is told here.
        LOG.warning("The destination domain XML Nova built does not parse (%s); "
                    "treating the guest as having no assigned host device", exc)
        return False
