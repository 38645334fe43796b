"""Property-based tests of the flag rules over the whole option space (hypothesis).

For any options, host and migration facts, :func:`migrator.flags.plan` either refuses
with a :class:`~migrator.exception.MigratorError` whose message names the option(s) or
the address to fix, or returns a plan that libvirt accepts (migrator's own
``libvirt_rule_violations`` and, independently, the simulated libvirt's checks in
:mod:`migrator.testing.rules`) and that keeps migrator's safety rules (:func:`check_plan`).
The same inputs always give the same plan.

The option space, :func:`check_plan` and :func:`sample_plans` (valid plans for tests
that send them to real libvirt) live in ``tests/unit/helpers/plans.py``; the sampler's
own properties are checked here.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from migrator import constants, exception, uri
from migrator.flags import (
    EXTRA_FLAGS,
    OWNED_FLAGS,
    HostFacts,
    MigrationFacts,
    Options,
    Plan,
    check_options,
    plan,
)
from tests.unit.helpers.plans import (
    LEGACY_LISTS,
    PARALLEL,
    SPACE,
    VALID_BANDWIDTHS,
    VALID_SCHEMES,
    VALID_TEMPLATES,
    _host_port,
    check_plan,
    sample_plans,
)

# -- the option space (shared by the strategies and sample_plans) ----------------------

BAD_SCHEMES = ("", "TCP", "tcp://evil", "tcp@evil", "tls/x", "t c p", "tcp\n", "1tcp", "tcp?")
BAD_TEMPLATES = (
    "qemu+tcp://dest/system",  # no %s
    "qemu+tcp://%s/%s",
    "qemu+tcp://%s/system%d",
    "qemu+tcp://%s/sys%%tem",
    "qemu+tcp://%(host)s/system",
    "%s",
    "//%s/system",
    "1qemu://%s/system",
    # what libvirt refuses, or what would weaken or redirect the connection
    "qemu+unix://%s/system",
    "qemu+ext://%s/system?command=/usr/bin/nc",
    "qemu+bogus://%s/system",
    "xen+ssh://%s/system",
    "qemu+tcp://%s/session",
    "qemu+tls://%s/system?no_verify=1",
    "qemu+libssh://%s/system?known_hosts_verify=ignore",
    "qemu+ssh://%s/system?command=/tmp/ssh",
    "qemu+ssh://%s/system?socket=/tmp/other-sock",
    "qemu+tcp://%s/system?name=qemu:///session",
)
VALID_EXTRA: tuple[str, ...] = EXTRA_FLAGS + (
    "VIR_MIGRATE_COMPRESSED", "abort_on_error", " ZEROCOPY ", "vir_migrate_abort_on_error")
BAD_EXTRA = tuple(OWNED_FLAGS) + ("BOGUS", "", "COMPRESSÉD", "VIR_MIGRATE_", "RDMA", "ALL")
LEGACY_EXTRA = VALID_EXTRA + (
    "TUNNELLED", "VIR_MIGRATE_TUNNELLED", "VIR_MIGRATE_LIVE", "PEER2PEER", "UNDEFINE_SOURCE",
    "VIR_MIGRATE_PERSIST_DEST", "NON_SHARED_INC", "POSTCOPY", "UNSAFE")
DISK_NAMES = ("vda", "vdb", "sda", "hdc", "nvme0n1")
VIRT_TYPES = ("kvm",) * 6 + ("qemu",) * 2 + ("lxc", "parallels", "xen")


# Everything a refusal may name: an option, or the address it refused.
NAMES_AN_OPTION = re.compile(
    r"live_migration_\w+|block_migration_flag|virt_type|\[libvirt\] \w+")
NAMES_AN_ADDRESS = re.compile(r"destination (host|inbound address)")
# Per migration, only parameters that follow from this migration's facts (block
# migration's disk list, the caller's XML) can still be missing on an old libvirt; those
# refusals name the parameter.  Everything an option emits is checked at start-up
# (test_param_version_refusals_are_startup_errors_naming_the_option).
NAMES_A_PARAM = re.compile(r"parameter (migrate_disks|persistent_xml) needs libvirt")

# -- strategies ----------------------------------------------------------------------------

_label = st.from_regex(r"\A[a-z][a-z0-9-]{0,14}[a-z0-9]\Z")
hostnames = st.builds(lambda labels, dot: ".".join(labels) + dot,
                      st.lists(_label, min_size=1, max_size=3), st.sampled_from(["", "", "."]))
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.integers(1, 65535)
valid_addresses = st.one_of(
    hostnames, ipv4, ipv6,
    st.builds(lambda h, p: f"{h}:{p}", st.one_of(hostnames, ipv4), ports),
    st.builds(lambda h, p: f"[{h}]:{p}", ipv6, ports),
    st.sampled_from(["compute-2", "compute_2.example.org", "10.1.0.2", "fd00::2", "[fd00::2]",
                     "2001:db8::1", "::ffff:10.0.0.1"]),
)
HOSTILE_ADDRESSES = (
    "", " ", "dst/evil", "evil@dst", "user:pw@dst", "dst?x=1", "dst#frag", "dst evil", "dst\n",
    "dst\t", "dst%2f", "fe80::1%eth0", "[fd00::1", "fd00::1]", "[dst]", "[10.0.0.1]", "dst:0",
    "dst:65536", "dst:abc", "dst:", ":22", "a" * 300, "héllo", "dst\x00", "-dst", "dst-",
    "dst..x", "1.2.3", "256.1.1.1", "qemu+tcp://dst/system", "dst/../x", "dst\\x", "'dst'",
    "$(reboot)", "dst;rm", "..", ".", "*", "[::1]:22:33", "::1/128", "10.0.0.1/24",
    "dst:22/path", "a." * 130, "dst\u200b", "ｄｓｔ",
)
hostile_addresses = st.one_of(st.sampled_from(HOSTILE_ADDRESSES), st.text(max_size=30))
addresses = st.one_of(valid_addresses, valid_addresses, valid_addresses, valid_addresses,
                      hostile_addresses)


def _names(valid, bad):
    return st.lists(st.one_of(st.sampled_from(valid), st.sampled_from(valid),
                              st.sampled_from(bad)), max_size=4).map(tuple)


wild_options = st.builds(
    Options,
    scheme=st.one_of(st.sampled_from(VALID_SCHEMES), st.sampled_from(VALID_SCHEMES),
                     st.sampled_from(BAD_SCHEMES)),
    uri_template=st.one_of(st.sampled_from(VALID_TEMPLATES), st.sampled_from(VALID_TEMPLATES),
                           st.sampled_from(BAD_TEMPLATES)),
    tunnelled=st.sampled_from([None, True, False]),
    native_tls=st.booleans(),
    bandwidth=st.one_of(st.sampled_from(VALID_BANDWIDTHS), st.integers(-3, 2**64)),
    permit_post_copy=st.booleans(),
    permit_auto_converge=st.booleans(),
    parallel_connections=st.one_of(st.sampled_from(PARALLEL), st.integers(-1, 9)),
    extra_flags=_names(VALID_EXTRA, BAD_EXTRA),
    legacy_live_flags=st.one_of(st.sampled_from(LEGACY_LISTS),
                                _names(LEGACY_EXTRA, BAD_EXTRA)),
    legacy_block_flags=st.one_of(st.sampled_from(LEGACY_LISTS),
                                 _names(LEGACY_EXTRA, BAD_EXTRA)),
)
valid_options = st.builds(Options, **{name: st.sampled_from(values)
                                       for name, values in SPACE.items()})
# Mostly options an operator would write (still full of contradictions), sometimes wild.
options_st = st.one_of(valid_options, valid_options, valid_options, wild_options)
any_host = st.builds(
    HostFacts,
    virt_type=st.sampled_from(VIRT_TYPES),
    libvirt_version=st.tuples(st.integers(1, 11), st.integers(0, 10), st.integers(0, 5)),
    qemu_version=st.tuples(st.integers(2, 10), st.integers(0, 2), st.integers(0, 2)),
)
supported_host = st.builds(
    HostFacts,
    virt_type=st.sampled_from(("kvm", "qemu")),
    libvirt_version=st.tuples(st.integers(8, 11), st.integers(0, 10), st.integers(0, 5)),
    qemu_version=st.tuples(st.integers(6, 10), st.integers(0, 2), st.integers(0, 2)),
)
hosts_st = st.one_of(supported_host, supported_host, supported_host, any_host)


def _migrations(address):
    return st.builds(
        MigrationFacts,
        dest=address,
        inbound_addr=st.one_of(st.none(), address),
        block_migration=st.booleans(),
        disks=st.lists(st.sampled_from(DISK_NAMES), max_size=3, unique=True).map(tuple),
        paused=st.booleans(),
        vfio=st.booleans(),
        vpmem=st.booleans(),
        destination_xml=st.sampled_from([None, None, "<domain type='kvm'><name>v</name></domain>"]),
        persistent_xml=st.sampled_from([None, None, "<domain type='kvm'/>"]),
    )


migrations_st = _migrations(addresses)
sane_migrations = _migrations(valid_addresses)

# -- the oracle ----------------------------------------------------------------------------


def check_refusal(exc: exception.MigratorError, startup_ok: bool) -> None:
    """A refusal is a MigratorError with a clear message naming what to fix."""
    assert isinstance(exc, exception.MigratorError), type(exc)
    text = str(exc)
    assert text.strip(), "empty message"
    assert not text.startswith("internal error"), text
    problems = exc.problems if isinstance(exc, exception.ConfigError) else [text]
    for problem in problems:
        assert problem.strip()
        assert (NAMES_AN_OPTION.search(problem) or NAMES_AN_ADDRESS.search(problem)
                or NAMES_A_PARAM.search(problem) or "has no migrateToURI3" in problem), problem
    if isinstance(exc, exception.InvalidAddress):
        assert NAMES_AN_ADDRESS.search(text), text
    if startup_ok:
        # init_host() accepted these options: per migration only the address, the
        # facts (tunnelled block migration) or a fact-dependent parameter can refuse.
        if isinstance(exc, exception.ConfigError):
            assert isinstance(exc, exception.UnsupportedByHost), text
            assert all(NAMES_A_PARAM.search(p) for p in exc.problems), text
        else:
            assert isinstance(exc, exception.InvalidAddress | exception.MigrationRefused), text


def check_everything(options: Options, host: HostFacts, m: MigrationFacts) -> Plan | None:
    try:
        check_options(options, host)
        startup_ok = True
    except exception.ConfigError as exc:
        check_refusal(exc, startup_ok=False)
        startup_ok = False
    try:
        p = plan(options, host, m)
    except exception.MigratorError as exc:
        event(f"refused: {type(exc).__name__}")
        check_refusal(exc, startup_ok)
        with pytest.raises(type(exc)) as again:
            plan(options, host, m)
        assert str(again.value) == str(exc), "refusals are deterministic"
        return None
    event("planned")
    assert startup_ok, "plan() accepted options that check_options() refuses"
    check_plan(p, options, host, m)
    again = plan(options, host, m)
    assert again == p and again.to_dict() == p.to_dict(), "plans are deterministic"
    return p


# -- properties ----------------------------------------------------------------------------

@settings(max_examples=300, deadline=None, derandomize=True)
@given(options=options_st, host=hosts_st, migration=migrations_st)
def test_every_plan_is_refused_clearly_or_safe(options, host, migration):
    """The whole space, hostile values included: mostly refusals, each a clear one."""
    check_everything(options, host, migration)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(options=valid_options, host=supported_host, migration=sane_migrations)
def test_plans_an_operator_can_get_are_safe(options, host, migration):
    """What a real deployment writes, on supported hosts: mostly plans, each a safe one."""
    check_everything(options, host, migration)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(dest=valid_addresses, inbound=st.one_of(st.none(), valid_addresses),
       libvirt=st.tuples(st.integers(8, 11), st.integers(0, 10), st.integers(0, 5)),
       qemu=st.tuples(st.integers(6, 10), st.integers(0, 2), st.integers(0, 2)),
       block=st.booleans(), paused=st.booleans(), vfio=st.booleans())
def test_defaults_plan_every_valid_migration(dest, inbound, libvirt, qemu, block, paused, vfio):
    """Nova's defaults on a supported host never refuse a valid address."""
    m = MigrationFacts(dest=dest, inbound_addr=inbound, block_migration=block,
                       disks=("vda",) if block else (), paused=paused, vfio=vfio)
    p = check_everything(Options(), HostFacts("kvm", libvirt, qemu), m)
    assert p is not None
    assert p.flags == (155 if block else 27)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(address=st.one_of(valid_addresses, hostile_addresses, st.text(max_size=60),
                         st.binary(max_size=20).map(lambda b: b.decode("latin-1"))))
def test_an_accepted_address_is_exactly_the_uri_host(address):
    try:
        uri.validate_address(address, "destination host")
    except exception.InvalidAddress as exc:
        assert "destination host" in str(exc)
        assert len(str(exc)) < 400  # hostile input is shown shortened
        return
    for built in (uri.control_uri(address), uri.data_uri(address),
                  uri.control_uri(address, "tls"),
                  uri.control_uri(address, None, "qemu+ssh://nova@%s/system")):
        parts = urlsplit(built)
        assert (parts.hostname, parts.port) == _host_port(address), built
        assert not parts.query and not parts.fragment
        assert parts.path in ("", "/system")
    # as the inbound address, its port is the data port only
    via = urlsplit(uri.control_uri("compute-2", "tls", via=address))
    assert (via.hostname, via.port) == (_host_port(address)[0], None)


@pytest.mark.parametrize("options,host,m", [
    (Options(native_tls=True), HostFacts("kvm", (5, 0, 0), (4, 0, 0)),
     MigrationFacts(dest="compute-2", inbound_addr="10.1.0.2")),
    (Options(), HostFacts("kvm", (1, 0, 5), (2, 0, 0)), MigrationFacts(dest="compute-2")),
])
def test_param_version_refusals_are_startup_errors_naming_the_option(options, host, m):
    with pytest.raises(exception.ConfigError) as caught:
        check_options(options, host)
    # a host without migrateToURI3 cannot migrate at all: no option to blame
    problems = caught.value.problems
    assert all(NAMES_AN_OPTION.search(p) or "has no migrateToURI3" in p for p in problems), problems


# -- valid plans for other tests -------------------------------------------------------------


def test_sample_plans_are_valid_varied_and_reproducible():
    first = sample_plans(40, seed=7)
    assert len(first) == 40
    assert [s.plan for s in first] == [s.plan for s in sample_plans(40, seed=7)]
    assert [s.plan for s in first] != [s.plan for s in sample_plans(40, seed=8)]
    flags = {name for s in first for name in s.plan.flag_names}
    for name in ("TUNNELLED", "TLS", "POSTCOPY", "AUTO_CONVERGE", "PARALLEL", "NON_SHARED_INC",
                 "COMPRESSED", "ABORT_ON_ERROR"):
        assert "VIR_MIGRATE_" + name in flags
    assert any(s.plan.migrate_uri for s in first) and any(s.options.uri_template for s in first)


def test_sample_plans_honours_the_real_hosts_facts():
    host = HostFacts("kvm", (9, 0, 0), (7, 2, 0))
    got = sample_plans(15, host=host, dest="dst.example", inbound_addrs=("192.0.2.7",),
                       disks=("vda", "vdb"), paused=True,
                       restrict={"native_tls": [False], "uri_template": [None]})
    assert got
    for s in got:
        assert s.host == host and s.migration.paused and not s.plan.post_copy
        assert not s.plan.has(constants.VIR_MIGRATE_TLS)
        assert urlsplit(s.plan.uri).hostname == "192.0.2.7"
        assert set(s.plan.params.get("migrate_disks", [])) <= {"vda", "vdb"}
    with pytest.raises(ValueError, match="not Options fields"):
        sample_plans(1, restrict={"schema": ["tcp"]})
