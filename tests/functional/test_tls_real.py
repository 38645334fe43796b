"""Native TLS (``live_migration_with_native_tls``) for real, on the rig's TLS mode.

The ``tls_rig`` fixture (``Rig(tls=True)``, netns mode) makes a test CA and host certificates
with openssl at start; each host's certificate names its address (``IP:``) and
``<host>.rig.test`` (``DNS:``, never resolvable).  Both libvirtd listen for TLS, so the
control channel is ``qemu+tls://`` (``live_migration_scheme = tls``) and QEMU encrypts the
migration stream (``VIR_MIGRATE_TLS``) with the certificates under ``/etc/pki/qemu``.

That TLS really checks certificates is shown by the failures: a destination certificate
signed by another CA, or naming another host, or naming only a host name the data URI does
not use (unless ``tls.destination`` says which name to expect), each fails the migration
with QEMU's certificate error in the source's QEMU log, and the guest stays where it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from migrator import constants as c
from migrator.driver import LiveMigrationDriver, MigrationRequest
from migrator.testing.config import make_conf
from tests.functional.helpers import (
    Leftovers,
    Run,
    assert_moved,
    assert_stayed,
    guest,
    wait_for,
)
from tests.functional.rig.tls import Pki

libvirt = pytest.importorskip("libvirt")

# TLS costs: QEMU's encrypted stream runs at ~150 MB/s here (~1 GB/s in the clear), so a
# guest rewriting 32 MiB flat out would not converge at migrator's first 50 ms downtime step
CONVERGES = {"mb": 16, "rate": 4}
NATIVE_TLS = {"live_migration_with_native_tls": True, "live_migration_scheme": "tls"}


class QemuLog:
    """What QEMU writes to a domain's log on one host from now on."""

    def __init__(self, rig, host: str, name: str):
        self.path = Path(rig.host(host).hostpath(f"/var/log/libvirt/qemu/{name}.log"))
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def new(self) -> str:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace")


class ByName:
    """The rig, with host b known by the host name its certificate carries, not its address
    (as a compute service knows its peers), for ``Run``: the name is never resolved, the
    control and data connections go to the inbound address."""

    def __init__(self, rig):
        self._rig = rig

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._rig, attr)

    def host(self, h: Any) -> Any:
        host = self._rig.host(h)
        return dataclasses.replace(host, addr=host.tls_name) if host.name == "b" else host


@contextlib.contextmanager
def qemu_server_cert(rig, cert) -> Any:
    """b's QEMU presents ``cert`` to incoming migrations meanwhile."""
    rig.set_qemu_server_cert("b", cert)
    try:
        yield
    finally:
        rig.set_qemu_server_cert("b", None)


@pytest.mark.parametrize("scheme", ["tls", None], ids=["tls-control", "tcp-control"])
def test_native_tls_migration(tls_rig, scheme) -> None:
    rig, name = tls_rig, f"tls-{scheme or 'tcp'}"
    tick = guest(rig, name, **CONVERGES)
    left = Leftovers(rig, name)
    overrides = dict(NATIVE_TLS) if scheme else {"live_migration_with_native_tls": True}
    run = Run(rig, name, conf=make_conf(**overrides))
    plan = run.handle.plan
    outcome = run.wait()
    assert plan.has(c.VIR_MIGRATE_TLS) and not plan.tunnelled, plan.flag_names
    assert plan.uri == f"qemu+{scheme or 'tcp'}://{rig.b.addr}/system"
    # a plain tcp control channel is allowed, with a warning saying so
    warned = any("control channel is plain tcp" in w for w in plan.warnings)
    assert warned == (scheme is None), plan.warnings
    assert outcome.status == "completed" and outcome.mode == "pre-copy", outcome.error
    assert_moved(rig, name, "b", tick)
    left.check(rig, name, run)


def test_tls_destination_lets_the_certificate_name_the_host(tls_rig) -> None:
    """The data goes to b's inbound address, b's QEMU certificate names only its host name:
    migrator's ``tls.destination`` makes QEMU check that name; the same call without it
    fails on the certificate."""
    rig, name, b = tls_rig, "tlsdest", tls_rig.b
    tick = guest(rig, name, **CONVERGES)
    conf = make_conf(**NATIVE_TLS)
    with qemu_server_cert(rig, rig.pki.issue("b-name-only", dns=(b.tls_name,))):
        with contextlib.closing(rig.connect("a")) as conn:
            driver = LiveMigrationDriver(conf, conn)
            driver.init_host()
            dom = conn.lookupByName(name)
            plan = driver.plan(dom, MigrationRequest(dest=b.tls_name, inbound_addr=b.addr))
            assert plan.params[c.VIR_MIGRATE_PARAM_TLS_DESTINATION] == b.tls_name
            assert plan.uri == f"qemu+tls://{b.addr}/system"
            assert plan.migrate_uri == f"tcp://{b.addr}"
            without = {k: v for k, v in plan.params.items()
                       if k != c.VIR_MIGRATE_PARAM_TLS_DESTINATION}
            log = QemuLog(rig, "a", name)
            with pytest.raises(libvirt.libvirtError):
                dom.migrateToURI3(plan.uri, without, plan.flags)
        assert f"Certificate does not match the hostname {b.addr}" in log.new()
        wait_for(lambda: rig.where(name)["b"] is None, 30, "b to drop the incoming guest")
        assert_stayed(rig, name, "a")

        left = Leftovers(rig, name)
        run = Run(ByName(rig), name, conf=conf, inbound_addr=b.addr)
        assert run.handle.plan.params == plan.params and run.handle.plan.flags == plan.flags
        outcome = run.wait()
    assert outcome.status == "completed", outcome.error
    assert_moved(rig, name, "b", tick)
    left.check(rig, name, run)


@pytest.mark.parametrize("wrong", ["another-ca", "another-host"])
def test_wrong_certificate_fails_cleanly(tls_rig, wrong) -> None:
    rig, name, a, b = tls_rig, f"tlsbad-{wrong}", tls_rig.a, tls_rig.b
    if wrong == "another-ca":  # right names, but b's QEMU is enrolled in another PKI
        other = Pki(rig.base / "pki" / "other-ca", name="another CA")
        cert = other.issue("b-other-ca", ips=(b.addr,), dns=(b.tls_name,))
        expect = "hasn't got a known issuer"
    else:  # right issuer, but the certificate of host a
        cert = rig.pki.issue("b-as-a", ips=(a.addr,), dns=(a.tls_name,))
        expect = f"Certificate does not match the hostname {b.addr}"
    tick = guest(rig, name, **CONVERGES)
    left = Leftovers(rig, name)
    log = QemuLog(rig, "a", name)
    with qemu_server_cert(rig, cert):
        run = Run(rig, name, conf=make_conf(**NATIVE_TLS))
        outcome = run.wait()
    assert outcome.status == "failed" and outcome.mode is None, outcome
    assert run.recover == [outcome] and not run.post
    assert expect in log.new()
    wait_for(lambda: rig.where(name)["b"] is None, 30, "b to drop the incoming guest")
    assert_stayed(rig, name, "a")
    assert rig.heartbeat("a", name) > tick
    left.check(rig, name, run)


def test_native_tls_without_certificates_fails_cleanly(netns_rig) -> None:
    """A host without /etc/pki/qemu (the plain netns rig): libvirt refuses before QEMU
    moves anything, and the guest stays."""
    rig, name = netns_rig, "nocerts"
    tick = guest(rig, name, mb=8)
    left = Leftovers(rig, name)
    run = Run(rig, name, conf=make_conf(live_migration_with_native_tls=True))
    outcome = run.wait()
    assert outcome.status == "failed", outcome
    assert "Unable to access credentials /etc/pki/qemu/ca-cert.pem" in outcome.error
    wait_for(lambda: rig.where(name)["b"] is None, 30, "b to drop the incoming guest")
    assert_stayed(rig, name, "a")
    assert rig.heartbeat("a", name) > tick
    left.check(rig, name, run)
