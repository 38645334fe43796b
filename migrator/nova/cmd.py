"""``migrator-nova-compute``: Nova's nova-compute, with migrator's driver loadable.

Takes exactly nova-compute's arguments (``--config-file /etc/nova/nova.conf``
...).  Set ``[DEFAULT] compute_driver = migrator.LibvirtDriver`` in nova.conf
to use migrator's driver; with Nova's own ``libvirt.LibvirtDriver`` this
command runs Nova's driver unchanged.
"""

from __future__ import annotations


def main() -> None:
    # nova.cmd.compute applies Nova's choice of eventlet or native threads when
    # it is imported, so it comes first; the loader imports no Nova module.
    from nova.cmd import compute

    from migrator.nova import loader

    loader.make_reachable()
    compute.main()


if __name__ == "__main__":
    main()
