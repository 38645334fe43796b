"""The flag rules: every rule of the issue, Nova's expected values, libvirt's rules."""

from __future__ import annotations

import pytest

from migrator import constants, exception
from migrator.flags import (
    HostFacts,
    MigrationFacts,
    Options,
    check_options,
    normalize_flag_name,
    parse_version,
    plan,
)

BASE = 27
HOST = HostFacts()
NEW_HOST = HostFacts("kvm", (11, 0, 0), (10, 1, 0))


def mig(**kw) -> MigrationFacts:
    kw.setdefault("dest", "dest-host")
    return MigrationFacts(**kw)


def decision(p, item):
    found = [d for d in p.decisions if d.item == item]
    assert found, f"no decision for {item}: {[d.item for d in p.decisions]}"
    return found[-1]


# --- Nova's expected values (nova-live-migration.md §2.2) -------------------------


@pytest.mark.parametrize(
    "options,live,block",
    [
        (Options(), 27, 155),
        (Options(tunnelled=True), 27 + 4, None),
        (Options(native_tls=True), 27 + 65536, 155 + 65536),
        (Options(permit_post_copy=True), 27 + 32768, 155 + 32768),
        (Options(permit_auto_converge=True), 27 + 8192, 155 + 8192),
        (Options(permit_post_copy=True, permit_auto_converge=True), 27 + 32768, 155 + 32768),
        (Options(parallel_connections=2), 27 + 131072, 155 + 131072),
    ],
)
def test_nova_values(options, live, block):
    assert plan(options, HOST, mig()).flags == live
    if block is None:
        with pytest.raises(exception.MigrationRefused, match="tunnel"):
            plan(options, HOST, mig(block_migration=True, disks=("vda",)))
    else:
        assert plan(options, HOST, mig(block_migration=True, disks=("vda",))).flags == block


def test_default_plan():
    p = plan(Options(), HOST, mig())
    assert p.flags == BASE
    assert p.flag_names == [
        "VIR_MIGRATE_LIVE",
        "VIR_MIGRATE_PEER2PEER",
        "VIR_MIGRATE_PERSIST_DEST",
        "VIR_MIGRATE_UNDEFINE_SOURCE",
    ]
    assert p.uri == "qemu+tcp://dest-host/system"
    assert p.migrate_uri is None
    assert p.params == {"bandwidth": 0}
    assert p.warnings == []
    for d in p.decisions:
        assert d.reason


def test_every_flag_and_param_has_a_decision():
    p = plan(
        Options(native_tls=True, scheme="tls", parallel_connections=4, bandwidth=100,
                extra_flags=("ZEROCOPY",)),
        NEW_HOST,
        mig(inbound_addr="10.1.0.2", block_migration=True, disks=("vda",),
            destination_xml="<domain/>"),
    )
    items = {d.item for d in p.decisions}
    for name in p.flag_names:
        assert name in items
    for key in p.params:
        assert key in items or f"param {key}" in items or key == "migrate_uri"


# --- block migration -------------------------------------------------------------


def test_block_with_disks():
    p = plan(Options(), HOST, mig(block_migration=True, disks=("vda", "vdb")))
    assert p.flags == 155
    assert p.params["migrate_disks"] == ["vda", "vdb"]


def test_block_without_disk_list_drops_non_shared_inc():
    p = plan(Options(), HOST, mig(block_migration=True))
    assert p.flags == BASE
    assert "migrate_disks" not in p.params
    d = decision(p, "VIR_MIGRATE_NON_SHARED_INC")
    assert d.action == "dropped" and "1719362" in d.reason and d.warning


# --- post-copy and auto-converge ---------------------------------------------------


def test_post_copy_wins_with_warning():
    p = plan(Options(permit_post_copy=True, permit_auto_converge=True), HOST, mig())
    assert p.post_copy and not p.auto_converge
    d = decision(p, "VIR_MIGRATE_AUTO_CONVERGE")
    assert d.action == "dropped" and d.warning
    assert "live_migration_permit_auto_converge" in d.options
    assert any("AUTO_CONVERGE" in w for w in p.warnings)


@pytest.mark.parametrize(
    "facts,word",
    [({"paused": True}, "paused"), ({"vfio": True}, "VFIO"), ({"vpmem": True}, "vPMEM")],
)
def test_post_copy_dropped_per_migration(facts, word):
    p = plan(Options(permit_post_copy=True), HOST, mig(**facts))
    assert not p.post_copy
    d = decision(p, "VIR_MIGRATE_POSTCOPY")
    assert d.action == "dropped" and word in d.reason


@pytest.mark.parametrize("facts", [{"vfio": True}, {"vpmem": True}])
def test_auto_converge_instead_of_post_copy_for_running_guest(facts):
    p = plan(Options(permit_post_copy=True, permit_auto_converge=True), HOST, mig(**facts))
    assert p.auto_converge and not p.post_copy
    assert "instead of post-copy" in decision(p, "VIR_MIGRATE_AUTO_CONVERGE").reason


def test_paused_guest_gets_neither():
    p = plan(Options(permit_post_copy=True, permit_auto_converge=True), HOST, mig(paused=True))
    assert p.flags == BASE
    assert decision(p, "VIR_MIGRATE_AUTO_CONVERGE").action == "omitted"


# --- tunnelling (tri-state) ----------------------------------------------------------


@pytest.mark.parametrize(
    "options,facts,tunnel,word",
    [
        (Options(), {}, False, "plain tcp"),
        (Options(scheme="tls"), {}, True, "encrypted (tls)"),
        (Options(scheme="ssh"), {}, True, "encrypted (ssh)"),
        (Options(uri_template="qemu+ssh://%s/system"), {}, True, "encrypted (ssh)"),
        (Options(scheme="tls", native_tls=True), {}, False, "native TLS"),
        (Options(scheme="tls"), {"block_migration": True, "disks": ("vda",)}, False, "block"),
        (Options(scheme="tls", parallel_connections=2), {}, False, "parallel"),
        (Options(scheme="tls", permit_post_copy=True), {}, False, "post-copy"),
        (Options(scheme="tls", tunnelled=False), {}, False, "= false"),
        (Options(tunnelled=True), {}, True, "= true"),
    ],
)
def test_tunnelled_branches(options, facts, tunnel, word):
    p = plan(options, NEW_HOST, mig(**facts))
    assert p.tunnelled is tunnel
    assert word in decision(p, "VIR_MIGRATE_TUNNELLED").reason


def test_tunnelled_never_sends_data_uri():
    p = plan(Options(tunnelled=True), HOST, mig(inbound_addr="10.9.0.2"))
    assert p.migrate_uri is None and "migrate_uri" not in p.params
    assert p.uri == "qemu+tcp://10.9.0.2/system"
    assert decision(p, "migrate_uri").action == "omitted"


def test_encrypted_control_plain_data_warns():
    p = plan(Options(scheme="tls", permit_post_copy=True), HOST, mig())
    assert any("native_tls" in w for w in p.warnings)


@pytest.mark.parametrize(
    "options,names",
    [
        (Options(tunnelled=True, native_tls=True), ["live_migration_with_native_tls"]),
        (Options(tunnelled=True, permit_post_copy=True), ["live_migration_permit_post_copy"]),
        (Options(tunnelled=True, parallel_connections=2), ["live_migration_parallel_connections"]),
    ],
)
def test_explicit_tunnelled_contradictions_are_startup_errors(options, names):
    with pytest.raises(exception.ConfigError) as err:
        check_options(options, NEW_HOST)
    (problem,) = err.value.problems
    for name in ["live_migration_tunnelled", *names]:
        assert name in problem


def test_tunnelled_block_migration_refused():
    with pytest.raises(exception.MigrationRefused, match="live_migration_tunnelled"):
        plan(Options(tunnelled=True), HOST, mig(block_migration=True, disks=("vda",)))


# --- native TLS ------------------------------------------------------------------------


def test_tls_destination_with_inbound_addr():
    p = plan(Options(native_tls=True, scheme="tls"), HOST,
             mig(dest="compute-2.example.org", inbound_addr="192.0.2.7"))
    assert p.params["tls.destination"] == "compute-2.example.org"
    assert p.migrate_uri == "tcp://192.0.2.7"
    assert p.uri == "qemu+tls://192.0.2.7/system"
    assert p.warnings == []


def test_no_tls_destination_without_inbound_addr():
    p = plan(Options(native_tls=True, scheme="tls"), HOST, mig())
    assert "tls.destination" not in p.params


def test_native_tls_with_plain_control_channel_warns():
    p = plan(Options(native_tls=True), HOST, mig())
    assert any("live_migration_scheme = tls" in w for w in p.warnings)


# --- parallel connections ----------------------------------------------------------------


def test_parallel_param():
    p = plan(Options(parallel_connections=4), HOST, mig())
    assert p.params["parallel.connections"] == 4
    assert p.flags & constants.VIR_MIGRATE_PARALLEL


def test_parallel_with_post_copy_needs_qemu_10_1():
    with pytest.raises(exception.UnsupportedByHost) as err:
        check_options(Options(parallel_connections=2, permit_post_copy=True),
                      HostFacts("kvm", (9, 0, 0), (9, 1, 0)))
    assert "10.1.0" in err.value.problems[0] and "9.1.0" in err.value.problems[0]
    p = plan(Options(parallel_connections=2, permit_post_copy=True), NEW_HOST, mig())
    assert p.post_copy and p.flags & constants.VIR_MIGRATE_PARALLEL


# --- extra flags -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["COMPRESSED", "VIR_MIGRATE_ABORT_ON_ERROR", "compressed"])
def test_extra_flags_added(name):
    p = plan(Options(extra_flags=(name,)), HOST, mig())
    assert ("VIR_MIGRATE_" + normalize_flag_name(name)) in p.flag_names


@pytest.mark.parametrize(
    "name,hint",
    [
        ("LIVE", "always"),
        ("PEER2PEER", "always"),
        ("TUNNELLED", "live_migration_tunnelled"),
        ("PERSIST_DEST", "always"),
        ("UNDEFINE_SOURCE", "always"),
        ("PAUSED", "state"),
        ("NON_SHARED_DISK", "per migration"),
        ("NON_SHARED_INC", "per migration"),
        ("UNSAFE", "never"),
        ("OFFLINE", "offline"),
        ("POSTCOPY", "live_migration_permit_post_copy"),
        ("TLS", "live_migration_with_native_tls"),
        ("PARALLEL", "live_migration_parallel_connections"),
        ("AUTO_CONVERGE", "live_migration_permit_auto_converge"),
        ("CHANGE_PROTECTION", "libvirt"),
        ("VIR_MIGRATE_POSTCOPY_RESUME", "recovers"),
    ],
)
def test_owned_flags_refused_with_option_to_use(name, hint):
    with pytest.raises(exception.ConfigError) as err:
        check_options(Options(extra_flags=(name,)), NEW_HOST)
    (problem,) = err.value.problems
    assert "live_migration_extra_flags" in problem and hint in problem


def test_unknown_flag_lists_valid_ones():
    with pytest.raises(exception.ConfigError) as err:
        check_options(Options(extra_flags=("TURBO",)), NEW_HOST)
    assert "COMPRESSED, ABORT_ON_ERROR, ZEROCOPY, NON_SHARED_SYNCHRONOUS_WRITES" in str(err.value)


def test_zerocopy_needs_parallel():
    with pytest.raises(exception.ConfigError, match="live_migration_parallel_connections"):
        check_options(Options(extra_flags=("ZEROCOPY",)), NEW_HOST)
    p = plan(Options(extra_flags=("ZEROCOPY",), parallel_connections=2), NEW_HOST, mig())
    assert p.flags & constants.VIR_MIGRATE_ZEROCOPY


def test_compressed_with_parallel_refused():
    with pytest.raises(exception.ConfigError, match="COMPRESSED"):
        check_options(Options(extra_flags=("COMPRESSED",), parallel_connections=2), NEW_HOST)


def test_synchronous_writes_only_for_block_migration():
    opts = Options(extra_flags=("NON_SHARED_SYNCHRONOUS_WRITES",))
    p = plan(opts, HOST, mig())
    assert not p.flags & constants.VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES
    assert decision(p, "VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES").action == "omitted"
    p = plan(opts, HOST, mig(block_migration=True, disks=("vda",)))
    assert p.flags & constants.VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES
    p = plan(opts, HOST, mig(block_migration=True))  # no disks: NON_SHARED_INC dropped too
    assert not p.flags & constants.VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES


# --- host versions -----------------------------------------------------------------


@pytest.mark.parametrize(
    "options,version,flag",
    [
        (Options(native_tls=True), (3, 1, 0), "TLS"),
        (Options(parallel_connections=2), (5, 1, 0), "PARALLEL"),
        (Options(extra_flags=("ZEROCOPY",), parallel_connections=2), (8, 4, 0), "ZEROCOPY"),
        (Options(extra_flags=("NON_SHARED_SYNCHRONOUS_WRITES",)), (7, 10, 0),
         "NON_SHARED_SYNCHRONOUS_WRITES"),
        (Options(permit_post_copy=True), (1, 3, 2), "POSTCOPY"),
        (Options(permit_auto_converge=True), (1, 2, 2), "AUTO_CONVERGE"),
    ],
)
def test_flag_the_host_cannot_do_is_a_startup_error(options, version, flag):
    with pytest.raises(exception.UnsupportedByHost) as err:
        check_options(options, HostFacts("kvm", version, (10, 1, 0)))
    assert any(f"VIR_MIGRATE_{flag} needs libvirt" in p for p in err.value.problems)


def test_param_the_host_cannot_do():
    with pytest.raises(exception.UnsupportedByHost, match="tls.destination"):
        plan(Options(native_tls=True), HostFacts("kvm", (5, 0, 0), (6, 2, 0)),
             mig(inbound_addr="10.0.0.2"))


def test_virt_type_must_be_kvm_or_qemu():
    with pytest.raises(exception.ConfigError, match="virt_type"):
        check_options(Options(), HostFacts("lxc"))
    assert plan(Options(), HostFacts("qemu"), mig()).flags == BASE


# --- URIs through the plan ------------------------------------------------------------


def test_inbound_addr_used_for_both_uris():
    p = plan(Options(), HOST, mig(inbound_addr="fd00::5"))
    assert p.uri == "qemu+tcp://[fd00::5]/system"
    assert p.migrate_uri == "tcp://[fd00::5]"
    assert p.params["migrate_uri"] == "tcp://[fd00::5]"


@pytest.mark.parametrize("inbound,control,data", [
    ("10.1.0.2:49152", "qemu+tcp://10.1.0.2/system", "tcp://10.1.0.2:49152"),
    ("[fd00::5]:49152", "qemu+tcp://[fd00::5]/system", "tcp://[fd00::5]:49152"),
    ("mig-net.example:50000", "qemu+tcp://mig-net.example/system", "tcp://mig-net.example:50000"),
])
def test_a_port_in_the_inbound_address_is_the_data_port_only(inbound, control, data):
    """libvirtd listens on its transport's port; the inbound address's port is QEMU's."""
    p = plan(Options(), HOST, mig(inbound_addr=inbound))
    assert (p.uri, p.migrate_uri, p.params["migrate_uri"]) == (control, data, data)
    assert "data port" in decision(p, "uri").reason


def test_the_destination_port_is_libvirtds_and_goes_to_the_inbound_host():
    p = plan(Options(scheme="tls", native_tls=True), HOST,
             mig(dest="compute-2:16515", inbound_addr="10.1.0.2:49152"))
    assert p.uri == "qemu+tls://10.1.0.2:16515/system" and p.migrate_uri == "tcp://10.1.0.2:49152"


def test_a_template_keeps_its_own_port():
    options = Options(uri_template="qemu+ssh://nova@%s:2022/system")
    p = plan(options, HOST, mig(inbound_addr="10.1.0.2:49152", block_migration=True,
                                disks=("vda",)))
    assert p.uri == "qemu+ssh://nova@10.1.0.2:2022/system"
    assert p.migrate_uri == "tcp://10.1.0.2:49152"
    with pytest.raises(exception.InvalidAddress, match="destination host.*has a port"):
        plan(options, HOST, mig(dest="compute-2:16509"))


def test_template_port_must_be_a_number():
    with pytest.raises(exception.ConfigError, match="port"):
        check_options(Options(uri_template="qemu+ssh://%s:ssh/system"), HOST)


def test_tunnelled_migration_says_the_data_port_is_not_used():
    p = plan(Options(tunnelled=True), HOST, mig(inbound_addr="10.1.0.2:49152"))
    assert p.uri == "qemu+tcp://10.1.0.2/system" and p.migrate_uri is None
    d = decision(p, "migrate_uri")
    assert d.action == "omitted" and d.warning and "data port 49152" in d.reason


def test_tls_destination_is_a_host_name_never_a_port():
    p = plan(Options(native_tls=True, scheme="tls"), HOST,
             mig(dest="compute-2:16514", inbound_addr="10.1.0.2:49152"))
    assert p.params["tls.destination"] == "compute-2"
    # the data goes to the host the certificate names: nothing to say
    p = plan(Options(native_tls=True, scheme="tls"), HOST,
             mig(dest="10.1.0.2", inbound_addr="10.1.0.2:49152"))
    assert "tls.destination" not in p.params


def test_template_wins_and_password_masked_in_output():
    p = plan(Options(uri_template="qemu+tcp://admin:hunter2@%s/system"), HOST, mig())
    assert p.uri == "qemu+tcp://admin:hunter2@dest-host/system"
    assert "hunter2" not in str(p.to_dict())


def test_template_without_placeholder_is_startup_error():
    with pytest.raises(exception.ConfigError, match="exactly one '%s'"):
        check_options(Options(uri_template="qemu+tcp://fixed/system"), HOST)


@pytest.mark.parametrize("bad", ["dest/evil", "a@b", "x?y", " "])
def test_plan_refuses_bad_addresses(bad):
    with pytest.raises(exception.InvalidAddress):
        plan(Options(), HOST, mig(dest=bad))
    with pytest.raises(exception.InvalidAddress):
        plan(Options(), HOST, mig(inbound_addr=bad))


def test_xml_params_and_redaction():
    p = plan(Options(), HOST, mig(destination_xml="<domain>x</domain>", persistent_xml="<d/>"))
    assert p.params["destination_xml"] == "<domain>x</domain>"
    assert p.params["persistent_xml"] == "<d/>"
    assert p.to_dict()["params"]["destination_xml"] == "<18 characters of XML>"


def test_bandwidth_always_passed():
    assert plan(Options(bandwidth=250), HOST, mig()).params["bandwidth"] == 250


def test_parse_version():
    assert parse_version("9.0.0") == (9, 0, 0)
    assert parse_version("10.1") == (10, 1, 0)
    assert parse_version("9000000") == (9, 0, 0)
    with pytest.raises(ValueError):
        parse_version("nine")
