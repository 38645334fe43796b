"""migrator's options on Nova 34.0.0's own CONF, and a Nova node's sample configuration."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("nova", reason="Nova is not installed here: run tox -e nova")

import nova.conf  # noqa: E402
from oslo_config import cfg, generator  # noqa: E402
from oslo_config import fixture as config_fixture  # noqa: E402

import migrator.conf  # noqa: E402
from migrator import exception  # noqa: E402
from migrator.nova import loader  # noqa: E402
from migrator.nova import opts as nova_opts  # noqa: E402

CONF = nova.conf.CONF
ALL = {o.dest for o in migrator.conf.ALL_LIBVIRT_OPTS}


def test_register_opts_on_novas_conf_adds_only_what_nova_lacks():
    nova_downtime = CONF._groups["libvirt"]._opts["live_migration_downtime"]["opt"]
    migrator.conf.register_opts(CONF)
    migrator.conf.register_opts(CONF)  # again, as each driver instance does
    assert ALL <= set(CONF.libvirt)
    # Nova's definitions stay (its help text, its defaults)
    assert CONF._groups["libvirt"]._opts["live_migration_downtime"]["opt"] is nova_downtime
    values = migrator.conf.read_values(CONF)
    assert values["live_migration_tunnelled"] is False  # Nova's default
    assert values["max_concurrent_live_migrations"] == 1
    added = {o.dest for _g, opts in nova_opts.list_opts() for o in opts}
    from nova.conf import libvirt as nova_libvirt

    assert added == ALL - {o.dest for o in nova_libvirt.ALL_OPTS}
    assert "live_migration_convergence" in added and "live_migration_downtime" not in added


def test_novas_values_are_read_and_checked_against_migrators_bounds():
    migrator.conf.register_opts(CONF)
    fx = config_fixture.Config(CONF)
    fx.setUp()
    try:
        fx.config(group="libvirt", live_migration_downtime=900,
                  live_migration_convergence="adaptive")
        fx.config(max_concurrent_live_migrations=0)  # Nova's "unlimited"
        values = migrator.conf.read_values(CONF)
        assert values["live_migration_downtime"] == 900
        assert values["live_migration_convergence"] == "adaptive"
        assert values["max_concurrent_live_migrations"] == 0
        fx.config(group="libvirt", live_migration_monitor_interval=0)  # Nova accepts it
        with pytest.raises(exception.ConfigError) as err:
            migrator.conf.read_values(CONF)
        assert "live_migration_monitor_interval" in err.value.problems[0]
    finally:
        fx.cleanUp()


def test_sample_for_a_nova_node_lists_each_option_once(tmp_path):
    out = tmp_path / "nova.conf.sample"
    generator.main(["--namespace", "nova.conf", "--namespace", "migrator.nova",
                    "--output-file", str(out)])
    text = out.read_text()
    for name in ALL | {"max_concurrent_live_migrations"}:
        assert len(re.findall(rf"^#{name} =", text, re.M)) == 1, name


def test_compute_driver_name_loads_migrators_driver():
    from oslo_utils import importutils

    from migrator.nova.driver import LibvirtDriver

    loader.make_reachable()
    cls = importutils.import_class(f"nova.virt.{loader.COMPUTE_DRIVER}")
    assert cls is LibvirtDriver
    assert issubclass(cls, importutils.import_class(f"nova.virt.{loader.NOVA_COMPUTE_DRIVER}"))


def test_importing_migrator_does_not_import_nova():
    import subprocess
    import sys

    code = ("import sys, migrator, migrator.conf, migrator.cli, migrator.nova, "
            "migrator.nova.loader; print(sorted(m for m in sys.modules if m.split('.')[0] "
            "== 'nova'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"





def _logged_options(conf):
    lines = []

    class Log:
        def log(self, _level, fmt, *args):
            lines.append(fmt % args if args else fmt)

    conf.log_opt_values(Log(), 10)
    return "\n".join(lines)


def test_a_password_in_novas_live_migration_uri_is_masked_in_novas_log(monkeypatch):
    from nova.conf import libvirt as nova_libvirt

    (uri_opt,) = [o for o in nova_libvirt.ALL_OPTS if o.dest == "live_migration_uri"]
    monkeypatch.setattr(uri_opt, "secret", False)  # Nova's definition; restored afterwards
    conf = cfg.ConfigOpts()  # Nova's definition of the option (the object Nova registers)
    conf.register_opt(uri_opt, group="libvirt")
    conf([], default_config_files=[])
    conf.set_override("live_migration_uri", "qemu+tcp://admin:hunter2@%s/system",
                      group="libvirt")
    assert "hunter2" in _logged_options(conf)  # what Nova alone would log

    assert nova_opts.keep_secrets(nova_libvirt.ALL_OPTS) == ["live_migration_uri"]
    logged = _logged_options(conf)
    assert "hunter2" not in logged
    assert re.search(r"libvirt\.live_migration_uri\s+= \*\*\*\*", logged)
    assert nova_opts.keep_secrets(nova_libvirt.ALL_OPTS) == []  # once is enough
    # the value itself is unchanged
    assert conf.libvirt.live_migration_uri == "qemu+tcp://admin:hunter2@%s/system"


def test_migrator_nova_compute_masks_secrets_before_nova_logs_its_options(monkeypatch):
    """With native threads nova-compute logs its options before it loads a driver."""
    from nova.cmd import compute
    from nova.conf import libvirt as nova_libvirt

    from migrator.nova import cmd

    (uri_opt,) = [o for o in nova_libvirt.ALL_OPTS if o.dest == "live_migration_uri"]
    monkeypatch.setattr(uri_opt, "secret", False)
    seen = []
    monkeypatch.setattr(compute, "main", lambda: seen.append(uri_opt.secret))
    cmd.main()
    assert seen == [True]
