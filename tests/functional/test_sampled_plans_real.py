"""Plans drawn from the whole option space are accepted by real libvirt.

The property tests (tests/unit/test_properties.py) prove, against migrator's own
copy of libvirt's rules and the simulated libvirt's, that every plan either is
refused or is valid.  Here a seeded sample of those plans is sent as it is
(``migrateToURI3(plan.uri, plan.params, plan.flags)``) to the rig's real
libvirt, with the real host's versions as the host facts: each must be accepted
and move the guest, so migrator's rule tables cannot drift from libvirt's.

The sample is narrowed only where the rig cannot follow: no native TLS (no
certificates on this rig; test_tls_real covers it), no URI template or
ssh/tls control schemes (only TCP daemons), no ZEROCOPY (needs a raised
locked-memory limit), and a bandwidth no lower than 100 MiB/s so each plan
takes seconds.
"""

from __future__ import annotations

import contextlib

import pytest

from migrator import constants as c
from migrator.flags import HostFacts, parse_version
from tests.functional.helpers import (
    assert_moved,
    guest,
)
from tests.unit.helpers.plans import SPACE, sample_plans

libvirt = pytest.importorskip("libvirt")

SAMPLES = 12
RIG_SPACE = {
    "scheme": [None, "tcp"],
    "uri_template": [None],
    "native_tls": [False],
    "bandwidth": [0, 100, 10_000],
    "extra_flags": [f for f in SPACE["extra_flags"] if "ZEROCOPY" not in f],
}


def _host_facts(conn) -> HostFacts:
    return HostFacts("qemu", parse_version(str(conn.getLibVersion())),
                     parse_version(str(conn.getVersion())))


def test_sampled_plans_are_accepted_by_real_libvirt(rig) -> None:
    with contextlib.closing(rig.connect("a")) as conn:
        host = _host_facts(conn)
    samples = sample_plans(SAMPLES, seed=0, host=host, dest=rig.b.addr,
                           inbound_addrs=(None, rig.b.addr), disks=("hda",),
                           restrict=RIG_SPACE)
    assert len(samples) == SAMPLES
    names = {n for s in samples for n in s.plan.flag_names}
    # the sample reaches the interesting corners (seed 0 does on libvirt 9.0 + QEMU 7.2)
    for flag in ("TUNNELLED", "POSTCOPY", "AUTO_CONVERGE", "PARALLEL", "NON_SHARED_INC",
                 "COMPRESSED", "ABORT_ON_ERROR"):
        assert f"VIR_MIGRATE_{flag}" in names, sorted(names)
    refused = []
    for i, s in enumerate(samples):
        name = f"sample{i:02d}"
        block = s.migration.block_migration
        tick = guest(rig, name, mb=8, disk=16 if block else None)
        if block:
            rig.precreate_disk("b", name)
        with contextlib.closing(rig.connect("a")) as conn:
            dom = conn.lookupByName(name)
            try:
                dom.migrateToURI3(s.plan.uri, s.plan.params, s.plan.flags)
            except libvirt.libvirtError as exc:
                refused.append((s.plan.flag_names, s.plan.params, exc.get_error_code(),
                                exc.get_error_message()))
                rig.cleanup_guests()
                continue
        if s.plan.has(c.VIR_MIGRATE_UNDEFINE_SOURCE):
            assert_moved(rig, name, "b", tick)
        else:  # the source keeps a shut-off definition; the guest runs on b
            where = rig.where(name)
            assert where["b"] is not None and where["b"][0] == c.VIR_DOMAIN_RUNNING, where
        rig.cleanup_guests()
    assert refused == []
