"""A throw-away PKI for the rig's TLS mode: a test CA and host certificates, made with openssl.

Everything is generated at test time (ECDSA P-256: a whole PKI takes ~0.1 s) into a directory
under the rig's base dir, valid for two days, and deleted with the rig.  Nothing here is a
secret worth anything.

Host certificates carry both extended key usages (TLS server and client), no key usage
extension (libvirt and QEMU then accept any use), ``CA:FALSE``, and subject alternative names
for the host's address (``IP:``) and its test host name (``DNS:``, under the reserved ``.test``
TLD: it never resolves, so it can only be checked through ``tls.destination``).

The per-host tree (``Pki.host_tree``) is what a privileged libvirt host has under ``/etc/pki``:

* ``CA/cacert.pem``, ``libvirt/{server,client}cert.pem``, ``libvirt/private/{server,client}
  key.pem``: libvirtd's TLS listener and, as a client, the source daemon's connection to the
  destination (``qemu+tls://``);
* ``qemu/ca-cert.pem``, ``qemu/{server,client}-{cert,key}.pem``: QEMU's native TLS for the
  migration stream (``VIR_MIGRATE_TLS``; libvirt's ``default_tls_x509_cert_dir``).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.functional.rig import RigError

__all__ = ["Cert", "Pki", "PkiError"]

DAYS = 2
_CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


class PkiError(RigError):
    """openssl is missing or refused something; the message says what."""


@dataclass(frozen=True)
class Cert:
    """A certificate and its private key (PEM files)."""

    name: str
    cert: Path
    key: Path
    ca: Path  # the certificate of the CA that signed it


def _openssl(*args: str, cwd: Path) -> None:
    if shutil.which("openssl") is None:
        raise PkiError("openssl is not installed: run 'sudo bash tests/functional/rig/install.sh'")
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode:
        raise PkiError(f"openssl {args[0]} failed: {(r.stderr or r.stdout).strip()[-500:]}")


class Pki:
    """A certificate authority in ``directory`` that issues host certificates."""

    def __init__(self, directory: str | Path, name: str = "migrator rig test CA") -> None:
        self.dir = Path(directory)
        self.name = name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_cert = self.dir / "ca-cert.pem"
        self.ca_key = self.dir / "ca-key.pem"
        self._serial = itertools.count(1)
        _openssl("req", "-x509", *_CURVE, "-keyout", str(self.ca_key), "-out", str(self.ca_cert),
                 "-days", str(DAYS), "-subj", f"/O=migrator tests/CN={name}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)
        self.ca_key.chmod(0o600)

    def issue(self, name: str, *, ips: tuple[str, ...] = (), dns: tuple[str, ...] = ()) -> Cert:
        """A host certificate for TLS server and client use, naming ``ips`` and ``dns``.

        The CN is ``dns[0]`` (or ``ips[0]``); the names that count are the SANs."""
        if not ips and not dns:
            raise ValueError("a host certificate needs at least one name")
        cert, key, csr = (self.dir / f"{name}-cert.pem", self.dir / f"{name}-key.pem",
                          self.dir / f"{name}.csr")
        ext = self.dir / f"{name}.ext"
        sans = [f"IP:{a}" for a in ips] + [f"DNS:{d}" for d in dns]
        ext.write_text("basicConstraints = critical,CA:FALSE\n"
                       "extendedKeyUsage = serverAuth,clientAuth\n"
                       f"subjectAltName = {','.join(sans)}\n")
        cn = (dns or ips)[0]
        _openssl("req", "-new", *_CURVE, "-keyout", str(key), "-out", str(csr),
                 "-subj", f"/O=migrator tests/CN={cn}", cwd=self.dir)
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert), "-CAkey",
                 str(self.ca_key), "-set_serial", str(next(self._serial)), "-days", str(DAYS),
                 "-extfile", str(ext), "-out", str(cert), cwd=self.dir)
        key.chmod(0o600)
        csr.unlink()
        ext.unlink()
        return Cert(name, cert, key, self.ca_cert)

    @staticmethod
    def host_tree(root: str | Path, cert: Cert, qemu_server: Cert | None = None) -> None:
        """Write (or rewrite) the ``/etc/pki`` tree of one host under ``root``.

        ``cert`` serves libvirtd and QEMU, and is the host's client certificate for both;
        ``qemu_server`` replaces it as QEMU's server certificate (the one the source QEMU
        checks during a native-TLS migration), and its CA becomes QEMU's CA (a QEMU refuses
        a certificate its own CA did not sign): a certificate from another CA makes the
        host's QEMU enrolled in that other PKI."""
        root = Path(root)
        qs = qemu_server or cert
        files = {
            "CA/cacert.pem": cert.ca,
            "libvirt/servercert.pem": cert.cert,
            "libvirt/private/serverkey.pem": cert.key,
            "libvirt/clientcert.pem": cert.cert,
            "libvirt/private/clientkey.pem": cert.key,
            "qemu/ca-cert.pem": qs.ca,
            "qemu/server-cert.pem": qs.cert,
            "qemu/server-key.pem": qs.key,
            "qemu/client-cert.pem": cert.cert,
            "qemu/client-key.pem": cert.key,
        }
        for rel, src in files.items():
            dst = root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(dst.name + ".tmp")
            shutil.copyfile(src, tmp)
            tmp.chmod(0o600 if "key" in rel else 0o644)
            tmp.replace(dst)  # each file atomically: never a half-written PEM
