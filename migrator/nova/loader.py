"""Make migrator's Nova driver loadable by ``compute_driver``, without patching Nova.

Nova's ``load_compute_driver`` imports ``nova.virt.<compute_driver>`` and
nothing else.  Rather than writing a file into Nova's installed package (lost
or left behind by the next ``pip install``) or replacing Nova's classes, the
``migrator-nova-compute`` command registers :mod:`migrator.nova` under the one
module name Nova looks in, ``nova.virt.migrator``, and then starts Nova's own
nova-compute.  ``compute_driver = migrator.LibvirtDriver`` then resolves to
:class:`migrator.nova.driver.LibvirtDriver`.  Nothing changes for any other
process: plain ``nova-compute`` with ``compute_driver = libvirt.LibvirtDriver``
runs Nova's own driver, which is how an operator goes back.
"""

from __future__ import annotations

import importlib
import sys

#: The ``compute_driver`` value that selects migrator's driver.
COMPUTE_DRIVER = "migrator.LibvirtDriver"
#: Nova's own libvirt driver, for going back.
NOVA_COMPUTE_DRIVER = "libvirt.LibvirtDriver"
MODULE_NAME = "nova.virt.migrator"


def make_reachable() -> None:
    """Register :mod:`migrator.nova` as ``nova.virt.migrator`` (idempotent)."""
    if MODULE_NAME not in sys.modules:
        sys.modules[MODULE_NAME] = importlib.import_module("migrator.nova")
