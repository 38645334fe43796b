"""Options for ``oslo-config-generator`` on a Nova node: what Nova's CONF lacks.

Nova registers 16 of migrator's ``[libvirt]`` options and
``max_concurrent_live_migrations`` itself; a sample generated with the
namespaces ``nova.conf`` and ``migrator.nova`` lists each option once (the
plain ``migrator`` namespace lists all of migrator's, for services other than
Nova).
"""

from __future__ import annotations

from oslo_config import cfg

import migrator.conf


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """migrator's options that Nova does not define itself."""
    import nova.conf

    return [(group, opts) for group, opts in migrator.conf.list_missing_opts(nova.conf.CONF)
            if opts]
