"""Control URI (libvirt peer-to-peer connection) and data URI (QEMU stream).

Pure functions.  Every address is validated before it goes into a URI:
only host names, IPv4 and IPv6 literals (optionally with a port) pass, so a
crafted address cannot add a path, user info, a query or a second host.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from oslo_utils import netutils

from migrator import exception

# RFC 1123 labels; underscores are accepted because Nova's host-name check
# (``^[\w\-\.:]+$``) accepts them and real deployments use them.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
_SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.-]*$")
_ENCRYPTED_TRANSPORTS = frozenset({"tls", "ssh", "libssh", "libssh2"})
# libvirt's remote transports (qemu+<transport>://)
TRANSPORTS = ("tcp", "tls", "ssh", "libssh", "libssh2", "unix", "ext")
_MARKER = "migrator-destination-marker"
_MAX_ADDRESS_LEN = 255


def _describe(value: str) -> str:
    shown = value if len(value) <= 80 else value[:77] + "..."
    return ascii(shown)


def _split_port(value: str) -> tuple[str, int | None]:
    """Split ``host:port`` / ``[v6]:port``; a bare IPv6 address has no port."""
    if value.startswith("["):
        close = value.find("]")
        if close < 0:
            raise ValueError("'[' without a closing ']'")
        host, rest = value[1:close], value[close + 1 :]
        if not netutils.is_valid_ipv6(host):
            raise ValueError("only an IPv6 address may stand in brackets")
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError("unexpected text after ']'")
        port_text = rest[1:]
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    else:
        return value, None  # no port, or a bare IPv6 address
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)


def validate_address(value: str, what: str = "address") -> str:
    """Return ``value`` if it is a host name or IP literal (with optional port).

    Raises :class:`~migrator.exception.InvalidAddress` naming ``what`` for
    anything else: empty strings, spaces, ``/``, ``@``, ``?``, ``#``, ``%``,
    control characters, non-ASCII text, over-long input.
    """
    if not isinstance(value, str) or not value:
        raise exception.InvalidAddress(f"{what} is empty; give a host name or an IP address")
    if len(value) > _MAX_ADDRESS_LEN:
        raise exception.InvalidAddress(
            f"{what} is {len(value)} characters long; a host name or address has at most "
            f"{_MAX_ADDRESS_LEN}"
        )
    if not value.isascii() or not value.isprintable():
        raise exception.InvalidAddress(
            f"{what} {_describe(value)} contains non-ASCII or control characters; give a "
            "host name (letters, digits, '-', '.'), an IPv4 or an IPv6 address"
        )
    bad = sorted(set(value) & set(" /@?#%\\'\"`<>{}|^;,&=+*!$~"))
    if bad:
        hint = " (IPv6 zone ids are not supported: use a global address)" if "%" in bad else ""
        raise exception.InvalidAddress(
            f"{what} {_describe(value)} contains {''.join(bad)!r}, which cannot appear in a "
            f"host name or IP address{hint}"
        )
    try:
        host, _port = _split_port(value)
    except ValueError as exc:
        raise exception.InvalidAddress(f"{what} {_describe(value)}: {exc}") from None
    if netutils.is_valid_ipv4(host, strict=True) or netutils.is_valid_ipv6(host):
        return value
    if _HOSTNAME_RE.match(host) and not host.replace(".", "").isdigit():
        return value
    raise exception.InvalidAddress(
        f"{what} {_describe(value)} is not a host name, an IPv4 or an IPv6 address"
    )


def uri_host(address: str) -> str:
    """The address as it stands in a URI: a bare IPv6 literal gets brackets."""
    return netutils.escape_ipv6(address)


def validate_scheme(scheme: str) -> str:
    if scheme not in TRANSPORTS:
        raise exception.ConfigError(
            f"[libvirt] live_migration_scheme {_describe(scheme)} is not a libvirt transport; "
            f"use one of: {', '.join(TRANSPORTS)}"
        )
    return scheme


def validate_template(template: str) -> str:
    """A ``live_migration_uri`` template needs exactly one ``%s`` and nothing else."""
    if template.count("%s") != 1 or "%" in template.replace("%s", ""):
        raise exception.ConfigError(
            "[libvirt] live_migration_uri must contain exactly one '%s' (where the destination "
            "goes) and no other '%'; for example qemu+ssh://%s/system. Better: unset it and "
            "use live_migration_scheme and live_migration_inbound_addr"
        )
    try:
        parts = urlsplit(template.replace("%s", _MARKER))
        host = parts.hostname
    except ValueError:
        host, parts = None, None
    if parts is None or not parts.scheme or not _SCHEME_RE.match(parts.scheme):
        raise exception.ConfigError(
            "[libvirt] live_migration_uri must start with a URI scheme such as qemu+tcp://"
        )
    if host != _MARKER:
        raise exception.ConfigError(
            "[libvirt] live_migration_uri must have its '%s' where the host name goes, as in "
            "qemu+ssh://%s/system; anywhere else every migration goes to the same place"
        )
    return template


def transport(scheme: str | None, template: str | None) -> str:
    """The control channel's transport: 'tcp', 'tls', 'ssh', ... ."""
    if template:
        full = urlsplit(template.replace("%s", "destination")).scheme
        return full.split("+", 1)[1] if "+" in full else "unix"
    return scheme or "tcp"


def is_encrypted_transport(name: str) -> bool:
    return name in _ENCRYPTED_TRANSPORTS


def control_uri(dest: str, scheme: str | None = None, template: str | None = None) -> str:
    """``qemu+<scheme>://<dest>/system``, or the deprecated template with ``dest``.

    ``dest`` must already be validated (:func:`validate_address`).
    """
    host = uri_host(dest)
    if template:
        return template % host
    return f"qemu+{scheme or 'tcp'}://{host}/system"


def data_uri(address: str) -> str:
    """``tcp://<address>`` for QEMU's migration stream (native TLS keeps ``tcp``)."""
    return f"tcp://{uri_host(address)}"


def password(uri: str) -> str | None:
    """The password in ``scheme://user:password@host...``, or None.

    Everything between the first ':' after the user name and the last '@' is
    the password, so reserved characters in it ('/', '?', '#') are covered.
    """
    if "://" not in uri:
        return None
    rest = uri.split("://", 1)[1]
    at = rest.rfind("@")
    if at < 0:
        return None
    userinfo = rest[:at]
    if ":" not in userinfo:
        return None
    return userinfo.split(":", 1)[1] or None


def mask_credentials(uri: str) -> str:
    """The URI with any password replaced by ``***``, safe to log or print."""
    secret = password(uri)
    return redact(uri, secret)


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced by ``***``."""
    return text.replace(secret, "***") if secret else text
