"""Options for ``oslo-config-generator`` on a Nova node: what Nova's CONF lacks.

Nova registers 16 of migrator's ``[libvirt]`` options and
``max_concurrent_live_migrations`` itself; a sample generated with the
namespaces ``nova.conf`` and ``migrator.nova`` lists each option once (the
plain ``migrator`` namespace lists all of migrator's, for services other than
Nova).
"""

from __future__ import annotations

from collections.abc import Iterable

from oslo_config import cfg

import migrator.conf


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """migrator's options that Nova does not define itself.

    Compared with Nova's own definitions (``nova.conf.opts``) on a CONF of
    their own, not with ``nova.conf.CONF``, where a running driver has added
    migrator's options already.
    """
    from nova.conf import opts as nova_conf_opts

    novas: dict[str, set[str]] = {}
    for group, opts in nova_conf_opts.list_opts():
        name = getattr(group, "name", group)
        novas.setdefault(name, set()).update(o.dest for o in opts)
    listed = []
    for group, opts in migrator.conf.list_opts():
        missing = [o for o in opts if o.dest not in novas.get(group, set())]
        if missing:
            listed.append((group, missing))
    return listed


def keep_secrets(service_opts: Iterable[cfg.Opt]) -> list[str]:
    """Mark secret the service's own definitions of options migrator keeps secret.

    Nova defines ``live_migration_uri`` itself and not as secret, but the URI may
    carry a password (``qemu+tcp://user:password@%s/system``) that nova-compute's
    start-up dump of its configuration (``log_opt_values``) would print.  Those
    are the definitions nova-compute registers and reads, so they are the ones
    marked; the values do not change.  Returns the names it marked.
    """
    secret = {o.dest for _group, opts in migrator.conf.list_opts() for o in opts if o.secret}
    marked = []
    for opt in service_opts:
        if opt.dest in secret and not opt.secret:
            opt.secret = True
            marked.append(opt.dest)
    return marked
