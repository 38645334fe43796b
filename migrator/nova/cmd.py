"""``migrator-nova-compute``: Nova's nova-compute, with migrator's driver loadable.

Takes exactly nova-compute's arguments (``--config-file /etc/nova/nova.conf``
...).  Set ``[DEFAULT] compute_driver = migrator.LibvirtDriver`` in nova.conf
to use migrator's driver; with Nova's own ``libvirt.LibvirtDriver`` this
command runs Nova's driver unchanged.  Either way the options migrator keeps
secret (a ``live_migration_uri`` may carry a password) are masked in
nova-compute's log of its configuration.
"""

from __future__ import annotations


def main() -> None:
    # nova.cmd.compute applies Nova's choice of eventlet or native threads when
    # it is imported, so it comes first; the loader imports no Nova module.
    from nova.cmd import compute
    from nova.conf import libvirt as nova_libvirt_opts

    from migrator.nova import loader, opts

    loader.make_reachable()
    # before compute.main(): with native threads it logs the options right after
    # parsing them, before the driver is loaded
    opts.keep_secrets(nova_libvirt_opts.ALL_OPTS)
    compute.main()


if __name__ == "__main__":
    main()
