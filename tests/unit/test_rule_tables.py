"""The rule tables: every start-up rule and every libvirt rule, by id, with a case that breaks it.

A rule added to a table without a case here fails ``test_every_*_rule_has_a_case``.
"""

from __future__ import annotations

import pytest

from migrator import constants, exception
from migrator.flags import (
    LIBVIRT_RULES,
    STAGES,
    STARTUP_RULES,
    HostFacts,
    MigrationFacts,
    Options,
    broken_libvirt_rules,
    check_options,
    plan,
    startup_problems,
)

NEW_HOST = HostFacts("kvm", (11, 0, 0), (10, 1, 0))
OLD_QEMU = HostFacts("kvm", (11, 0, 0), (9, 1, 0))

# rule id -> (options, host) that break that rule and no other
STARTUP_CASES: dict[str, tuple[Options, HostFacts]] = {
    "virt-type": (Options(), HostFacts("lxc")),
    "scheme": (Options(scheme="kvm"), NEW_HOST),
    "uri-template": (Options(uri_template="qemu+tcp://fixed/system"), NEW_HOST),
    "bandwidth": (Options(bandwidth=-1), NEW_HOST),
    "connections": (Options(parallel_connections=0), NEW_HOST),
    "flag-names": (Options(extra_flags=("TURBO",)), NEW_HOST),
    "tunnel-native-tls": (Options(tunnelled=True, native_tls=True), NEW_HOST),
    "tunnel-post-copy": (Options(tunnelled=True, permit_post_copy=True), NEW_HOST),
    "tunnel-parallel": (Options(tunnelled=True, parallel_connections=2), NEW_HOST),
    "zerocopy-parallel": (Options(extra_flags=("ZEROCOPY",)), NEW_HOST),
    "compressed-parallel": (Options(extra_flags=("COMPRESSED",), parallel_connections=2),
                            NEW_HOST),
    "multifd-post-copy-qemu": (Options(parallel_connections=2, permit_post_copy=True),
                               OLD_QEMU),
    "migrate-to-uri3": (Options(tunnelled=False), HostFacts("kvm", (1, 0, 5), (2, 0, 0))),
    "params-since": (Options(native_tls=True), HostFacts("kvm", (5, 0, 0), (4, 0, 0))),
    "flags-since": (Options(permit_post_copy=True), HostFacts("kvm", (1, 3, 2), (2, 0, 0))),
}

# rule id -> (flags, params) that break that rule
LIBVIRT_CASES: dict[str, tuple[int, dict]] = {
    "postcopy-live": (constants.VIR_MIGRATE_POSTCOPY, {}),
    "postcopy-tunnel": (constants.VIR_MIGRATE_LIVE | constants.VIR_MIGRATE_PEER2PEER
                        | constants.VIR_MIGRATE_POSTCOPY | constants.VIR_MIGRATE_TUNNELLED, {}),
    "offline": (constants.VIR_MIGRATE_OFFLINE, {}),
    "zerocopy-parallel": (constants.VIR_MIGRATE_ZEROCOPY, {}),
    "non-shared-tunnel": (constants.VIR_MIGRATE_PEER2PEER | constants.VIR_MIGRATE_TUNNELLED
                          | constants.VIR_MIGRATE_NON_SHARED_INC, {}),
    "migrate-disks-non-shared": (constants.VIR_MIGRATE_LIVE, {"migrate_disks": ["vda"]}),
    "postcopy-resume": (constants.VIR_MIGRATE_POSTCOPY_RESUME, {}),
    "auto-converge-params": (constants.VIR_MIGRATE_LIVE, {"auto_converge.initial": 50}),
    "parallel-params": (constants.VIR_MIGRATE_LIVE, {"parallel.connections": 2}),
    "compressed-parallel": (constants.VIR_MIGRATE_COMPRESSED | constants.VIR_MIGRATE_PARALLEL,
                            {}),
    "tunnel-p2p": (constants.VIR_MIGRATE_TUNNELLED, {}),
    "tunnel-migrate-uri": (constants.VIR_MIGRATE_PEER2PEER | constants.VIR_MIGRATE_TUNNELLED,
                           {"migrate_uri": "tcp://x"}),
    "non-shared-exclusive": (constants.VIR_MIGRATE_NON_SHARED_DISK
                             | constants.VIR_MIGRATE_NON_SHARED_INC, {}),
    "synchronous-writes": (constants.VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES, {}),
    "rdma-uri": (constants.VIR_MIGRATE_RDMA_PIN_ALL, {"migrate_uri": "tcp://x"}),
    "tunnel-tls-parallel": (constants.VIR_MIGRATE_PEER2PEER | constants.VIR_MIGRATE_TUNNELLED
                            | constants.VIR_MIGRATE_TLS, {}),
}


def test_rule_ids_are_unique_and_rules_say_something():
    for table in (STARTUP_RULES, LIBVIRT_RULES):
        ids = [rule.id for rule in table]
        assert len(ids) == len(set(ids))
        assert all(rule.text.strip() for rule in table)


def test_every_startup_rule_has_a_case():
    assert set(STARTUP_CASES) == {rule.id for rule in STARTUP_RULES}


def test_every_libvirt_rule_has_a_case():
    assert set(LIBVIRT_CASES) == {rule.id for rule in LIBVIRT_RULES}


@pytest.mark.parametrize("rule_id", sorted(STARTUP_CASES))
def test_startup_rule(rule_id):
    options, host = STARTUP_CASES[rule_id]
    found = startup_problems(options, host)
    assert [rule.id for rule, _message in found] == [rule_id]
    (rule, message), = found
    with pytest.raises(exception.ConfigError) as err:
        check_options(options, host)
    assert err.value.problems == [message]
    # a limit of the host is UnsupportedByHost (a ConfigError the caller can tell apart)
    assert isinstance(err.value, exception.UnsupportedByHost) == rule.host_limit


@pytest.mark.parametrize("rule_id", sorted(LIBVIRT_CASES))
def test_libvirt_rule(rule_id):
    flags, params = LIBVIRT_CASES[rule_id]
    assert rule_id in [rule.id for rule in broken_libvirt_rules(flags, params)]


def test_defaults_break_no_rule():
    assert startup_problems(Options(), NEW_HOST) == []
    assert broken_libvirt_rules(155, {"migrate_disks": ["vda"], "bandwidth": 0}) == []


def test_every_stage_runs_and_the_order_of_decisions_is_the_order_of_the_stages():
    p = plan(Options(scheme="tls", native_tls=True, permit_post_copy=True,
                     permit_auto_converge=True, parallel_connections=2,
                     extra_flags=("ABORT_ON_ERROR",)), NEW_HOST,
             MigrationFacts(dest="compute-2", inbound_addr="10.0.0.2", block_migration=True,
                            disks=("vda",), destination_xml="<domain/>"))
    items = [d.item for d in p.decisions]
    expected = ["VIR_MIGRATE_LIVE", "VIR_MIGRATE_TUNNELLED", "VIR_MIGRATE_TLS",
                "VIR_MIGRATE_POSTCOPY", "VIR_MIGRATE_AUTO_CONVERGE", "VIR_MIGRATE_PARALLEL",
                "VIR_MIGRATE_NON_SHARED_INC", "VIR_MIGRATE_ABORT_ON_ERROR", "uri",
                "param bandwidth", "migrate_uri", "param tls.destination",
                "param destination_xml"]
    assert len(expected) == len(STAGES)  # one decision per stage, in order
    positions = [items.index(item) for item in expected]
    assert positions == sorted(positions)
