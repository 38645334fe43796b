"""Before a migration starts, and after the service restarts: what runs on the guest now.

Only our own job (DESIGN.md, principle 5): a domain that already has a job
(a ``virsh migrate``, another service, another driver) is never migrated, so
the monitor can never steer or abort somebody else's job.  After a restart,
:func:`running_migrations` lists the outgoing migrations libvirt still runs; a
caller re-attaches the ones it started (``LiveMigrationDriver.reattach``), and
migrator touches no other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from oslo_log import log as logging

from migrator import concurrency, constants, exception
from migrator._libvirt import error_code, error_message
from migrator.facts import has_job
from migrator.jobstats import JobSample

LOG = logging.getLogger(__name__)

VIR_CONNECT_LIST_DOMAINS_ACTIVE = 1  # libvirt's value; not needed elsewhere

_JOB_NAMES = {constants.VIR_DOMAIN_JOB_BOUNDED: "bounded",
              constants.VIR_DOMAIN_JOB_UNBOUNDED: "running"}
_OPERATIONS = {constants.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT: "outgoing migration",
               constants.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN: "incoming migration"}


@dataclass(frozen=True)
class RunningMigration:
    """An outgoing migration job found running in libvirt."""

    name: str
    uuid: str
    elapsed: float  # seconds since the job started
    post_copy: bool  # the source is paused for post-copy
    remaining: int  # bytes libvirt still has to copy


def _stats(dom: Any) -> dict[str, Any]:
    stats = dom.jobStats()
    return stats if isinstance(stats, Mapping) else {}  # type: ignore[return-value]


def _describe(stats: Mapping[str, Any]) -> str:
    kind = _JOB_NAMES.get(stats.get("type"), f"type {stats.get('type')}")
    what = _OPERATIONS.get(stats.get("operation"), "job")
    elapsed = JobSample.from_stats(stats).time_elapsed_ms / 1000
    return f"a {kind} {what} ({elapsed:.0f} s old)" if elapsed else f"a {kind} {what}"


def check_startable(dom: Any) -> None:
    """Refuse a guest that is not running, or that has a job: migrator did not start it."""
    state = dom.state()[0]
    if state not in (constants.VIR_DOMAIN_RUNNING, constants.VIR_DOMAIN_PAUSED):
        raise exception.MigrationRefused(
            f"{dom.name()} is not running (state {state}); a live migration moves a running "
            "or paused guest: start it first, or migrate its definition offline")
    refusal = foreign_job(dom)
    if refusal:
        raise exception.MigrationRefused(refusal)


def refusal(dom: Any) -> str | None:
    """Why ``dom`` cannot be migrated now (None: it can); for a start after a wait."""
    try:
        check_startable(dom)
    except exception.MigrationRefused as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - libvirtError
        if error_code(exc) == constants.VIR_ERR_NO_DOMAIN:
            return "the guest is no longer on the source"
        raise
    return None


def foreign_job(dom: Any) -> str | None:
    """Why ``dom`` cannot be migrated now because of a job on it (None: it has none)."""
    try:
        stats = _stats(dom)
    except Exception as exc:  # noqa: BLE001 - libvirtError: the plan's checks come next
        LOG.debug("jobStats before the start failed: %s", error_message(exc))
        return None
    if stats.get("type", constants.VIR_DOMAIN_JOB_NONE) == constants.VIR_DOMAIN_JOB_NONE:
        if not has_job(dom):
            return None
        stats = {"type": constants.VIR_DOMAIN_JOB_UNBOUNDED}  # one that is just beginning
    return (f"{dom.name()} already has {_describe(stats)} that migrator did not start; "
            "migrator never touches another job: wait for it to end, or end it "
            "(virsh domjobabort) and try again")


def running_migration(dom: Any) -> RunningMigration:
    """The outgoing migration running on ``dom``; MigrationRefused when there is none."""
    stats = _stats(dom)
    sample = JobSample.from_stats(stats)
    operation = stats.get("operation", constants.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT)
    if not sample.is_running or operation != constants.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT:
        raise exception.MigrationRefused(
            f"no outgoing migration runs on {dom.name()} (its job: "
            f"{_describe(stats) if sample.type else 'none'}): nothing to re-attach")
    state, reason = dom.state()[:2]
    return RunningMigration(
        name=dom.name(), uuid=dom.UUIDString(), elapsed=sample.time_elapsed_ms / 1000,
        post_copy=(state == constants.VIR_DOMAIN_PAUSED
                   and reason == constants.VIR_DOMAIN_PAUSED_POSTCOPY),
        remaining=sample.data_remaining)


def running_migrations(conn: Any) -> list[RunningMigration]:
    """Every outgoing migration libvirt runs on this host now (best effort)."""
    found = []
    try:
        domains = conn.listAllDomains(VIR_CONNECT_LIST_DOMAINS_ACTIVE)
    except Exception as exc:  # noqa: BLE001 - libvirtError: nothing to report
        LOG.warning("could not list the running guests: %s", error_message(exc))
        return []
    for domain in domains:
        try:
            found.append(running_migration(concurrency.blocking(domain)))
        except Exception:  # noqa: BLE001 - no migration, or gone meanwhile
            continue
    return found


def log_found(found: list[RunningMigration], followed: Mapping[str, Any]) -> None:
    for job in found:
        if job.uuid in followed:
            continue
        LOG.warning("%s: an outgoing migration has been running for %.0f s (%s remaining); "
                    "migrator does not touch it unless it is re-attached "
                    "(LiveMigrationDriver.reattach)", job.name, job.elapsed,
                    f"{job.remaining / 2**20:.0f} MiB")
