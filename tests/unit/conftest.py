"""Shared helpers for the unit tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from oslo_config import cfg

import migrator.conf


@pytest.fixture
def make_conf(tmp_path: Path):
    """Build a parsed ConfigOpts from an ini snippet (the [libvirt] body by default)."""

    def _make(body: str = "", *, raw: bool = False) -> cfg.ConfigOpts:
        text = textwrap.dedent(body) if raw else "[libvirt]\n" + textwrap.dedent(body)
        path = tmp_path / "migrator.conf"
        path.write_text(text)
        conf = cfg.ConfigOpts()
        migrator.conf.register_opts(conf)
        conf(args=["--config-file", str(path)], project="migrator", default_config_files=[])
        return conf

    return _make
