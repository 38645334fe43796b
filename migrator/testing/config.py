"""A ``ConfigOpts`` with migrator's options, for tests and benchmarks."""

from __future__ import annotations

from typing import Any

from oslo_config import cfg

import migrator.conf


def make_conf(**overrides: Any) -> cfg.ConfigOpts:
    """A fresh ``ConfigOpts`` with migrator's options, no file read, ``overrides`` set.

    Names are ``[libvirt]`` options, except ``[DEFAULT]`` ones such as
    ``max_concurrent_live_migrations``.  A fresh object per call keeps tests
    from seeing each other's overrides (``cfg.CONF`` is process-global).
    """
    conf = cfg.ConfigOpts()
    migrator.conf.register_opts(conf)
    conf([], default_config_files=[])
    defaults = {opt.dest for opt in migrator.conf.default_opts}
    for name, value in overrides.items():
        conf.set_override(name, value, group=None if name in defaults else "libvirt")
    return conf
