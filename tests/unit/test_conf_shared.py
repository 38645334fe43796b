"""migrator's options on a service's CONF that defines some of them itself (as Nova does).

The service here is a stand-in with its own definitions (other help text, Nova's looser
bounds); the same checks against Nova 34.0.0's real CONF are in tests/nova.
"""

from __future__ import annotations

import pytest
from oslo_config import cfg

import migrator.conf
from migrator import exception
from migrator.testing import GiB, MiB
from tests.unit.helpers.driver_run import open_driver

SERVICE_LIBVIRT = [
    cfg.IntOpt("live_migration_downtime", default=500, min=100, help="the service's text"),
    cfg.IntOpt("live_migration_monitor_interval", default=5, help="no lower bound"),
    cfg.BoolOpt("live_migration_tunnelled", default=False, help="two-valued here"),
]
SERVICE_DEFAULT = [cfg.IntOpt("max_concurrent_live_migrations", default=1, min=0,
                              help="0 means unlimited")]


def service_conf(text: str = "", tmp_path=None) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf.register_opts(SERVICE_LIBVIRT, group="libvirt")
    conf.register_opts(SERVICE_DEFAULT)
    migrator.conf.register_opts(conf)
    files = []
    if text:
        path = tmp_path / "service.conf"
        path.write_text(text)
        files = [str(path)]
    conf([], default_config_files=files)
    return conf


def test_registers_only_what_the_service_lacks():
    conf = service_conf()
    ours = {o.dest for o in migrator.conf.ALL_LIBVIRT_OPTS}
    assert set(conf.libvirt) == ours
    # the service's own definitions stay: its defaults are what migrator reads
    values = migrator.conf.read_values(conf)
    assert values["live_migration_tunnelled"] is False  # the service's default, not 'auto'
    assert values["live_migration_convergence"] == "steps"  # added by migrator
    assert values["max_concurrent_live_migrations"] == 1
    migrator.conf.register_opts(conf)  # twice is harmless
    missing = dict(migrator.conf.list_missing_opts(conf))
    assert missing == {"DEFAULT": [], "libvirt": []}


def test_list_missing_opts_names_each_option_once():
    conf = cfg.ConfigOpts()
    conf.register_opts(SERVICE_LIBVIRT, group="libvirt")
    conf.register_opts(SERVICE_DEFAULT)
    missing = dict(migrator.conf.list_missing_opts(conf))
    names = {o.dest for o in missing["libvirt"]}
    assert names == {o.dest for o in migrator.conf.ALL_LIBVIRT_OPTS} - {
        o.dest for o in SERVICE_LIBVIRT}
    assert missing["DEFAULT"] == []


def test_service_values_are_read(tmp_path):
    conf = service_conf("[libvirt]\nlive_migration_downtime = 800\n"
                        "live_migration_convergence = adaptive\n"
                        "[DEFAULT]\nmax_concurrent_live_migrations = 0\n", tmp_path)
    values = migrator.conf.read_values(conf)
    assert values["live_migration_downtime"] == 800
    assert values["live_migration_convergence"] == "adaptive"
    assert values["max_concurrent_live_migrations"] == 0  # the service's meaning


def test_migrator_bounds_apply_to_the_service_options(tmp_path):
    conf = service_conf("[libvirt]\nlive_migration_monitor_interval = 0\n", tmp_path)
    with pytest.raises(exception.ConfigError) as err:
        migrator.conf.read_values(conf)
    assert err.value.problems[0].startswith("[libvirt] live_migration_monitor_interval")
    assert "at least 1" in err.value.problems[0]


def test_zero_concurrency_of_the_service_means_no_limit(fake, tmp_path):
    """A driver that queues itself, on a service's 0 (unlimited): nothing waits."""
    for name in ("vm1", "vm2"):
        fake.world.add_guest("src", name, memory=1 * GiB, working_set=256 * MiB,
                             dirty_rate=100 * MiB)
    conf = service_conf("[DEFAULT]\nmax_concurrent_live_migrations = 0\n", tmp_path)
    driver, conn = open_driver(fake, conf)
    results = []
    handles = [driver.live_migration(conn.lookupByName(n), "dst", post_method=results.append,
                                     recover_method=results.append) for n in ("vm1", "vm2")]
    assert all(h.wait(30).status == "completed" for h in handles)
