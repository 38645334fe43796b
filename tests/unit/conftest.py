"""Shared helpers for the unit tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from oslo_config import cfg

import migrator.conf
from migrator.testing.fixture import fake_hosts


@pytest.fixture
def ini_conf(tmp_path: Path):
    """Build a parsed ConfigOpts from an ini snippet (the [libvirt] body by default).

    (``migrator.testing.config.make_conf`` builds one from keyword values instead.)"""

    def _make(body: str = "", *, raw: bool = False) -> cfg.ConfigOpts:
        text = textwrap.dedent(body) if raw else "[libvirt]\n" + textwrap.dedent(body)
        path = tmp_path / "migrator.conf"
        path.write_text(text)
        conf = cfg.ConfigOpts()
        migrator.conf.register_opts(conf)
        conf(args=["--config-file", str(path)], project="migrator", default_config_files=[])
        return conf

    return _make


@pytest.fixture
def fake():
    """The fake libvirt in place of ``libvirt``: hosts "src" and "dst" on a 10 Gbit/s link."""
    with fake_hosts(require_event_loop=False) as fx:
        yield fx
