"""Nova's libvirt driver, with its live migrations run by migrator.

What stays Nova's: everything before the ``migrateToURI3`` call
(``_live_migration_operation``: the destination XML with NUMA, VIFs, volumes,
serial ports and PCI devices, the serial-console check, direct-passthrough VIFs
detached, ``target_connect_addr`` from the destination's
``pre_live_migration``), the disk list, and what the callbacks do.  What
migrator does: the flags and URIs (its rules, explained in the log), the call,
the monitor (downtime steps or the adaptive policy, the completion timeout,
post-copy), force-complete and abort, and the outcome.

Nova's preparation is kept by running Nova's own ``_live_migration_operation``
with a stand-in for its ``Guest`` whose ``migrate()`` hands the prepared call
to migrator and waits for the outcome.  Nova's callbacks, Migration records
and instance progress are written in the thread Nova called
``live_migration()`` from, as Nova's own monitor does.
"""

from __future__ import annotations

from nova import exception as nova_exception
from nova.virt.libvirt import driver as libvirt_driver
from oslo_log import log as logging

import migrator.conf
from migrator import driver as mdriver
from migrator import exception
from migrator.nova import connection, run

CONF = libvirt_driver.CONF
LOG = logging.getLogger(__name__)


class LibvirtDriver(libvirt_driver.LibvirtDriver):
    """``compute_driver = migrator.LibvirtDriver`` (see :mod:`migrator.nova.loader`)."""

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only)
        # Nova's CONF has 16 of the [libvirt] options and max_concurrent_live_migrations:
        # only the others are added, and Nova's values are the ones read
        migrator.conf.register_opts(CONF)
        self._migrator: mdriver.LiveMigrationDriver | None = None
        self._runs: dict[str, run.MigrationRun] = {}

    def init_host(self, host):
        super().init_host(host)
        # Nova's compute manager queues live migrations (max_concurrent_live_migrations,
        # 0 = unlimited): migrator keeps no second queue
        live = mdriver.LiveMigrationDriver(
            CONF, connection.HostConnection(self._host), queue=False,
            open_connection=lambda _uri: connection.open_own_connection(self._host))
        try:
            live.init_host()
        except exception.ConfigError as exc:
            raise nova_exception.InvalidConfiguration(
                f"migrator refuses the live-migration options: {exc}") from exc
        self._migrator = live

    # -- the migration ---------------------------------------------------------------

    def _live_migration(self, context, instance, dest, post_method, recover_method,
                        block_migration, migrate_data):
        """Nova's ``_live_migration``, with migrator in place of the call and the monitor.

        Blocks until the migration has settled and Nova's callback has run, like
        Nova's; returns normally after ``post_method`` or ``recover_method``, and
        raises when neither is safe (the instance then goes to ERROR).
        """
        if self._migrator is None:
            raise nova_exception.MigrationError(reason="init_host() has not run")
        guest = self._host.get_guest(instance)
        disk_paths, device_names = [], []
        if migrate_data.block_migration and CONF.libvirt.virt_type != "parallels":
            disk_paths, device_names = self._live_migration_copy_disk_paths(
                context, instance, guest)
        mig = run.MigrationRun(
            self._migrator, instance, dest, migrate_data, disk_paths,
            vpmem=bool(self._get_vpmems(instance)))
        self._runs[instance.uuid] = mig
        try:
            try:
                self._live_migration_operation(
                    context, instance, dest, block_migration, migrate_data,
                    run.HandOverGuest(guest._domain, mig), device_names)
            except Exception as exc:  # noqa: BLE001 - Nova logged it; the outcome decides
                mig.operation_failed(exc)
        finally:
            del self._runs[instance.uuid]
            mig.close()
        mig.call_back(context, post_method, recover_method, block_migration)

    def live_migration_force_complete(self, instance):
        """Switch to post-copy when permitted, else pause the guest (once)."""
        self._run_of(instance).force_complete()

    def live_migration_abort(self, instance):
        """Cancel the migration; the guest stays on the source.  Raises when libvirt
        refuses (in post-copy the guest already runs on the destination)."""
        self._run_of(instance).abort()

    def _run_of(self, instance) -> run.MigrationRun:
        mig = self._runs.get(instance.uuid)
        if mig is None:
            raise nova_exception.NoActiveMigrationForInstance(instance_id=instance.uuid)
        return mig
