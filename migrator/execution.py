"""One migration in its own thread: the monitor built from the plan, run, then tidied up.

The driver queues migrations and owns their threads and callbacks; this module
is what each thread does: open the migration's connections, build the monitor
(its policy, the call it starts, or the job it re-attaches), run it, resume a
failed post-copy, tidy the source and read the downtime.  Everything it needs
from the driver comes in an :class:`Env`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from oslo_config import cfg
from oslo_log import log as logging

from migrator import _libvirt, concurrency, constants, flags, monitoring, startup, uri
from migrator.classify import CallEnd, Conduct
from migrator.clock import Clock
from migrator.concurrency import Worker
from migrator.facts import Destination, GoneDomain, SourceView
from migrator.handle import MigrationHandle
from migrator.monitor import Hooks, Monitor
from migrator.outcome import (
    CANCELLED,
    COMPLETED,
    FAILED,
    POSTCOPY_FAILED,
    UNKNOWN,
    MigrationOutcome,
    Outcome,
)
from migrator.progress import Progress, ProgressTracker
from migrator.recovery import Recovery, recover
from migrator.request import MigrationRequest
from migrator.startup import RunningMigration

LOG = logging.getLogger("migrator.driver")  # the migration lifecycle keeps its logger name

Callback = Callable[[MigrationOutcome], Any]


@dataclass
class Job:
    """Everything one migration's thread needs (never referenced by the handle)."""

    handle: MigrationHandle
    dom: Any
    request: MigrationRequest
    post_method: Callback
    recover_method: Callback
    hooks: Hooks
    conns: list[Any] = dataclasses.field(default_factory=list)
    reattach: RunningMigration | None = None
    inline: bool = False  # being started inside live_migration() itself

    @property
    def label(self) -> str:
        return f"[{self.handle.name} -> {self.handle.dest}] "


@dataclass(frozen=True)
class Env:
    """What a migration's thread needs from its driver."""

    conf: cfg.ConfigOpts
    clock: Clock
    connect: Callable[[str], Any]
    source_uri: str
    plan: Callable[[Any, MigrationRequest], flags.Plan]
    libvirt_version: constants.Version
    poll_interval: float
    abort_timeout: float
    policy_factory: monitoring.PolicyFactory | None
    stopping: threading.Event


def unstarted(handle: MigrationHandle, status: str, error: str) -> MigrationOutcome:
    return MigrationOutcome(
        status=status, mode=None, total_seconds=0.0, downtime_ms=None, passes=0,
        error=error, rule="not-started", domain=handle.name, uuid=handle.uuid,
        dest=handle.dest, plan=handle.plan)


def crashed(job: Job, exc: BaseException) -> MigrationOutcome:
    """Our own code failed: FAILED if nothing started yet, else UNKNOWN (never a rollback)."""
    handle = job.handle
    if handle.status in ("queued", "preparing"):
        LOG.exception("%smigration could not start", job.label)
        return unstarted(handle, FAILED, f"{type(exc).__name__}: {exc}")
    LOG.exception("%sthe monitor stopped unexpectedly", job.label)
    return MigrationOutcome(
        status=UNKNOWN, mode=None, total_seconds=0.0, downtime_ms=None, passes=0,
        error=f"the monitor stopped ({type(exc).__name__}: {exc}) while the job may go "
        "on in libvirt: do not roll back; check which host runs the guest",
        rule="monitor-stopped", domain=handle.name, uuid=handle.uuid, dest=handle.dest,
        plan=handle.plan)


def execute(env: Env, job: Job) -> MigrationOutcome:
    """Run ``job`` to its established end (in the migration's own thread)."""
    handle = job.handle
    refusal = None
    if job.reattach is None:
        if handle.cancelled:
            return unstarted(handle, CANCELLED, "cancelled while queued")
        refusal = startup.refusal(job.dom)  # the guest may have changed while queued
        if refusal is None:
            handle.plan = env.plan(job.dom, job.request)
    plan = handle.plan
    assert plan is not None
    monitor = _monitor(env, job, plan, refusal)
    handle.attach(monitor)
    handle.status = "running"
    monitor.start()
    result = monitor.run()
    return _after(env, job, monitor, result)


def _open_domain(env: Env, job: Job) -> Any:
    """The guest on a new connection of its own (closed when the migration settles)."""
    conn = env.connect(env.source_uri)
    job.conns.append(conn)
    try:
        return concurrency.blocking(conn.lookupByUUIDString(job.handle.uuid))
    except Exception as exc:  # noqa: BLE001 - libvirtError
        if _libvirt.error_code(exc) == constants.VIR_ERR_NO_DOMAIN:
            return GoneDomain(_libvirt.error_message(exc))  # it left: say so
        raise


def _monitor(env: Env, job: Job, plan: flags.Plan, refusal: str | None) -> Monitor:
    handle = job.handle
    monitor_conn: list[Any] = []

    def reconnect() -> Any:
        """The monitor's connection, anew: the one it replaces is closed."""
        dom = _open_domain(env, job)
        for old in monitor_conn:
            job.conns.remove(old)
            with contextlib.suppress(Exception):
                old.close()
        monitor_conn[:] = [job.conns[-1]]
        return dom

    mon_dom = reconnect()
    refusal = refusal or (None if job.reattach else startup.foreign_job(mon_dom))
    memory = 0 if refusal else int(mon_dom.info()[1]) * 1024  # maxMem in KiB
    settings = monitoring.settings(env.conf, memory, plan, job.request)
    conduct, worker, started = _conduct(env, job, plan, mon_dom, refusal)
    if worker is not None:
        LOG.info("%sstarting: flags %s (%s), uri %s, params %s", job.label, plan.flags,
                 "|".join(n[len("VIR_MIGRATE_"):] for n in plan.flag_names),
                 uri.mask_credentials(plan.uri), plan.display_params())
    dest = Destination(env.connect, job.request.dest_connect_uri, handle.uuid)
    conf = env.conf
    policy = monitoring.make_policy(conf, settings, plan, env.policy_factory,
                                    job.request.prediction)
    return Monitor(
        domain=mon_dom, reconnect=reconnect, worker=worker, clock=env.clock,
        policy=policy, tunables=lambda: monitoring.tunables(conf),
        progress=ProgressTracker(settings.monitor_interval, lambda: policy.applied_downtime_ms,
                                 lambda: policy.in_post_copy),
        config=monitoring.loop_config(conf, settings, job.label, env.poll_interval,
                                      env.abort_timeout),
        hooks=_hooks(job), dest=dest.facts, conduct=conduct, job_started=started,
    )


def _conduct(env: Env, job: Job, plan: flags.Plan, mon_dom: Any,
             refusal: str | None) -> tuple[Conduct, Worker | None, float | None]:
    """What is started: our call, nothing (refused), or nothing new (re-attached)."""
    try:
        persistent = bool(mon_dom.isPersistent())
    except Exception:  # noqa: BLE001 - gone meanwhile: establishing says what happened
        persistent = True
    undefine = plan.has(constants.VIR_MIGRATE_UNDEFINE_SOURCE)
    found = job.reattach
    if found is not None:
        conduct = Conduct(call=CallEnd.NONE, reattached=True, persistent=persistent,
                          undefine_source=undefine, post_copy=found.post_copy)
        return conduct, None, env.clock.now() - found.elapsed
    if refusal:
        LOG.warning("%snot started: %s", job.label, refusal)
        return (Conduct(call=CallEnd.NONE, refused=refusal, persistent=persistent,
                        undefine_source=undefine), None, None)
    mig_dom = _open_domain(env, job)
    worker = Worker(lambda: mig_dom.migrateToURI3(plan.uri, plan.params, plan.flags),
                    f"migrator-op-{job.handle.name}")
    return Conduct(persistent=persistent, undefine_source=undefine), worker, None


def _hooks(job: Job) -> Hooks:
    handle, on_progress = job.handle, job.hooks.on_progress

    def progress(p: Progress) -> None:
        handle.progress = p
        if on_progress is not None:
            on_progress(p)

    return Hooks(progress, job.hooks.on_sample, job.hooks.on_post_copy, job.hooks.on_action)


def _after(env: Env, job: Job, monitor: Monitor, result: Outcome) -> MigrationOutcome:
    """Recover a failed post-copy, tidy the source, read the downtime."""
    handle, plan = job.handle, job.handle.plan
    assert plan is not None
    source = SourceView(env.connect, env.source_uri, handle.uuid)
    dest = Destination(env.connect, job.request.dest_connect_uri, handle.uuid)
    if result.status == POSTCOPY_FAILED:
        handle.status = "recovering"
        recover(result, Recovery(
            source=source, plan=plan, clock=env.clock, libvirt_version=env.libvirt_version,
            timeout=env.conf.libvirt.live_migration_postcopy_recovery_timeout,
            poll_interval=env.poll_interval,
            # without a way to look, the guest is assumed to wait on the destination
            dest_gone=dest.lacks_guest, label=job.label, stopping=env.stopping))
    our_job_moved = result.status == COMPLETED and monitor.conduct.call is not CallEnd.OK
    if our_job_moved and plan.has(constants.VIR_MIGRATE_UNDEFINE_SOURCE):
        # libvirt finished without our client, so its Confirm phase (which
        # undefines) may not have run: a shut-off definition may be left behind
        note = source.undefine_leftover()
        if note:
            result.notes.append(note)
    handle.detach()
    monitor.domain = None  # a settled handle must not keep the libvirt connections alive
    if monitor.worker is not None:
        monitor.worker.forget()
    outcome = MigrationOutcome.of(result, domain=handle.name, uuid=handle.uuid,
                                  dest=handle.dest, plan=plan)
    if outcome.succeeded:
        outcome.downtime_ms = dest.downtime_ms()
    if outcome.progress is not None:
        monitor.report_final(outcome.progress, outcome.notes)
    return outcome
