"""``migrateToURI3``'s checks and start, as libvirt 9.0 runs them.

The checks are :mod:`migrator.testing.rules`'; the job that then runs is
:class:`~migrator.testing.migration.MigrationJob`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from migrator import constants
from migrator.testing import errors as E
from migrator.testing import rules
from migrator.testing.errors import ErrorSpec
from migrator.testing.libvirt_values import (
    VIR_DOMAIN_EVENT_DEFINED_ADDED,
    VIR_DOMAIN_EVENT_UNDEFINED_REMOVED,
)
from migrator.testing.migration import MigrationJob
from migrator.testing.model import DomainRecord, Host, JobPhase, Waiter

if TYPE_CHECKING:
    from migrator.testing.fakeconnect import virConnect
    from migrator.testing.world import World


def _refuse(spec: ErrorSpec | None) -> None:
    if spec is not None:
        raise spec.exc()


def start_migration(
    world: World, conn: virConnect, rec: DomainRecord, dconnuri: str, params: dict[str, Any],
    flags: int,
) -> Waiter | None:
    """Refuse the call as libvirt would, or start its job (None: nothing to wait for)."""
    host = conn.host
    _refuse(rules.check_client(flags, dconnuri)
            or rules.check_driver(flags, params, host.libvirt_version))
    if flags & constants.VIR_MIGRATE_POSTCOPY_RESUME:
        return _resume_post_copy(conn, rec, flags)
    _refuse(rules.check_p2p(flags, params))
    dest = world.resolve(dconnuri)
    if not world.link_up(host, dest):
        raise E.connection_refused(dest.hostname, dest.port).exc()
    _check_begin(host, rec, flags, params)
    if rec.outgoing is not None or rec.incoming is not None:
        raise E.state_lock_timeout().exc()
    if dest is host:
        raise E.spec(
            constants.VIR_ERR_INTERNAL_ERROR,
            constants.VIR_FROM_QEMU,
            f"Attempt to migrate guest to the same host {host.uuid}",
        ).exc()
    dest_name = params.get(constants.VIR_MIGRATE_PARAM_DEST_NAME) or rec.name
    _check_destination(dest, rec, dest_name)
    if flags & constants.VIR_MIGRATE_OFFLINE:
        _offline_migrate(world, host, rec, dest, dest_name, flags)
        return None
    waiter = Waiter(conn)
    job = MigrationJob(world, host, rec, dest, flags, params, waiter)
    rec.outgoing = job
    rec.completed = None
    world.jobs.append(job)
    return waiter


def _resume_post_copy(conn: virConnect, rec: DomainRecord, flags: int) -> Waiter:
    """VIR_MIGRATE_POSTCOPY_RESUME: the paused post-copy job goes on; the caller waits."""
    job = rec.outgoing
    _refuse(rules.check_resume(
        flags,
        rec.name,
        in_postcopy=job is not None
        and job.phase in (JobPhase.POSTCOPY, JobPhase.POSTCOPY_PAUSED),
        failed=job is not None and job.phase is JobPhase.POSTCOPY_PAUSED,
    ))
    assert job is not None
    waiter = Waiter(conn)
    job.resume_postcopy(waiter)
    return waiter


def _check_begin(host: Host, rec: DomainRecord, flags: int, params: dict[str, Any]) -> None:
    """The source's Begin phase: TLS policy, the guest's state and disks, throttling."""
    facts = rules.DomainFacts(
        name=rec.name,
        active=rec.active,
        paused=rec.state == constants.VIR_DOMAIN_PAUSED,
        disks=tuple((d.target, d.shared) for d in rec.guest.disks),
    )
    _refuse(
        rules.check_tls_force(flags, host.migrate_tls_force)
        or rules.check_begin(flags, params, facts)
        or rules.check_throttle_params(params)
    )


def _check_destination(dest: Host, rec: DomainRecord, dest_name: str) -> None:
    """The destination refuses a guest it already runs, or a name taken by another guest."""
    same = dest.domains.get(rec.uuid)
    if same is not None and same.active:
        # unverified wording
        raise E.spec(
            constants.VIR_ERR_OPERATION_INVALID,
            constants.VIR_FROM_DOMAIN,
            f"domain '{same.name}' is already active",
        ).exc()
    other = dest.by_name(dest_name)
    if other is not None and other.uuid != rec.uuid:
        # unverified wording
        raise E.spec(
            constants.VIR_ERR_OPERATION_FAILED,
            constants.VIR_FROM_DOMAIN,
            f"domain '{dest_name}' already exists with uuid {other.uuid}",
        ).exc()


def _offline_migrate(
    world: World, src: Host, rec: DomainRecord, dest: Host, dest_name: str, flags: int
) -> None:
    """VIR_MIGRATE_OFFLINE copies the persistent definition only."""
    existing = dest.domains.get(rec.uuid)
    if existing is None:
        existing = DomainRecord(
            name=dest_name,
            uuid=rec.uuid,
            guest=rec.guest,
            state=constants.VIR_DOMAIN_SHUTOFF,
            reason=constants.VIR_DOMAIN_SHUTOFF_UNKNOWN,
            persistent=True,
        )
        dest.domains[rec.uuid] = existing
    existing.persistent = True
    world.lifecycle(dest, existing, constants.VIR_DOMAIN_EVENT_DEFINED,
                    VIR_DOMAIN_EVENT_DEFINED_ADDED)
    if flags & constants.VIR_MIGRATE_UNDEFINE_SOURCE and rec.persistent:
        rec.persistent = False
        if not rec.active:
            src.domains.pop(rec.uuid, None)
        world.lifecycle(src, rec, constants.VIR_DOMAIN_EVENT_UNDEFINED,
                        VIR_DOMAIN_EVENT_UNDEFINED_REMOVED)
