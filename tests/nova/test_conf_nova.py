"""migrator's options on Nova 34.0.0's own CONF, and a Nova node's sample configuration."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("nova", reason="Nova is not installed here: run tox -e nova")

import nova.conf  # noqa: E402
from oslo_config import fixture as config_fixture  # noqa: E402
from oslo_config import generator  # noqa: E402

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



