"""Control URI (libvirt peer-to-peer connection) and data URI (QEMU stream).

Pure functions.  Every address is validated before it goes into a URI:
only host names, IPv4 and IPv6 literals (optionally with a port) pass, so a
crafted address cannot add a path, user info, a query or a second host.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from oslo_utils import netutils

from migrator import exception, libvirt_uri

# RFC 1123 labels; underscores are accepted because Nova's host-name check
# (``^[\w\-\.:]+$``) accepts them and real deployments use them.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
_SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.-]*$")
_MARKER = "migrator-destination-marker"
_MAX_ADDRESS_LEN = 255


def _describe(value: str) -> str:
    """``value`` quoted for an error message: short, printable, no password."""
    shown = mask_text(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
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


# live_migration_scheme: the transports that reach a remote libvirtd
SCHEMES = tuple(t for t in libvirt_uri.TRANSPORTS if t not in ("unix", "ext"))


def validate_scheme(scheme: str) -> str:
    """A ``live_migration_scheme`` that reaches the destination's libvirtd."""
    if scheme in ("unix", "ext"):
        why = ("a unix socket is local: libvirt refuses it with a remote host" if scheme == "unix"
               else "libvirt then ignores the host and runs a command given in the URI")
        raise exception.ConfigError(
            f"[libvirt] live_migration_scheme {scheme} cannot reach another host ({why}); use "
            f"one of: {', '.join(SCHEMES)}"
        )
    if scheme not in SCHEMES:
        raise exception.ConfigError(
            f"[libvirt] live_migration_scheme {_describe(scheme)} is not a libvirt transport; "
            f"use one of: {', '.join(SCHEMES)}"
        )
    return scheme


def validate_template(template: str) -> str:
    """A ``live_migration_uri`` template libvirt reads as meant, or every problem with it.

    Exactly one ``%s``, standing for the host, and nothing libvirt refuses or that would
    weaken or redirect the connection (:func:`migrator.libvirt_uri.check_template`).
    """
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
    problems = libvirt_uri.check_template(template, _MARKER).problems
    if problems:
        raise exception.ConfigError(problems)
    return template


def template_warnings(template: str) -> list[str]:
    """What a valid template does that the operator should know (one line each)."""
    return libvirt_uri.check_template(template, _MARKER).warnings


def transport(scheme: str | None, template: str | None) -> str:
    """The control channel's transport as libvirt reads it: 'tcp', 'tls', 'ssh', ...

    A template without ``+transport`` (``qemu://%s/system``) is TLS: libvirt's
    default for a URI with a host.
    """
    if template:
        return libvirt_uri.transport_of(template.replace("%s", _MARKER))
    return scheme or "tcp"


def is_encrypted_transport(name: str) -> bool:
    return name in libvirt_uri.ENCRYPTED_TRANSPORTS


def split_address(address: str) -> tuple[str, int | None]:
    """(host, port) of a validated address; a bare IPv6 literal has no port."""
    return _split_port(address)


def host_part(address: str) -> str:
    """A validated address without its port (a certificate or host name never has one)."""
    return split_address(address)[0]


def control_uri(dest: str, scheme: str | None = None, template: str | None = None,
                via: str | None = None) -> str:
    """``qemu+<scheme>://<host>[:<port>]/system``, or the deprecated template.

    The host is that of ``via`` (the destination's inbound address) or of
    ``dest``; the port only ever that of ``dest``: libvirtd's port on the
    destination host.  A port in the inbound address is QEMU's data port
    (:func:`data_uri`), never libvirtd's.  Addresses must already be validated
    (:func:`validate_address`).
    """
    host = host_part(via or dest)
    port = split_address(dest)[1]
    if template:
        if port is not None and template_port(template) is not None:
            raise exception.InvalidAddress(
                f"destination host {_describe(dest)} has a port, and live_migration_uri names "
                "its own: give the destination without a port or unset the template's port"
            )
        return template % _join(host, port)
    return f"qemu+{scheme or 'tcp'}://{_join(host, port)}/system"


def template_port(template: str) -> int | None:
    """The port a (validated) ``live_migration_uri`` template gives after its ``%s``."""
    return urlsplit(template.replace("%s", _MARKER)).port


def _join(host: str, port: int | None) -> str:
    return uri_host(host) + ("" if port is None else f":{port}")


def data_uri(address: str) -> str:
    """``tcp://<address>`` for QEMU's migration stream (native TLS keeps ``tcp``)."""
    return f"tcp://{uri_host(address)}"


# ``scheme://user:password@``: the password runs to the last '@' before the
# end of the authority ('/', '?', '#') or of the token.  The loose form runs to
# the last '@' of the whitespace-free token, for text whose URI may be malformed
# (a password with '/' in it): masking too much there is safe, too little is not.
_USERINFO = r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@\[\]]*:)"
_PASSWORD_IN_URI = re.compile(_USERINFO + r"(?P<password>[^\s/?#]*)@")
_PASSWORD_IN_TEXT = re.compile(_USERINFO + r"(?P<password>\S*)@")
MASK = "***"


def password(uri: str) -> str | None:
    """The password of ``scheme://user:password@host...``, or None."""
    match = _PASSWORD_IN_URI.match(uri) or _PASSWORD_IN_TEXT.match(uri)
    return (match.group("password") or None) if match else None


def mask_credentials(uri: str) -> str:
    """The URI with its password (the userinfo component) replaced by ``***``."""
    for pattern in (_PASSWORD_IN_URI, _PASSWORD_IN_TEXT):
        match = pattern.match(uri)
        if match and match.group("password"):
            return uri[: match.start("password")] + MASK + uri[match.end("password") :]
    return uri


def mask_text(text: str) -> str:
    """``text`` with the password of every URI in it replaced by ``***``.

    For messages that may quote a URI (libvirt echoes the one it could not
    open, oslo.config quotes a bad value).  Only the userinfo component is
    touched, so words that happen to contain the password stay intact.
    """
    return _PASSWORD_IN_TEXT.sub(lambda m: m.group("head") + MASK + "@", text)


def redact(text: str, secret: str | None = None) -> str:
    """``text`` safe to log: :func:`mask_text`, and ``secret`` where it stands as a password.

    ``secret`` (the password of the URI in use) is replaced only between a
    ``user:`` and an ``@``, even in a URI :func:`mask_text` could not parse,
    never inside other words (``operation aborted`` stays as it is for the
    password ``b``).
    """
    if secret:
        text = re.sub(rf"(:){re.escape(secret)}(@)", rf"\g<1>{MASK}\g<2>", text)
    return mask_text(text)
