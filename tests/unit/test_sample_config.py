"""etc/migrator.conf.sample must match what oslo-config-generator makes from the code."""

from __future__ import annotations

from pathlib import Path

from oslo_config import cfg, generator

ROOT = Path(__file__).resolve().parents[2]


def test_sample_is_up_to_date(tmp_path):
    out = tmp_path / "sample"
    conf = cfg.ConfigOpts()
    generator.register_cli_opts(conf)
    conf(["--config-file", str(ROOT / "etc" / "migrator-config-generator.conf"),
          "--output-file", str(out)])
    generator.generate(conf)
    expected = (ROOT / "etc" / "migrator.conf.sample").read_text()
    assert out.read_text() == expected, (
        "etc/migrator.conf.sample is out of date; regenerate it with `tox -e genconfig`"
    )


def test_sample_parses_to_defaults():
    from migrator import conf as mconf

    c = cfg.ConfigOpts()
    mconf.register_opts(c)
    c(["--config-file", str(ROOT / "etc" / "migrator.conf.sample")], default_config_files=[])
    assert mconf.read_values(c)["live_migration_downtime"] == 500
