"""migrator's libvirt constants equal libvirt-python's, where it is installed."""

from __future__ import annotations

import pytest

from migrator import constants as c

libvirt = pytest.importorskip("libvirt")


def test_every_constant_matches_libvirt_python():
    checked = 0
    for name in dir(c):
        if not name.startswith("VIR_") or not hasattr(libvirt, name):
            continue  # newer than the installed binding (e.g. BANDWIDTH_AVAIL_SWITCHOVER)
        assert getattr(c, name) == getattr(libvirt, name), name
        checked += 1
    assert checked > 80


def test_flag_table_matches():
    for info in c.MIGRATE_FLAGS.values():
        assert getattr(libvirt, "VIR_MIGRATE_" + info.name) == info.bit


def test_param_table_matches():
    for info in c.MIGRATE_PARAMS.values():
        value = getattr(libvirt, "VIR_MIGRATE_PARAM_" + info.const, None)
        if value is not None:
            assert value == info.key


def test_flag_names():
    assert c.flag_names(27) == [
        "VIR_MIGRATE_LIVE",
        "VIR_MIGRATE_PEER2PEER",
        "VIR_MIGRATE_PERSIST_DEST",
        "VIR_MIGRATE_UNDEFINE_SOURCE",
    ]
