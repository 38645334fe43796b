"""Every option: default, bounds, bad values read from an ini file."""

from __future__ import annotations

import pytest
from oslo_config import cfg

import migrator.conf
from migrator import exception

DEFAULTS = {
    "virt_type": "kvm",
    "live_migration_scheme": None,
    "live_migration_inbound_addr": None,
    "live_migration_uri": None,
    "live_migration_tunnelled": None,
    "live_migration_with_native_tls": False,
    "live_migration_bandwidth": 0,
    "live_migration_downtime": 500,
    "live_migration_downtime_steps": 10,
    "live_migration_downtime_delay": 75,
    "live_migration_completion_timeout": 800,
    "live_migration_timeout_action": "abort",
    "live_migration_permit_post_copy": False,
    "live_migration_permit_auto_converge": False,
    "live_migration_parallel_connections": 1,
    "live_migration_monitor_interval": 5,
    "live_migration_convergence": "steps",
    "live_migration_refuse_predicted_failure": False,
    "live_migration_postcopy_recovery_timeout": 600,
    "live_migration_establish_timeout": 600,
    "live_migration_extra_flags": [],
    "live_migration_flag": None,
    "block_migration_flag": None,
}


def test_defaults(ini_conf):
    values = migrator.conf.read_values(ini_conf(""))
    for name, default in DEFAULTS.items():
        assert values[name] == default, name
    assert values["max_concurrent_live_migrations"] == 1


def test_every_option_has_real_help():
    for _group, opts in migrator.conf.list_opts():
        for opt in opts:
            assert len(opt.help.strip()) > 40, opt.name


def test_list_opts_groups():
    groups = dict(migrator.conf.list_opts())
    assert set(groups) == {"DEFAULT", "libvirt"}
    assert {o.name for o in groups["libvirt"]} == set(DEFAULTS)


def test_mutable_options():
    opts = {o.name: o for o in migrator.conf.libvirt_opts}
    mutable = {name for name, o in opts.items() if o.mutable}
    assert mutable == {"live_migration_completion_timeout", "live_migration_timeout_action"}


def test_deprecations():
    opts = {o.name: o for o in migrator.conf.libvirt_opts}
    for name in ("live_migration_uri", "live_migration_flag", "block_migration_flag"):
        assert opts[name].deprecated_for_removal
        assert opts[name].deprecated_reason.strip()
    assert not opts["live_migration_tunnelled"].deprecated_for_removal


@pytest.mark.parametrize(
    "name,value,expected",
    [
        ("live_migration_downtime", "100", 100),
        ("live_migration_downtime_steps", "3", 3),
        ("live_migration_downtime_delay", "3", 3),
        ("live_migration_completion_timeout", "0", 0),
        ("live_migration_parallel_connections", "1", 1),
        ("live_migration_monitor_interval", "1", 1),
        ("live_migration_bandwidth", "0", 0),
        ("live_migration_timeout_action", "force_complete", "force_complete"),
        ("live_migration_tunnelled", "true", True),
        ("live_migration_tunnelled", "false", False),
        ("live_migration_inbound_addr", "fd00::2", "fd00::2"),
        ("live_migration_inbound_addr", "mig-net.example.org", "mig-net.example.org"),
        ("live_migration_extra_flags", "COMPRESSED, VIR_MIGRATE_ABORT_ON_ERROR",
         ["COMPRESSED", "VIR_MIGRATE_ABORT_ON_ERROR"]),
        ("virt_type", "qemu", "qemu"),
    ],
)
def test_valid_values(ini_conf, name, value, expected):
    values = migrator.conf.read_values(ini_conf(f"{name} = {value}\n"))
    assert values[name] == expected


@pytest.mark.parametrize(
    "name,value,words",
    [
        ("live_migration_downtime", "99", ["at least 100"]),
        ("live_migration_downtime_steps", "2", ["at least 3"]),
        ("live_migration_downtime_delay", "2", ["at least 3"]),
        ("live_migration_completion_timeout", "-1", ["at least 0"]),
        ("live_migration_parallel_connections", "0", ["at least 1"]),
        ("live_migration_monitor_interval", "0", ["at least 1"]),
        ("live_migration_bandwidth", "-5", ["at least 0"]),
        ("live_migration_timeout_action", "explode", ["abort, force_complete"]),
        ("live_migration_tunnelled", "maybe", ["true or false"]),
        ("live_migration_with_native_tls", "yes please", ["true or false"]),
        ("live_migration_inbound_addr", "a b", ["host name"]),
        ("live_migration_downtime", "fast", ["whole number"]),
        ("virt_type", "xen", ["kvm, qemu"]),
        ("live_migration_convergence", "magic", ["steps, adaptive"]),
    ],
)
def test_bad_values_name_option_and_fix(ini_conf, name, value, words):
    with pytest.raises(exception.ConfigError) as err:
        migrator.conf.read_values(ini_conf(f"{name} = {value}\n"))
    (problem,) = err.value.problems
    assert problem.startswith(f"[libvirt] {name} in ")
    for word in words:
        assert word in problem


def test_all_bad_values_reported_at_once(ini_conf):
    conf = ini_conf("live_migration_downtime = 1\nlive_migration_downtime_steps = 1\n")
    with pytest.raises(exception.ConfigError) as err:
        migrator.conf.read_values(conf)
    assert len(err.value.problems) == 2


def test_max_concurrent_in_default_group(ini_conf):
    conf = ini_conf("[DEFAULT]\nmax_concurrent_live_migrations = 0\n", raw=True)
    with pytest.raises(exception.ConfigError) as err:
        migrator.conf.read_values(conf)
    assert err.value.problems[0].startswith("[DEFAULT] max_concurrent_live_migrations")


def test_register_on_a_services_conf_and_mutate(tmp_path):
    path = tmp_path / "nova.conf"
    path.write_text("[libvirt]\nlive_migration_completion_timeout = 800\n")
    conf = cfg.ConfigOpts()
    migrator.conf.register_opts(conf)
    conf(args=["--config-file", str(path)], project="nova", default_config_files=[])
    assert conf.libvirt.live_migration_completion_timeout == 800
    path.write_text("[libvirt]\nlive_migration_completion_timeout = 15\n")
    conf.mutate_config_files()
    assert conf.libvirt.live_migration_completion_timeout == 15


def test_load_returns_options(ini_conf):
    options, virt_type, _ = migrator.conf.load(
        ini_conf("virt_type = qemu\nlive_migration_permit_post_copy = true\n")
    )
    assert virt_type == "qemu"
    assert options.permit_post_copy is True
    assert options.tunnelled is None


def test_two_configs_do_not_share_overrides():
    a, b = cfg.ConfigOpts(), cfg.ConfigOpts()
    for conf in (a, b):
        migrator.conf.register_opts(conf)
        conf([], default_config_files=[])
    a.set_override("live_migration_downtime", 900, group="libvirt")
    assert a.libvirt.live_migration_downtime == 900
    assert b.libvirt.live_migration_downtime == 500
