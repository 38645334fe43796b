"""Property-based tests of the flag rules over the whole option space (hypothesis).

For any options, host and migration facts, :func:`migrator.flags.plan` either refuses
with a :class:`~migrator.exception.MigratorError` whose message names the option(s) or
the address to fix, or returns a plan that libvirt accepts (migrator's own
``libvirt_rule_violations`` and, independently, the simulated libvirt's checks in
:mod:`migrator.testing.rules`) and that keeps migrator's safety rules (:func:`check_plan`).
The same inputs always give the same plan.

:func:`sample_plans` draws valid plans from the same option space with a seeded
``random.Random`` (no hypothesis run needed), for tests that send them to real libvirt::

    from tests.unit.test_properties import sample_plans

    for s in sample_plans(20, host=HostFacts("kvm", (9, 0, 0), (7, 2, 0)), dest="dst-host",
                          inbound_addrs=(None, "10.0.0.2"), restrict={"native_tls": [False]}):
        dom.migrateToURI3(s.plan.uri, s.plan.params, s.plan.flags)
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from migrator import constants, exception, uri
from migrator.flags import (
    BASE_FLAGS,
    EXTRA_FLAGS,
    MIN_QEMU_MULTIFD_WITH_POSTCOPY,
    OWNED_FLAGS,
    HostFacts,
    MigrationFacts,
    Options,
    Plan,
    check_options,
    libvirt_rule_violations,
    plan,
)
from migrator.testing import rules

# -- the option space (shared by the strategies and sample_plans) ----------------------

VALID_SCHEMES: tuple[str | None, ...] = (None, "tcp", "tls", "ssh", "libssh", "libssh2")
BAD_SCHEMES = ("", "TCP", "tcp://evil", "tcp@evil", "tls/x", "t c p", "tcp\n", "1tcp", "tcp?")
# Templates with '%s' standing for the host (the only shape the property checks; a
# template that puts it elsewhere is test_bad_input's business).
VALID_TEMPLATES: tuple[str | None, ...] = (
    None,
    "qemu+tcp://%s/system",
    "qemu+ssh://%s/system",
    "qemu+tls://%s/system",
    "qemu+tcp://admin:s3cr3t@%s/system",
    "qemu+ssh://nova@%s/system?keyfile=/etc/nova/migration/identity",
    "qemu+libssh2://%s/system?known_hosts=/etc/nova/known_hosts&known_hosts_verify=normal",
    "qemu://%s/system",  # libvirt's default transport with a host: TLS
    "qemu+ssh://%s/system?no_tty=1",
)
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
LEGACY_LISTS: tuple[tuple[str, ...] | None, ...] = (
    None,
    (),
    ("VIR_MIGRATE_UNDEFINE_SOURCE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_LIVE",
     "VIR_MIGRATE_TUNNELLED"),  # Liberty's default
    ("VIR_MIGRATE_UNDEFINE_SOURCE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_LIVE",
     "VIR_MIGRATE_NON_SHARED_INC"),
    ("VIR_MIGRATE_LIVE", "VIR_MIGRATE_COMPRESSED"),
    ("VIR_MIGRATE_ABORT_ON_ERROR",),
)
VALID_BANDWIDTHS = (0, 0, 1, 100, 10_000)
PARALLEL = (1, 1, 1, 2, 3, 4, 8)
DISK_NAMES = ("vda", "vdb", "sda", "hdc", "nvme0n1")
VIRT_TYPES = ("kvm",) * 6 + ("qemu",) * 2 + ("lxc", "parallels", "xen")

SPACE: dict[str, Sequence[Any]] = {
    "scheme": VALID_SCHEMES,
    "uri_template": (None,) * 6 + VALID_TEMPLATES[1:],
    "tunnelled": (None, None, None, True, False),
    "native_tls": (False, True),
    "bandwidth": VALID_BANDWIDTHS,
    "permit_post_copy": (False, True),
    "permit_auto_converge": (False, True),
    "parallel_connections": PARALLEL,
    "extra_flags": ((), (), ("COMPRESSED",), ("ABORT_ON_ERROR",), ("ZEROCOPY",),
                    ("NON_SHARED_SYNCHRONOUS_WRITES",), ("abort_on_error", "compressed")),
    "legacy_live_flags": LEGACY_LISTS,
    "legacy_block_flags": LEGACY_LISTS,
}
SAMPLE_HOSTS = (HostFacts("kvm", (8, 0, 0), (6, 2, 0)), HostFacts("kvm", (9, 0, 0), (7, 2, 0)),
                HostFacts("kvm", (10, 0, 0), (8, 2, 0)),
                HostFacts("kvm", (11, 0, 0), (10, 1, 0)))

# Everything a refusal may name: an option, or the address it refused.
NAMES_AN_OPTION = re.compile(
    r"live_migration_\w+|block_migration_flag|virt_type|\[libvirt\] \w+")
NAMES_AN_ADDRESS = re.compile(r"destination (host|inbound address)")
# Per migration, only parameters that follow from this migration's facts (block
# migration's disk list, the caller's XML) can still be missing on an old libvirt; those
# refusals name the parameter.  Everything an option emits is checked at start-up
# (test_param_version_refusals_are_startup_errors_naming_the_option).
NAMES_A_PARAM = re.compile(r"parameter (migrate_disks|persistent_xml) needs libvirt")
NEVER_SET = ("UNSAFE", "OFFLINE", "PAUSED", "NON_SHARED_DISK", "CHANGE_PROTECTION",
             "RDMA_PIN_ALL", "POSTCOPY_RESUME")

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


def _split(address: str) -> tuple[str, int | None]:
    """(host, port) as written: '[v6]:p', 'host:p', a bare IPv6 literal has no port."""
    if address.startswith("["):
        close = address.index("]")
        rest = address[close + 1:]
        return address[1:close], int(rest[1:]) if rest else None
    if address.count(":") == 1:
        host, port = address.split(":")
        return host, int(port)
    return address, None


def _host_port(address: str) -> tuple[str, int | None]:
    """What urlsplit should find in a URI built for ``address``."""
    host, port = _split(address)
    return host.lower(), port


def _in_uri(host: str, port: int | None) -> str:
    return (f"[{host}]" if ":" in host else host) + ("" if port is None else f":{port}")


def libvirt_transport(control_uri: str) -> str:
    """libvirt's transport for a URI with a host: after '+', else TLS (remoteSplitURIScheme)."""
    scheme = urlsplit(control_uri).scheme
    return scheme.split("+", 1)[1].lower() if "+" in scheme else "tls"


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


def sim_libvirt_refusal(p: Plan) -> str | None:
    """What the simulated libvirt 9.0 checks (migrator.testing.rules) say about ``p``."""
    m = p.migration
    copied = p.has(constants.VIR_MIGRATE_NON_SHARED_INC)
    dom = rules.DomainFacts(name="vm", active=True, paused=m.paused,
                            disks=tuple((d, False) for d in m.disks) if copied else ())
    version = p.host.libvirt_version
    server = urlsplit(p.uri).hostname or ""
    spec = (
        (None if server.startswith("localhost") else rules.check_client(p.flags, p.uri))
        or rules.check_driver(p.flags, p.params, version)
        or rules.check_p2p(p.flags, p.params)
        or rules.check_begin(p.flags, p.params, dom)
        or rules.check_throttle_params(p.params)
    )
    return None if spec is None else spec.message


def check_plan(p: Plan, options: Options, host: HostFacts, m: MigrationFacts) -> None:
    """libvirt's rules and migrator's safety rules, for one plan."""

    def has(name: str) -> bool:
        return p.has(constants.MIGRATE_FLAGS[name].bit)

    assert libvirt_rule_violations(p.flags, p.params) == []
    assert sim_libvirt_refusal(p) is None, sim_libvirt_refusal(p)
    assert all(has(n) for n in BASE_FLAGS)
    assert not any(has(n) for n in NEVER_SET)
    params = p.params

    # Block migration: never NON_SHARED_* without the disk list (Nova bug 1719362).
    if has("NON_SHARED_INC"):
        assert m.block_migration and m.disks
        assert params[constants.VIR_MIGRATE_PARAM_MIGRATE_DISKS] == list(m.disks)
    else:
        assert constants.VIR_MIGRATE_PARAM_MIGRATE_DISKS not in params
        assert not (m.block_migration and m.disks), "asked-for disks are not copied"
        assert not has("NON_SHARED_SYNCHRONOUS_WRITES")

    # Post-copy (Nova bug 1671011, devices that cannot be post-copied) and auto-converge.
    if has("POSTCOPY"):
        assert options.permit_post_copy
        assert not (m.paused or m.vfio or m.vpmem)
        assert not has("TUNNELLED")
        if has("PARALLEL"):
            assert host.qemu_version >= MIN_QEMU_MULTIFD_WITH_POSTCOPY
    assert not (has("AUTO_CONVERGE") and has("POSTCOPY"))
    if has("AUTO_CONVERGE"):
        assert options.permit_auto_converge and not m.paused

    # Tunnel, TLS, parallel connections.
    if has("TUNNELLED"):
        assert not (has("TLS") or has("PARALLEL") or has("NON_SHARED_INC"))
        assert options.tunnelled is not False
    assert has("TLS") == options.native_tls
    assert has("PARALLEL") == (options.parallel_connections > 1)
    if has("PARALLEL"):
        connections = params[constants.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS]
        assert connections == options.parallel_connections
    assert params[constants.VIR_MIGRATE_PARAM_BANDWIDTH] == options.bandwidth

    # Every flag and parameter exists in the host's libvirt.
    for name in p.flag_names:
        assert constants.MIGRATE_FLAGS[name[len("VIR_MIGRATE_"):]].since <= host.libvirt_version
    for key in params:
        assert constants.MIGRATE_PARAMS[key].since <= host.libvirt_version

    # URIs: the control URI reaches exactly the validated target's host, at libvirtd's
    # port (the destination's, or the template's); a port in the inbound address is the
    # data port only.  The data URI goes to the inbound address, and only untunnelled.
    target = m.inbound_addr or m.dest
    assert uri.validate_address(target) == target
    host, dest_port = _split(target)[0], _split(m.dest)[1]
    in_uri = _in_uri(host, dest_port)
    assert not set(in_uri) & set("/@?#%\\") and not any(ch.isspace() for ch in in_uri)
    template_port = None
    if options.uri_template:
        assert p.uri == options.uri_template % in_uri
        template_port = urlsplit(options.uri_template.replace("%s", "h")).port
        assert template_port is None or dest_port is None
    else:
        assert p.uri == f"qemu+{options.scheme or 'tcp'}://{in_uri}/system"
    parts = urlsplit(p.uri)
    expected_port = dest_port if template_port is None else template_port
    assert (parts.hostname, parts.port) == (host.lower(), expected_port), p.uri
    if p.migrate_uri is not None:
        assert m.inbound_addr is not None and not has("TUNNELLED")
        assert p.migrate_uri == uri.data_uri(m.inbound_addr)
        assert params[constants.VIR_MIGRATE_PARAM_URI] == p.migrate_uri
        data = urlsplit(p.migrate_uri)
        assert data.scheme == "tcp" and (data.hostname, data.port) == _host_port(m.inbound_addr)
    else:
        assert constants.VIR_MIGRATE_PARAM_URI not in params
        assert not m.inbound_addr or has("TUNNELLED")
    # The control channel's transport as libvirt reads it ('qemu://' is TLS): encrypted
    # control with data in the clear always warns; plain tcp control never claims encryption.
    transport = libvirt_transport(p.uri)
    said_encrypted = any(f"control channel is encrypted ({transport})" in w for w in p.warnings)
    if transport in ("tls", "ssh", "libssh", "libssh2") and not has("TLS"):
        assert has("TUNNELLED") or said_encrypted, (p.uri, p.warnings)
    assert not (transport == "tcp" and any("control channel is encrypted" in w
                                           for w in p.warnings))

    tls_dest = params.get(constants.VIR_MIGRATE_PARAM_TLS_DESTINATION)
    dest_name = _split(m.dest)[0]  # a certificate names a host, never a port
    if options.native_tls and p.migrate_uri and _split(m.inbound_addr)[0] != dest_name:
        assert tls_dest == dest_name
    else:
        assert tls_dest is None

    # Extra flags and a tunnel only when asked for: a deprecated flag list applies to its
    # kind of migration only (block_migration_flag to block migrations).
    own_list = options.legacy_block_flags if m.block_migration else options.legacy_live_flags
    asked = {n.strip().upper().removeprefix("VIR_MIGRATE_")
             for n in (*options.extra_flags, *(own_list or ()))}
    for name in EXTRA_FLAGS:
        if has(name):
            assert name in asked
    if has("TUNNELLED") and not options.tunnelled:
        assert options.tunnelled is None
        assert "TUNNELLED" in asked or libvirt_transport(p.uri) in ("tls", "ssh", "libssh",
                                                                    "libssh2")

    # Every flag and parameter has a decision with a reason.
    items = {d.item: d for d in p.decisions}
    for name in p.flag_names:
        assert items[name].action == "added" and items[name].reason
    for key in params:
        d = items["migrate_uri" if key == constants.VIR_MIGRATE_PARAM_URI else f"param {key}"]
        assert d.action == "set" and d.reason
    assert all(d.reason.strip() for d in p.decisions)

    # What may be printed never carries the password.
    doc = json.dumps(p.to_dict())
    if options.uri_template and "s3cr3t" in options.uri_template:
        assert "s3cr3t" not in doc


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


class SampledPlan(NamedTuple):
    options: Options
    host: HostFacts
    migration: MigrationFacts
    plan: Plan


def sample_plans(
    n: int,
    *,
    seed: int = 0,
    host: HostFacts | None = None,
    dest: str = "dest-host",
    inbound_addrs: Sequence[str | None] = (None, "10.0.0.2"),
    disks: Sequence[str] = ("vda",),
    block_migration: Sequence[bool] = (False, True),
    paused: bool = False,
    restrict: Mapping[str, Sequence[Any]] | None = None,
) -> list[SampledPlan]:
    """Up to ``n`` distinct valid plans from the option space, the same for the same seed.

    ``host`` is the source host's facts (default: a random supported one per plan);
    ``dest``, ``inbound_addrs``, ``disks`` and ``paused`` must match the real
    migration the plans are for.  ``restrict`` narrows any :class:`Options` field to
    the given values (e.g. ``{"native_tls": [False]}`` on hosts without TLS
    certificates, ``{"uri_template": [None]}`` to keep credentials out).  Every plan
    returned passed :func:`check_plan`.
    """
    space = {**SPACE, **(restrict or {})}
    unknown = set(space) - set(Options.__dataclass_fields__)
    if unknown:
        raise ValueError(f"not Options fields: {sorted(unknown)}")
    rng = random.Random(seed)
    out: list[SampledPlan] = []
    seen: set[tuple] = set()
    for _ in range(max(n, 1) * 200):
        if len(out) >= n:
            break
        options = Options(**{name: rng.choice(list(values)) for name, values in space.items()})
        h = host or rng.choice(SAMPLE_HOSTS)
        block = rng.choice(list(block_migration))
        chosen = tuple(d for d in disks if rng.random() < 0.8) or tuple(disks[:1])
        m = MigrationFacts(dest=dest, inbound_addr=rng.choice(list(inbound_addrs)),
                           block_migration=block, disks=chosen if block else (),
                           paused=paused)
        try:
            p = plan(options, h, m)
        except exception.MigratorError:
            continue
        key = (p.flags, p.uri, p.migrate_uri, json.dumps(p.params, sort_keys=True))
        if key in seen:
            continue
        seen.add(key)
        check_plan(p, options, h, m)
        out.append(SampledPlan(options, h, m, p))
    return out


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
