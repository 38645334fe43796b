"""LiveMigrationDriver: start-up checks, one migration end to end, and its handle.

The driver is the only part of migrator that owns threads and libvirt
connections.  Per migration it opens two connections of its own to the source
libvirt: one blocks in ``migrateToURI3``, the other carries the monitor's
``jobStats`` polls and the control calls (abort, post-copy, suspend, downtime),
because libvirt 9.0's client can hang when both share one connection.  Both
are closed when the migration has settled.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from oslo_config import cfg
from oslo_log import log as logging

from migrator import _libvirt, concurrency, exception, flags, uri
from migrator import conf as mconf
from migrator import constants as c
from migrator._libvirt import error_code, error_message, shut_off_by_migration
from migrator.adaptive import AdaptivePolicy
from migrator.clock import Clock, RealClock
from migrator.jobstats import data_gb
from migrator.monitor import (
    CANCELLED,
    COMPLETED,
    FAILED,
    POSTCOPY_FAILED,
    Monitor,
    Outcome,
    Worker,
)
from migrator.policy import MonitorSettings, Policy, StepsPolicy, Tunables
from migrator.progress import Progress, ProgressTracker

LOG = logging.getLogger(__name__)

Callback = Callable[["MigrationOutcome"], Any]


@dataclass
class MigrationOutcome(Outcome):
    """The :class:`~migrator.monitor.Outcome` plus what the caller passed in."""

    domain: str = ""
    uuid: str = ""
    dest: str = ""
    migrate_data: Any = None
    plan: flags.Plan | None = None
    callback_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        doc = super().to_dict()
        doc.update(domain=self.domain, dest=self.dest, callback_error=self.callback_error)
        if self.plan is not None:
            doc["flags"] = self.plan.flags
            doc["flag_names"] = self.plan.flag_names
        return doc


@dataclass
class MigrationRequest:
    """What the caller knows about one migration (Nova's migrate_data, flattened)."""

    dest: str
    inbound_addr: str | None = None  # from the destination (pre_live_migration)
    block_migration: bool = False
    disks: tuple[str, ...] = ()
    disk_sizes: tuple[int, ...] = ()  # bytes of each copied disk, for the time budget
    vfio: bool = False
    vpmem: bool = False
    destination_xml: str | None = None
    persistent_xml: str | None = None
    migrate_data: Any = None
    # A libvirt URI *this process* can open to read the destination's completed-job
    # stats (the actual downtime).  None: no connection is made to the destination
    # (it may be unreachable from here) and the outcome's downtime is unknown.
    dest_connect_uri: str | None = None


class _Slots:
    """First-come, first-served slots for ``max_concurrent_live_migrations``."""

    def __init__(self, size: int):
        self.size = size
        self._busy = 0
        self._waiting: collections.deque[object] = collections.deque()
        self._cond = threading.Condition()

    def enqueue(self, token: object) -> None:
        """Take a place in the queue now (in the caller's thread: call order is queue order)."""
        with self._cond:
            self._waiting.append(token)

    def acquire(self, token: object, cancelled: threading.Event) -> bool:
        """Wait for a free slot for the enqueued ``token``; False if ``cancelled`` first."""
        with self._cond:
            try:
                while not cancelled.is_set():
                    if self._busy < self.size and self._waiting[0] is token:
                        self._busy += 1
                        return True
                    self._cond.wait(0.5)
                return False
            finally:
                self._waiting.remove(token)
                self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    @property
    def queued(self) -> int:
        return len(self._waiting)


class MigrationHandle:
    """A running (or queued) migration: control it from any thread, wait for it."""

    def __init__(self, name: str, uuid: str, dest: str):
        self.name = name
        self.uuid = uuid
        self.dest = dest
        self.status = "queued"
        self.plan: flags.Plan | None = None
        self.progress: Progress | None = None
        self.outcome: MigrationOutcome | None = None
        self._monitor: Monitor | None = None
        self._cancel_queued = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._early: list[tuple[str, Future[bool]]] = []
        self._slots: _Slots | None = None

    def __repr__(self) -> str:
        return f"<MigrationHandle {self.name} -> {self.dest} {self.status}>"

    def _control(self, kind: str) -> Future[bool]:
        with self._lock:
            if self._done.is_set():
                fut: Future[bool] = Future()
                fut.set_exception(exception.NoActiveMigration(f"{self.name}: already ended"))
                return fut
            if self._monitor is not None:
                return self._monitor.request(kind)
            # Not started yet: an abort cancels it in the queue; a force-complete
            # waits for the monitor, which hands it to the policy.
            fut = Future()
            self._early.append((kind, fut))
            if kind == "abort":
                self._cancel_queued.set()
                if self._slots is not None:
                    self._slots.wake()
            return fut

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
        policy_factory: Callable[[MonitorSettings, flags.Plan], Policy] | None = None,
        open_connection: Callable[[str], Any] | None = None,
        queue: bool = True,
    ):
        self.conf = conf
        # False: the caller queues (Nova's compute manager does, with its own
        # max_concurrent_live_migrations): every migration starts at once.
        self.queue = queue
        self.connection = connection
        self.clock = clock or RealClock()
        self.poll_interval = poll_interval
        self.abort_timeout = abort_timeout
        self._policy_factory = policy_factory
        self._open = open_connection
        self.host: flags.HostFacts | None = None
        self.options: flags.Options | None = None
        self.values: dict[str, Any] = {}
        self.startup_decisions: list[flags.Decision] = []
        self._slots: _Slots | None = None
        self._active: dict[str, MigrationHandle] = {}
        self._active_lock = threading.Lock()

    # -- start-up -----------------------------------------------------------------

    def init_host(self) -> flags.HostFacts:
        """Read the host's versions and validate the options; fail fast on contradictions.

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
        if self.queue:
            self._slots = _Slots(int(values["max_concurrent_live_migrations"]))
        return host

    def pre_live_migration(self) -> dict[str, Any]:
        """On the destination: what the source needs from it (Nova's migrate_data)."""
        addr = self.conf.libvirt.live_migration_inbound_addr
        if addr is not None:
            uri.validate_address(addr, "[libvirt] live_migration_inbound_addr")
        return {"target_connect_addr": addr}

    def _require_init(self) -> tuple[flags.HostFacts, flags.Options]:
        if self.host is None or self.options is None:
            raise exception.MigratorError("call init_host() before migrating")
        return self.host, self.options

    # -- one migration ------------------------------------------------------------

    def plan(self, domain: Any, request: MigrationRequest) -> flags.Plan:
        """The migrateToURI3 call this driver would make for ``domain`` now."""
        host, options = self._require_init()
        state = concurrency.blocking(domain).state()[0]
        facts = flags.MigrationFacts(
            dest=request.dest,
            inbound_addr=request.inbound_addr,
            block_migration=request.block_migration,
            disks=tuple(request.disks),
            paused=state == c.VIR_DOMAIN_PAUSED,
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

        The migration is planned now: a refused plan raises
        (:class:`~migrator.exception.MigrationRefused`, ``InvalidAddress``,
        ``ConfigError``) and no callback runs.  Otherwise exactly one of
        ``post_method`` (completed) or ``recover_method`` (failed, cancelled,
        timed out) is called with the :class:`MigrationOutcome`, from the
        migration's thread.  ``request_fields`` are :class:`MigrationRequest`
        fields (``inbound_addr``, ``block_migration``, ``disks``, ...).
        ``on_progress`` gets a :class:`~migrator.progress.Progress` every
        ``live_migration_monitor_interval``; ``on_sample`` (for tracing) every
        job sample with the seconds since the monitor started; ``on_post_copy``
        once, from the monitor's thread, right after the job switched to post-copy;
        ``on_action`` every :class:`~migrator.monitor.ActionRecord` the monitor
        records, as it records it (a failed action too).
        """
        if request is None:
            if dest is None:
                raise TypeError("live_migration() needs dest or request")
            request = MigrationRequest(dest=dest, **request_fields)
        plan = self.plan(domain, request)
        dom = concurrency.blocking(domain)
        handle = MigrationHandle(dom.name(), dom.UUIDString(), request.dest)
        handle.plan = plan
        handle._slots = self._slots
        with self._active_lock:
            if handle.uuid in self._active:
                raise exception.MigrationRefused(
                    f"{handle.name} is already being migrated to {self._active[handle.uuid].dest}"
                )
            self._active[handle.uuid] = handle
        if self._slots is not None:
            self._slots.enqueue(handle)
        concurrency.spawn(
            lambda: self._run(
                handle, dom, request, post_method, recover_method,
                (on_progress, on_sample, on_post_copy, on_action),
            ),
            f"migrator-{handle.name}",
        )
        return handle

    def active_migrations(self) -> list[MigrationHandle]:
        with self._active_lock:
            return list(self._active.values())

    # -- the migration thread -------------------------------------------------------

    def _connect(self, uri_: str) -> Any:
        opener = self._open or _libvirt.module().open
        return concurrency.blocking(opener(uri_))

    def _tunables(self) -> Tunables:
        lv = self.conf.libvirt
        return Tunables(lv.live_migration_completion_timeout, lv.live_migration_timeout_action)

    def _settings(self, dom: Any, plan: flags.Plan, request: MigrationRequest) -> MonitorSettings:
        memory = int(dom.info()[1]) * 1024  # maxMem in KiB
        lv = self.conf.libvirt
        sizes = request.disk_sizes if plan.has(c.VIR_MIGRATE_NON_SHARED_INC) else ()
        return MonitorSettings(
            data_gb=data_gb(memory, list(sizes)),
            downtime_ms=lv.live_migration_downtime,
            downtime_steps=lv.live_migration_downtime_steps,
            downtime_delay=lv.live_migration_downtime_delay,
            post_copy_enabled=plan.post_copy and not request.vpmem,
            auto_converge_enabled=plan.auto_converge,
            monitor_interval=lv.live_migration_monitor_interval,
        )

    def _make_policy(self, settings: MonitorSettings, plan: flags.Plan) -> Policy:
        if self._policy_factory is not None:
            return self._policy_factory(settings, plan)
        if self.conf.libvirt.live_migration_convergence == "adaptive":
            return AdaptivePolicy(settings)
        return StepsPolicy(settings)

    def _run(self, handle, dom, request, post_method, recover_method, hooks) -> None:
        outcome: MigrationOutcome | None = None
        conns: list[Any] = []
        acquired = False
        try:
            if self._slots is not None:
                acquired = self._slots.acquire(handle, handle._cancel_queued)
                started = acquired
            else:
                started = not handle._cancel_queued.is_set()
            if not started:
                outcome = self._early_outcome(handle, CANCELLED, "cancelled while queued")
                return
            handle.status = "preparing"
            outcome = self._migrate(handle, dom, request, hooks, conns)
        except Exception as exc:  # noqa: BLE001 - settled below, the guest untouched
            LOG.exception("%s: migration could not start", handle.name)
            outcome = self._early_outcome(handle, FAILED, f"{type(exc).__name__}: {exc}")
        finally:
            for conn in conns:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 - best effort
                    pass
            if acquired and self._slots is not None:
                self._slots.release()
            if outcome is not None:
                outcome.migrate_data = request.migrate_data
                self._finish(handle, outcome, post_method, recover_method)

    def _early_outcome(self, handle: MigrationHandle, status: str, error: str) -> MigrationOutcome:
        with handle._lock:
            early, handle._early = handle._early, []
        for kind, fut in early:
            if kind == "abort" and status == CANCELLED:
                fut.set_result(True)
            else:
                fut.set_exception(exception.NoActiveMigration(error))
        return MigrationOutcome(
            status=status, mode=None, total_seconds=0.0, downtime_ms=None, passes=0,
            error=error, domain=handle.name, uuid=handle.uuid, dest=handle.dest,
            plan=handle.plan,
        )

    def _migrate(self, handle, dom, request, hooks, conns) -> MigrationOutcome:
        on_progress, on_sample, on_post_copy, on_action = hooks
        plan = self.plan(dom, request)  # facts may have changed while queued
        handle.plan = plan
        source_uri = self.connection.getURI()
        mig_conn = self._connect(source_uri)
        conns.append(mig_conn)
        mon_conn = self._connect(source_uri)
        conns.append(mon_conn)
        mig_dom = concurrency.blocking(mig_conn.lookupByUUIDString(handle.uuid))
        mon_dom = concurrency.blocking(mon_conn.lookupByUUIDString(handle.uuid))
        settings = self._settings(mon_dom, plan, request)
        policy = self._make_policy(settings, plan)
        tracker = ProgressTracker(settings.monitor_interval)

        def reconnect() -> Any:
            conn = self._connect(source_uri)
            conns.append(conn)
            return concurrency.blocking(conn.lookupByUUIDString(handle.uuid))

        def progress(p: Progress) -> None:
            handle.progress = p
            if on_progress is not None:
                on_progress(p)  # the monitor reports a failure as a note

        label = f"[{handle.name} -> {handle.dest}] "
        LOG.info(
            "%sstarting: flags %s (%s), uri %s, params %s", label, plan.flags,
            "|".join(n[len("VIR_MIGRATE_"):] for n in plan.flag_names),
            uri.mask_credentials(plan.uri), plan.display_params(),
        )
        worker = Worker(
            lambda: mig_dom.migrateToURI3(plan.uri, plan.params, plan.flags),
            f"migrator-op-{handle.name}",
        )
        monitor = Monitor(
            domain=mon_dom, reconnect=reconnect, worker=worker, policy=policy,
            clock=self.clock, tunables=self._tunables, progress=tracker, on_progress=progress,
            on_sample=on_sample, on_post_copy=on_post_copy, on_action=on_action,
            poll_interval=self.poll_interval, abort_timeout=self.abort_timeout, label=label,
        )
        with handle._lock:
            handle._monitor = monitor
            early, handle._early = handle._early, []
        for kind, fut in early:  # requests made while queued or planning
            _chain(monitor.request(kind), fut)
        monitor.serve_requests()  # an abort that came in meanwhile prevents the start
        handle.status = "running"
        worker.start()
        result = monitor.run()
        source = _SourceView(self, source_uri, handle.uuid, conns)
        if result.status == POSTCOPY_FAILED:
            handle.status = "recovering"
            dest_uri = request.dest_connect_uri
            self._resume_post_copy(
                result, source, plan, label,
                # without a way to look, the guest is assumed to wait on the destination
                dest_gone=lambda: bool(dest_uri) and self._gone_from(dest_uri, handle.uuid,
                                                                     conns))
        if (result.status == COMPLETED and worker.error is not None
                and plan.has(c.VIR_MIGRATE_UNDEFINE_SOURCE)):
            # libvirt finished without the client, so its Confirm phase (which undefines) ran
            # without us: a shut-off definition may be left on the source
            source.undefine_leftover(result, label)
        # a settled handle must not keep the libvirt connections alive
        monitor.domain = None
        worker.forget()
        outcome = MigrationOutcome(
            **{f: getattr(result, f) for f in Outcome.__dataclass_fields__},
            domain=handle.name, uuid=handle.uuid, dest=handle.dest, plan=plan,
        )
        if outcome.succeeded and request.dest_connect_uri:
            outcome.downtime_ms = self._final_downtime(request.dest_connect_uri, handle.uuid,
                                                       conns)
        if outcome.progress is not None:
            try:
                progress(outcome.progress)  # the final report: 100 % only on completion
            except Exception as exc:  # noqa: BLE001 - the job is settled; reported
                outcome.notes.append(f"progress callback raised {type(exc).__name__}: {exc}")
                LOG.exception("%sprogress callback failed", label)
        return outcome

    def _resume_post_copy(
        self, result: Outcome, source: _SourceView, plan: flags.Plan, label: str,
        dest_gone: Callable[[], bool],
    ) -> None:
        """Resume a post-copy whose link failed (POSTCOPY_RESUME, libvirt >= 8.5).

        Retries until the hosts can reach each other again, for at most
        ``live_migration_postcopy_recovery_timeout`` seconds.  Updates ``result``.
        """
        assert self.host is not None
        timeout = self.conf.libvirt.live_migration_postcopy_recovery_timeout
        first_error = result.error
        since = c.MIGRATE_FLAGS["POSTCOPY_RESUME"].since
        if self.host.libvirt_version < since:
            _give_up_post_copy(
                result, dest_gone,
                f"post-copy failed ({first_error}); resuming it needs libvirt "
                f"{'.'.join(map(str, since))}",
                "the guest runs on the destination with part of its memory on the source; "
                "repair the link and resume the migration by hand")
            return
        if timeout <= 0:
            _give_up_post_copy(
                result, dest_gone,
                f"post-copy failed ({first_error}); automatic resume is off "
                "(live_migration_postcopy_recovery_timeout = 0)",
                "repair the link and resume it with virsh migrate --postcopy --postcopy-resume")
            return
        flags_ = plan.flags | c.VIR_MIGRATE_POSTCOPY | c.VIR_MIGRATE_POSTCOPY_RESUME
        start = self.clock.now()
        attempt, last = 0, first_error
        idle = threading.Event()
        while True:
            waited = self.clock.now() - start
            if source.moved():
                # libvirt/QEMU finished the post-copy by itself once the link was back
                result.status, result.error, result.error_code = COMPLETED, None, None
                result.notes.append(f"post-copy was interrupted ({first_error}) and finished "
                                    f"after {waited:.1f} s")
                result.total_seconds += waited
                return
            dom = source.domain()
            if dom is None:
                if waited >= timeout:
                    result.total_seconds += waited
                    _give_up_post_copy(
                        result, dest_gone,
                        f"post-copy failed ({first_error}) and the source libvirt stayed "
                        f"unreachable for {timeout} s",
                        "the guest runs on the destination; check where its memory is")
                    return
                self.clock.wait(idle, min(5.0, max(timeout - waited, 0.1)))
                continue
            attempt += 1
            LOG.warning("%spost-copy failed (%s); resuming it, attempt %d", label, last,
                        attempt)
            worker = Worker(lambda d=dom: d.migrateToURI3(plan.uri, plan.params, flags_),
                            f"migrator-resume-{attempt}")
            worker.on_done = idle.set
            worker.start()
            while not worker.done.is_set():
                self.clock.wait(idle, self.poll_interval)
            idle.clear()
            waited = self.clock.now() - start
            if worker.error is None or source.moved():
                result.status, result.error, result.error_code = COMPLETED, None, None
                result.notes.append(
                    f"post-copy failed ({first_error}) and was resumed after {waited:.1f} s "
                    f"({attempt} attempt{'s' if attempt > 1 else ''})")
                result.total_seconds += waited
                LOG.info("%s%s", label, result.notes[-1])
                return
            last = error_message(worker.error)
            if waited >= timeout:
                result.total_seconds += waited
                _give_up_post_copy(
                    result, dest_gone,
                    f"post-copy failed ({first_error}) and could not be resumed within "
                    f"{timeout} s ({attempt} attempts, last error: {last})",
                    "the guest runs on the destination, paused on missing memory that is "
                    "still on the source; repair the link between the hosts and resume the "
                    "migration (virsh migrate --postcopy --postcopy-resume)")
                return
            self.clock.wait(idle, min(5.0, timeout - waited))

    def _gone_from(self, host_uri: str, uuid: str, conns: list[Any]) -> bool:
        """True when libvirt at ``host_uri`` says the guest is not running there.

        False when it runs there or when that cannot be told within 5 s."""

        def look() -> bool:
            conn = self._connect(host_uri)
            conns.append(conn)
            try:
                return not conn.lookupByUUIDString(uuid).isActive()
            except Exception as exc:  # noqa: BLE001 - libvirtError
                if error_code(exc) == c.VIR_ERR_NO_DOMAIN:
                    return True
                raise

        finished, gone = concurrency.call_with_timeout(look, 5.0, "migrator-dest-state")
        return finished and gone is True

    def _final_downtime(self, dest_uri: str, uuid: str, conns: list[Any]) -> int | None:
        """The actual downtime, from the destination's completed-job stats (best effort)."""

        def read() -> int | None:
            conn = self._connect(dest_uri)
            conns.append(conn)
            stats = conn.lookupByUUIDString(uuid).jobStats(c.VIR_DOMAIN_JOB_STATS_COMPLETED)
            value = stats.get("downtime") if stats else None
            return int(value) if value is not None else None

        finished, result = concurrency.call_with_timeout(read, 5.0, "migrator-downtime")
        if finished and not isinstance(result, BaseException):
            return result
        return None

    def _finish(self, handle, outcome: MigrationOutcome, post_method, recover_method) -> None:
        _redact(outcome)
        handle.outcome = outcome
        handle.status = outcome.status
        with self._active_lock:
            self._active.pop(handle.uuid, None)
        callback = post_method if outcome.succeeded else recover_method
        try:
            callback(outcome)
        except Exception as exc:  # noqa: BLE001 - reported on the outcome and in the log
            outcome.callback_error = f"{type(exc).__name__}: {exc}"
            LOG.exception("%s: the %s callback raised", handle.name, callback.__name__
                          if hasattr(callback, "__name__") else "callback")
        finally:
            handle._done.set()


class _SourceView:
    """Fresh looks at the guest on the source, for decisions after the job ended.

    Each look opens a new connection (the old ones may have died with the link
    or a daemon restart); they are closed with the migration's others.
    """

    def __init__(self, driver: LiveMigrationDriver, source_uri: str, uuid: str, conns: list):
        self._driver, self._uri, self._uuid, self._conns = driver, source_uri, uuid, conns

    def domain(self) -> Any | None:
        """The guest on the source; None when libvirt cannot be reached."""
        try:
            conn = self._driver._connect(self._uri)
        except Exception:  # noqa: BLE001 - unreachable for now
            return None
        self._conns.append(conn)
        try:
            return concurrency.blocking(conn.lookupByUUIDString(self._uuid))
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) == c.VIR_ERR_NO_DOMAIN:
                return _GONE
            return None

    def moved(self) -> bool:
        """True when the guest has left the source (undefined, or shut off by migration)."""
        dom = self.domain()
        if dom is _GONE:
            return True
        if dom is None:
            return False
        try:
            state, reason = dom.state()[:2]
        except Exception as exc:  # noqa: BLE001
            return error_code(exc) == c.VIR_ERR_NO_DOMAIN
        return shut_off_by_migration(state, reason)

    def undefine_leftover(self, result: Outcome, label: str) -> None:
        """UNDEFINE_SOURCE was asked for, but libvirt finished without the client
        (its Confirm phase undefines): remove a SHUTOFF/MIGRATED definition left behind."""
        dom = self.domain()
        if dom is None or dom is _GONE:
            return
        try:
            state, reason = dom.state()[:2]
            if shut_off_by_migration(state, reason):
                dom.undefine()
                result.notes.append("removed the source's shut-off definition of the migrated "
                                    "guest (libvirt finished the job without the client)")
                LOG.info("%s%s", label, result.notes[-1])
        except Exception as exc:  # noqa: BLE001 - best effort; say so
            result.notes.append(f"could not remove the source's leftover definition: {exc}")


_GONE = object()  # the guest's domain no longer exists on the source


def _give_up_post_copy(result: Outcome, dest_gone: Callable[[], bool], what: str,
                       where_and_advice: str) -> None:
    """The terminal message of a post-copy that stays broken.

    It normally tells the operator the guest waits on the destination; if the
    destination no longer runs it (destroyed during the recovery), that advice
    would be dangerous: the paused source copy lacks every page changed there.
    """
    if dest_gone():
        where_and_advice = (
            "the guest is no longer running on the destination, so the memory it changed "
            "there is lost; the copy left paused on the source is incomplete and must not "
            "be resumed: restart the guest from its disks")
    result.error = f"{what}: {where_and_advice}"
    LOG.error("%s", result.error)


def _redact(outcome: MigrationOutcome) -> None:
    """Remove the live_migration_uri password from everything the outcome carries.

    libvirt echoes the URI in some errors ("Unable to parse URI ..."), and the
    outcome is logged and stored by callers.
    """
    secret = uri.password(outcome.plan.uri) if outcome.plan is not None else None
    if not secret:
        return
    hide = lambda text: uri.redact(text, secret) if text else text  # noqa: E731
    outcome.error = hide(outcome.error)
    outcome.monitor_error = hide(outcome.monitor_error)
    outcome.notes = [hide(n) for n in outcome.notes]
    outcome.actions = [
        dataclasses.replace(a, reason=hide(a.reason), error=hide(a.error))
        for a in outcome.actions
    ]


def _chain(source: Future[bool], target: Future[bool]) -> None:
    def copy(f: Future[bool]) -> None:
        exc = f.exception()
        if exc is not None:
            target.set_exception(exc)
        else:
            target.set_result(f.result())

    source.add_done_callback(copy)


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
    "migrate_and_wait",
)
_ = field  # dataclass helpers imported for subclasses
