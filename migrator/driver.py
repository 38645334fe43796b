"""LiveMigrationDriver: start-up checks, the queue, threads and callbacks, shutdown, re-attach.

The driver (with :mod:`migrator.execution`, what each migration's thread does)
is the only part of migrator that owns threads and libvirt connections.  Per
migration it opens two connections of its own to the source libvirt: one
blocks in ``migrateToURI3``, the other carries the monitor's ``jobStats``
polls and the control calls (abort, post-copy, suspend, downtime), because
libvirt 9.0's client can hang when both share one connection.  Both are
closed when the migration has settled.  A migration waiting for a slot holds
no thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from oslo_config import cfg
from oslo_log import log as logging

from migrator import (
    _libvirt,
    concurrency,
    constants,
    exception,
    execution,
    flags,
    forecast,
    measure,
    monitoring,
    startup,
    uri,
)
from migrator import conf as mconf
from migrator.clock import Clock, RealClock
from migrator.concurrency import SlotQueue
from migrator.execution import Job
from migrator.facts import close_all
from migrator.handle import MigrationHandle
from migrator.monitor import Hooks
from migrator.outcome import CANCELLED, FAILED, MigrationOutcome
from migrator.predict import Prediction
from migrator.progress import Progress
from migrator.request import MigrationRequest, build, check_against_guest
from migrator.startup import RunningMigration

LOG = logging.getLogger(__name__)

Callback = Callable[[MigrationOutcome], Any]


class LiveMigrationDriver:
    """Live migration for a compute service.

    ``conf`` is the service's ``ConfigOpts`` with :func:`migrator.conf.register_opts`
    applied; ``connection`` a libvirt ``virConnect`` to the source (its URI is
    used to open the driver's own connections).  With ``queue=False`` the
    driver keeps no queue of its own and does not read
    ``max_concurrent_live_migrations``: for a caller that queues migrations
    itself, so that they are not queued twice.
    """

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        connection: Any,
        *,
        clock: Clock | None = None,
        poll_interval: float = 0.5,
        abort_timeout: float = 30.0,
        policy_factory: monitoring.PolicyFactory | None = None,
        open_connection: Callable[[str], Any] | None = None,
        queue: bool = True,
    ):
        self.conf = conf
        self.connection = connection
        self.clock = clock or RealClock()
        self.poll_interval = poll_interval
        self.abort_timeout = abort_timeout
        self.queue = queue
        self._policy_factory = policy_factory
        self._open = open_connection
        self.host: flags.HostFacts | None = None
        self.options: flags.Options | None = None
        self.values: dict[str, Any] = {}
        self.startup_decisions: list[flags.Decision] = []
        self.running_at_start: list[RunningMigration] = []
        self._slots = SlotQueue(None, self._launch)
        self._active: dict[str, MigrationHandle] = {}
        self._active_lock = threading.Lock()
        self._stopping = threading.Event()
        self._source_uri = ""  # read once: the caller's connection may drop later

    # -- start-up and shutdown -----------------------------------------------------------

    def init_host(self) -> flags.HostFacts:
        """Read the host's versions and validate the options; fail fast on contradictions.

        Also lists migrations already running on this host (``running_at_start``):
        after a restart, :meth:`reattach` follows the ones this service started.
        Raises :class:`~migrator.exception.ConfigError` (one message per problem).
        """
        options, virt_type, values = mconf.load(self.conf)
        conn = concurrency.blocking(self.connection)
        host = flags.HostFacts(
            virt_type,
            flags.version_from_int(conn.getLibVersion()),
            flags.version_from_int(conn.getVersion()),
        )
        self.startup_decisions = flags.check_options(options, host)
        for decision in self.startup_decisions:
            if decision.warning:
                LOG.warning("%s: %s", decision.item, decision.reason)
        self.host, self.options, self.values = host, options, values
        self._source_uri = conn.getURI()
        limit = int(values["max_concurrent_live_migrations"]) if self.queue else 0
        # None: no queue (the caller queues); a service's 0 (Nova's) means no limit too
        self._slots = SlotQueue(limit or None, self._launch)
        self._stopping.clear()
        self.running_at_start = startup.running_migrations(conn)
        startup.log_found(self.running_at_start, self._active)
        return host

    def cleanup_host(self, timeout: float = 30.0) -> list[MigrationHandle]:
        """Stop, as a service does before it exits (Nova's ``cleanup_host``).

        Queued migrations are cancelled (``recover_method`` with ``cancelled``).
        Running ones go on inside libvirt (peer-to-peer): their monitors let go
        and each settles ``unknown`` (rule ``service-stopped``: do not roll back)
        unless its end is established at that moment; after the restart,
        :meth:`reattach` follows the job again.  Returns the handles that were
        running, once their callbacks ran (or ``timeout`` seconds passed).
        """
        self._stopping.set()
        for job in self._slots.drain():
            self._settle_unstarted(job, CANCELLED, "cancelled while queued: the service "
                                   "is stopping")
        running = self.active_migrations()
        for handle in running:
            handle.stop()
        for handle in running:
            handle.wait(timeout)
        return running

    def pre_live_migration(self) -> dict[str, Any]:
        """On the destination: what the source needs from it (Nova's migrate_data)."""
        addr = self.conf.libvirt.live_migration_inbound_addr
        if addr is not None:
            uri.validate_address(addr, "[libvirt] live_migration_inbound_addr")
        return {"target_connect_addr": addr}

    def _require_init(self) -> tuple[flags.HostFacts, flags.Options]:
        if self.host is None or self.options is None:
            raise exception.MigratorError("call init_host() before migrating")
        if self._stopping.is_set():
            raise exception.MigratorError("the driver is stopped (cleanup_host); call "
                                          "init_host() to use it again")
        return self.host, self.options

    # -- one migration ------------------------------------------------------------------

    def plan(self, domain: Any, request: MigrationRequest) -> flags.Plan:
        """The migrateToURI3 call this driver would make for ``domain`` now."""
        host, options = self._require_init()
        state = concurrency.blocking(domain).info()[0]  # as Nova reads it (its fake lacks state())
        facts = flags.MigrationFacts(
            dest=request.dest,
            inbound_addr=request.inbound_addr,
            block_migration=request.block_migration,
            disks=tuple(request.disks),
            paused=state == constants.VIR_DOMAIN_PAUSED,
            vfio=request.vfio,
            vpmem=request.vpmem,
            destination_xml=request.destination_xml,
            persistent_xml=request.persistent_xml,
        )
        return flags.plan(options, host, facts)

    def live_migration(
        self,
        domain: Any,
        dest: str | None = None,
        *,
        post_method: Callback,
        recover_method: Callback,
        request: MigrationRequest | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_sample: Callable[[float, Any], None] | None = None,
        on_post_copy: Callable[[], None] | None = None,
        on_action: Callable[[Any], None] | None = None,
        **request_fields: Any,
    ) -> MigrationHandle:
        """Start migrating ``domain`` to ``dest``; returns at once with a handle.

        Checked now: the arguments (:class:`~migrator.exception.InvalidRequest`),
        the guest (running, no job of anyone else on it:
        :class:`~migrator.exception.MigrationRefused`) and the plan
        (``MigrationRefused``, ``InvalidAddress``, ``ConfigError``); a refusal
        raises and no callback runs.  Otherwise exactly one of ``post_method``
        (completed) or ``recover_method`` (any other status) is called with the
        :class:`MigrationOutcome`, from the migration's thread.
        ``request_fields`` are :class:`MigrationRequest` fields.
        ``on_progress`` gets a :class:`~migrator.progress.Progress` every
        ``live_migration_monitor_interval``; ``on_sample`` (for tracing) every
        job sample with the seconds since the monitor started; ``on_post_copy``
        once, from the monitor's thread, right after the job switched to post-copy;
        ``on_action`` every :class:`~migrator.outcome.ActionRecord` the monitor
        records, as it records it (a failed action too).
        """
        self._require_init()
        request = build(dest, request, request_fields)
        dom = concurrency.blocking(domain)
        with self._active_lock:  # before the job check: ours would look like another's
            self._refuse_twice(dom.UUIDString(), dom.name())
        startup.check_startable(dom)
        check_against_guest(request, dom.XMLDesc(0))
        plan = self.plan(dom, request)
        refused = forecast.refusal(self.conf, request.prediction)
        if refused:
            raise exception.MigrationRefused(refused)
        handle = MigrationHandle(dom.name(), dom.UUIDString(), request.dest,
                                 on_abort_before_start=self._abort_queued)
        handle.plan = plan
        job = Job(handle, dom, request, post_method, recover_method,
                   Hooks(on_progress, on_sample, on_post_copy, on_action))
        self._register(handle)
        job.inline = True  # a thread that cannot start now is an error raised here
        try:
            self._slots.submit(handle, job)
        finally:
            job.inline = False
        return handle

    def reattach(
        self,
        domain: Any,
        dest: str | None = None,
        *,
        post_method: Callback,
        recover_method: Callback,
        request: MigrationRequest | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_sample: Callable[[float, Any], None] | None = None,
        on_post_copy: Callable[[], None] | None = None,
        on_action: Callable[[Any], None] | None = None,
        **request_fields: Any,
    ) -> MigrationHandle:
        """Follow a migration of ``domain`` that runs in libvirt already (after a restart).

        For a job this service started before it stopped (``running_at_start``
        lists what runs): a monitor and its policy take it over, with time
        counted from the job's start, and it settles like any other migration.
        The arguments are those the migration was started with.  Raises
        :class:`~migrator.exception.MigrationRefused` when no migration job runs
        on the domain or this driver follows it already.
        """
        self._require_init()
        request = build(dest, request, request_fields)
        dom = concurrency.blocking(domain)
        found = startup.running_migration(dom)
        plan = self.plan(dom, request)
        handle = MigrationHandle(found.name, found.uuid, request.dest)
        handle.plan = plan
        handle.status = "running"
        job = Job(handle, dom, request, post_method, recover_method,
                   Hooks(on_progress, on_sample, on_post_copy, on_action), reattach=found)
        self._register(handle)
        self._slots.occupy()
        self._launch(job)
        return handle

    def predict(self, domain: Any, *, link_rate: float | None = None,
                dirty_rate: float | None = None, memory: float | None = None) -> Prediction:
        """What migrating ``domain`` would do under this driver's options: measures its
        dirty rate (a few seconds, never while it migrates) unless ``dirty_rate`` (bytes/s)
        is given (see :mod:`migrator.forecast`)."""
        facts = measure.guest_facts(domain, dirty_rate, memory=memory, clock=self.clock)
        return forecast.forecast(self.conf, facts, link_rate)

    def active_migrations(self) -> list[MigrationHandle]:
        with self._active_lock:
            return list(self._active.values())

    def _refuse_twice(self, uuid: str, name: str) -> None:
        """A guest this driver migrates already (checked under ``_active_lock``)."""
        other = self._active.get(uuid)
        if other is not None:
            raise exception.MigrationRefused(f"{name} is already being migrated to {other.dest}")

    def _register(self, handle: MigrationHandle) -> None:
        with self._active_lock:
            self._refuse_twice(handle.uuid, handle.name)
            self._active[handle.uuid] = handle

    # -- threads ------------------------------------------------------------------------

    def _launch(self, job: Job) -> None:
        """Start the migration's thread; if that fails, settle it (or, inside
        ``live_migration()``, raise: nothing started, no callback)."""
        if job.reattach is None:
            job.handle.status = "preparing"  # it left the queue, in queue order
        try:
            concurrency.spawn(lambda: self._run(job), f"migrator-{job.handle.name}")
        except BaseException as exc:  # noqa: BLE001 - e.g. "can't start new thread"
            LOG.error("%scould not start the migration's thread: %s", job.label, exc)
            self._slots.release()
            if job.inline:  # still inside live_migration(): refuse, no callback
                with self._active_lock:
                    self._active.pop(job.handle.uuid, None)
                raise exception.MigratorError(
                    f"{job.handle.name}: could not start the migration's thread ({exc}); "
                    "nothing was started") from exc
            self._finish(job, execution.unstarted(job.handle, FAILED,
                                              f"could not start a thread: {exc}"))

    def _abort_queued(self, handle: MigrationHandle) -> None:
        """abort() before a monitor took over: a queued migration is settled at once."""
        job = self._slots.cancel(handle)
        if job is not None:
            self._settle_unstarted(job, CANCELLED, "cancelled while queued")

    def _settle_unstarted(self, job: Job, status: str, error: str) -> None:
        handle = job.handle
        outcome = execution.unstarted(handle, status, error)
        try:  # the callback runs in a thread of its own, as for every migration
            concurrency.spawn(lambda: self._finish(job, outcome), f"migrator-{handle.name}")
        except BaseException:  # noqa: BLE001 - no thread to be had: run it here
            self._finish(job, outcome)

    def _run(self, job: Job) -> None:
        outcome: MigrationOutcome | None = None
        try:
            outcome = execution.execute(self._env(), job)
        except BaseException as exc:  # noqa: BLE001 - settled below, truthfully
            outcome = execution.crashed(job, exc)
        finally:
            close_all(job.conns)
            self._slots.release()
            if outcome is not None:
                self._finish(job, outcome)

    def _finish(self, job: Job, outcome: MigrationOutcome) -> None:
        """Exactly one callback, whatever it raises; then ``wait()`` returns."""
        handle = job.handle
        outcome.migrate_data = job.request.migrate_data
        outcome.redact()
        handle.end(outcome, cancelled_before_start=outcome.status == CANCELLED
                   and outcome.rule == "not-started")
        with self._active_lock:
            self._active.pop(handle.uuid, None)
        callback = job.post_method if outcome.succeeded else job.recover_method
        try:
            callback(outcome)
        except BaseException as exc:  # noqa: BLE001 - reported on the outcome and in the log
            outcome.callback_error = f"{type(exc).__name__}: {exc}"
            LOG.exception("%s: the %s callback raised", handle.name,
                          getattr(callback, "__name__", "callback"))
        finally:
            handle.released()

    # -- helpers ------------------------------------------------------------------------

    def _env(self) -> execution.Env:
        assert self.host is not None
        return execution.Env(
            conf=self.conf, clock=self.clock, connect=self._connect,
            source_uri=self._source_uri, plan=self.plan,
            libvirt_version=self.host.libvirt_version, poll_interval=self.poll_interval,
            abort_timeout=self.abort_timeout, policy_factory=self._policy_factory,
            stopping=self._stopping)

    def _connect(self, uri_: str) -> Any:
        opener = self._open or _libvirt.module().open
        return concurrency.blocking(opener(uri_))


def migrate_and_wait(
    driver: LiveMigrationDriver,
    domain: Any,
    dest: str,
    timeout: float | None = None,
    **fields: Any,
) -> MigrationOutcome:
    """Run one migration synchronously (for scripts and tests); returns its outcome."""
    result: list[MigrationOutcome] = []
    handle = driver.live_migration(
        domain, dest, post_method=result.append, recover_method=result.append, **fields
    )
    outcome = handle.wait(timeout)
    if outcome is None:
        raise exception.MigratorError(f"migration of {handle.name} did not end in {timeout} s")
    return outcome


__all__: Sequence[str] = (
    "LiveMigrationDriver",
    "MigrationHandle",
    "MigrationOutcome",
    "MigrationRequest",
    "RunningMigration",
    "migrate_and_wait",
)
