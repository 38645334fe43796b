"""Valid migration plans drawn from the whole option space, and the checks every plan passes.

:func:`sample_plans` draws valid plans with a seeded ``random.Random`` (no hypothesis
run needed), for tests that send them to real libvirt; :func:`check_plan` is the
safety check the property tests run on every plan::

    from tests.unit.helpers.plans import sample_plans

    for s in sample_plans(20, host=HostFacts("kvm", (9, 0, 0), (7, 2, 0)), dest="dst-host",
                          inbound_addrs=(None, "10.0.0.2"), restrict={"native_tls": [False]}):
        dom.migrateToURI3(s.plan.uri, s.plan.params, s.plan.flags)
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from migrator import constants, exception, uri
from migrator.flags import (
    BASE_FLAGS,
    EXTRA_FLAGS,
    MIN_QEMU_MULTIFD_WITH_POSTCOPY,
    HostFacts,
    MigrationFacts,
    Options,
    Plan,
    libvirt_rule_violations,
    plan,
)
from migrator.testing import rules

# -- the option space (shared by the strategies and sample_plans) ----------------------

VALID_SCHEMES: tuple[str | None, ...] = (None, "tcp", "tls", "ssh", "libssh", "libssh2")


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


NEVER_SET = ("UNSAFE", "OFFLINE", "PAUSED", "NON_SHARED_DISK", "CHANGE_PROTECTION",
             "RDMA_PIN_ALL", "POSTCOPY_RESUME")


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
