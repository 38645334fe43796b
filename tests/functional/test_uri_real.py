"""What real libvirt does with a control URI: the premises of migrator's template rules.

The source libvirtd opens the control URI itself (peer-to-peer), so these are asked of the
rig's source daemon through ``migrateToURI3``: libvirt's default transport for
``qemu://host`` is TLS (migrator's auto-tunnel rule counts it as encrypted), and the URIs
migrator refuses at start-up are refused by libvirt too, only later, per migration.  The
user-name fact needs no daemon: libvirt's client reads the URI the same way.  A port in the
inbound address is QEMU's data port, never libvirtd's.
"""

from __future__ import annotations

import contextlib
import socket
import stat
from pathlib import Path

import pytest

from migrator import constants, exception, uri
from migrator.testing.config import make_conf
from tests.functional.helpers import (
    Leftovers,
    Run,
    assert_moved,
    assert_stayed,
    guest,
)

libvirt = pytest.importorskip("libvirt")

P2P = (constants.VIR_MIGRATE_LIVE | constants.VIR_MIGRATE_PEER2PEER
       | constants.VIR_MIGRATE_PERSIST_DEST | constants.VIR_MIGRATE_UNDEFINE_SOURCE)
TLS_DEFAULT = {"live_migration_uri": "qemu://%s/system"}


def test_qemu_without_transport_is_tls_so_the_tcp_only_rig_refuses_it(rig) -> None:
    """migrator tunnels a qemu:// template (encrypted control channel); the plain rig
    listens for TCP only, and the source daemon's TLS client fails before anything moves."""
    name = "qemu-no-transport"
    tick = guest(rig, name, mb=8)
    run = Run(rig, name, conf=make_conf(**TLS_DEFAULT))
    assert run.handle.plan.tunnelled and uri.transport(None, "qemu://%s/system") == "tls"
    outcome = run.wait()
    assert outcome.status == "failed", outcome
    # the TLS client of the source libvirtd: no CA certificate in the TCP-only rig
    assert "CA certificate" in (outcome.error or ""), outcome.error
    assert_stayed(rig, name, "a")
    assert rig.heartbeat("a", name) > tick


def test_qemu_without_transport_migrates_over_tls(tls_rig) -> None:
    """The same template on the TLS rig: the control connection reaches b's TLS listener
    (port 16514), and the data follows it through the tunnel migrator chose."""
    rig, name = tls_rig, "qemu-tls-default"
    tick = guest(rig, name, mb=16, rate=4)
    left = Leftovers(rig, name)
    run = Run(rig, name, conf=make_conf(**TLS_DEFAULT))
    plan = run.handle.plan
    assert plan.uri == f"qemu://{rig.b.addr}/system" and plan.tunnelled, plan.flag_names
    outcome = run.wait()
    assert outcome.status == "completed", outcome.error
    assert_moved(rig, name, "b", tick)
    left.check(rig, name, run)


# dconnuri (built for host b) -> what libvirt says; each is refused by migrator at start-up
LIBVIRT_REFUSES = {
    "qemu+unix://{b}/system": "using unix socket and remote server",
    "qemu+ext://{b}/system": "for 'ext' transport, command is required",
    "qemu+bogus://{b}/system": "transport in URL not recognised",
    "qemu+tcp://{b}:16509/system?no_verify=yes": "Failed to parse value of URI component",
    "qemu+tls://{b}/system?mode=sideways": "Unknown remote mode",
}


@pytest.mark.parametrize("template", sorted(LIBVIRT_REFUSES))
def test_libvirt_refuses_what_migrator_refuses_at_start_up(rig, template) -> None:
    name = "refused-uri"
    guest(rig, name, mb=8)
    dconnuri = template.format(b=rig.b.addr)
    with pytest.raises(exception.ConfigError, match="live_migration_uri"):
        uri.validate_template(template.format(b="%s"))
    with contextlib.closing(rig.connect("a")) as conn:
        dom = conn.lookupByName(name)
        with pytest.raises(libvirt.libvirtError) as err:
            dom.migrateToURI3(dconnuri, {}, P2P)
    assert LIBVIRT_REFUSES[template] in str(err.value)
    assert_stayed(rig, name, "a")


def test_an_unknown_query_parameter_is_passed_through_and_ignored(rig) -> None:
    """What migrator warns about ('libvirt passes it unchanged to the destination'): the
    destination's QEMU driver ignores it and the migration goes through."""
    name = "unknown-param"
    tick = guest(rig, name, mb=8)
    template = "qemu+tcp://%s:16509/system?migrator_probe=1"
    (warning,) = uri.template_warnings(template)
    assert "'migrator_probe'" in warning
    run = Run(rig, name, conf=make_conf(live_migration_uri=template))
    outcome = run.wait()
    assert outcome.status == "completed", outcome.error
    assert_moved(rig, name, "b", tick)


def test_libvirt_reads_user_and_password_as_one_user_name(tmp_path: Path) -> None:
    """A stand-in for ssh records its arguments: libvirt logs in as 'admin:pw', so a
    password in live_migration_uri is never used as a password (migrator warns)."""
    args = tmp_path / "args"
    fake_ssh = tmp_path / "ssh"
    fake_ssh.write_text(f"#!/bin/sh\necho \"$@\" > {args}\nexit 1\n")
    fake_ssh.chmod(fake_ssh.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(libvirt.libvirtError):
        libvirt.open(f"qemu+ssh://admin:pw@example.invalid/system?command={fake_ssh}&no_tty=1")
    assert "-l admin:pw " in args.read_text()
    (warning,) = uri.template_warnings("qemu+ssh://admin:pw@%s/system")
    assert "no password from a URI" in warning


def _free_port(addr: str) -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def test_a_port_in_the_inbound_address_is_qemus_data_port(rig) -> None:
    """The control URI keeps libvirtd's port; QEMU on b listens on the inbound port."""
    name = "inbound-port"
    tick = guest(rig, name, mb=8)
    port = _free_port(rig.b.addr)
    run = Run(rig, name, inbound_addr=f"{rig.b.addr}:{port}")
    plan = run.handle.plan
    assert plan.uri == f"qemu+tcp://{rig.b.addr}/system"  # libvirtd's default port, 16509
    assert plan.migrate_uri == f"tcp://{rig.b.addr}:{port}"
    outcome = run.wait()
    assert outcome.status == "completed", outcome.error
    assert_moved(rig, name, "b", tick)


def test_the_inbound_port_really_is_the_one_qemu_listens_on(rig) -> None:
    """With that port taken on b's address, b's QEMU cannot listen and nothing moves."""
    if rig.mode != "loopback":
        pytest.skip("needs b's address in this network namespace")
    name = "inbound-port-taken"
    tick = guest(rig, name, mb=8)
    with contextlib.closing(socket.socket()) as taken:
        taken.bind((rig.b.addr, 0))
        taken.listen()
        run = Run(rig, name, inbound_addr=f"{rig.b.addr}:{taken.getsockname()[1]}")
        outcome = run.wait()
    assert outcome.status == "failed", outcome
    assert "Address already in use" in (outcome.error or ""), outcome.error
    assert_stayed(rig, name, "a")
    assert rig.heartbeat("a", name) > tick
