"""How libvirt's remote driver reads a control URI, and which templates migrator refuses.

A ``live_migration_uri`` template is opened by the *source* libvirtd (the
migration is peer-to-peer), so whatever it says applies to every migration,
with the daemon's privileges.  The facts below are libvirt's (docs/uri.rst,
``remoteSplitURIScheme`` and ``doRemoteOpen``), checked with libvirt 9.0 on the
test machine (tests/functional/test_uri_real.py):

* ``driver[+transport]://[user@]host[:port]/path[?name=value&...]``; without a
  ``+transport`` a URI with a host uses **TLS**; ``unix`` with a host is
  refused; ``ext`` ignores the host and runs the ``command`` parameter.
* The remote driver reads the query parameters in :data:`QUERY_PARAMS`
  (names compared without case); any other one is passed unchanged to the
  destination's daemon.
* libvirt's URI parser keeps the user information whole: in ``user:pw@host``
  the user name is ``user:pw`` (ssh logs in as that) and no password is taken.

Pure functions over the template text; no libvirt call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

TRANSPORTS = ("tcp", "tls", "ssh", "libssh", "libssh2", "unix", "ext")
ENCRYPTED_TRANSPORTS = frozenset({"tls", "ssh", "libssh", "libssh2"})
OPTION = "[libvirt] live_migration_uri"

REFUSE, WARN, ACCEPT = "refuse", "warn", "accept"
Verdict = tuple[str, str]  # (REFUSE | WARN | ACCEPT, why)


def split_scheme(scheme: str, has_host: bool) -> tuple[str, str]:
    """(driver, transport) of a URI scheme, as libvirt reads it (transport lower-cased)."""
    driver, plus, transport = scheme.partition("+")
    if plus:
        return driver, transport.lower()
    return driver, "tls" if has_host else "unix"


def transport_of(uri: str) -> str:
    """The transport libvirt uses for ``uri``: 'qemu://host/...' is 'tls'."""
    parts = urlsplit(uri)
    return split_scheme(parts.scheme, bool(parts.netloc))[1]


# -- query parameters ------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryParam:
    """A query parameter libvirt's remote driver reads, and migrator's verdict on it."""

    name: str
    effect: str  # what libvirt does with it, in words
    judge: Callable[[str], Verdict]  # value -> verdict; never quotes a free-form value


def _always(verdict: str, fix: str = "") -> Callable[[str], Verdict]:
    return lambda _value: (verdict, fix)


def _number(verdict_if_set: str, fix: str = "") -> Callable[[str], Verdict]:
    """A 0/1 switch: libvirt fails the connection on a value that is not an integer."""

    def judge(value: str) -> Verdict:
        try:
            number = int(value.strip())
        except ValueError:
            return REFUSE, "libvirt accepts only an integer here and fails every migration"
        return (verdict_if_set, fix) if number else (ACCEPT, "")

    return judge


def _choice(allowed: dict[str, Verdict]) -> Callable[[str], Verdict]:
    def judge(value: str) -> Verdict:
        known = ", ".join(allowed)
        return allowed.get(value, (REFUSE, f"libvirt knows only {known} and fails every "
                                           "migration"))

    return judge


_TRUST = "install the destination's certificate authority (tls) or host keys (ssh) instead"
_DEFAULT_CREDENTIALS = ("prefer libvirt's own configuration (/etc/pki, the ssh configuration "
                        "of the user libvirtd runs as)")

QUERY_PARAMS: dict[str, QueryParam] = {p.name: p for p in (
    QueryParam("name", "replaces the URI the destination's daemon opens (qemu:///system), so "
               "the guest could go to another driver or daemon", _always(REFUSE)),
    QueryParam("command", "runs that program, with the source libvirtd's privileges, instead "
               "of ssh to reach every destination", _always(REFUSE)),
    QueryParam("netcat", "runs that program on the destination instead of nc to reach its "
               "daemon", _always(REFUSE)),
    QueryParam("socket", "connects to that socket on the destination instead of its system "
               "daemon's, so another daemon could receive the guest", _always(REFUSE)),
    QueryParam("no_verify", "turns off the check of the destination's identity (tls: its "
               "certificate; ssh: unknown host keys are accepted)", _number(REFUSE, _TRUST)),
    QueryParam("known_hosts_verify", "decides what libssh/libssh2 do with unknown or "
               "changed host keys", _choice({
                   "normal": (ACCEPT, ""),
                   "auto": (REFUSE, "unknown host keys would be accepted without a check; "
                            + _TRUST),
                   "ignore": (REFUSE, "host keys would not be checked at all; " + _TRUST),
               })),
    QueryParam("no_sanity", "skips libvirt's checks of this host's own certificates "
               "(expiry, key usage)", _number(WARN, "renew the certificates instead")),
    QueryParam("no_tty", "stops ssh from asking for a password on a terminal",
               _number(ACCEPT)),
    QueryParam("keyfile", "logs in to every destination with that private key",
               _always(WARN, _DEFAULT_CREDENTIALS)),
    QueryParam("known_hosts", "checks host keys against that file",
               _always(WARN, _DEFAULT_CREDENTIALS)),
    QueryParam("pkipath", "reads the CA, client certificate and key from that directory",
               _always(WARN, _DEFAULT_CREDENTIALS)),
    QueryParam("sshauth", "limits the ssh authentication methods",
               _always(WARN, _DEFAULT_CREDENTIALS)),
    QueryParam("tls_priority", "sets the TLS protocol versions and ciphers",
               _always(WARN, "prefer tls_priority in libvirt.conf")),
    QueryParam("auth", "asks the destination's daemon for that authentication method only",
               _always(WARN, _DEFAULT_CREDENTIALS)),
    QueryParam("authfile", "reads credentials from that file",
               _always(WARN, _DEFAULT_CREDENTIALS)),
    QueryParam("mode", "chooses libvirtd or a per-driver daemon on the destination", _choice({
        "auto": (ACCEPT, ""), "legacy": (WARN, ""), "direct": (WARN, "")})),
    QueryParam("proxy", "chooses the helper that reaches the destination's daemon", _choice({
        "auto": (ACCEPT, ""), "netcat": (WARN, ""), "native": (WARN, "")})),
)}
_UNKNOWN = ("libvirt passes it unchanged to the destination's daemon; migrator cannot tell "
            "what it does")


def query_params(query: str) -> list[tuple[str, str]]:
    """(name, value) pairs as libvirt splits them ('&' or ';'); names lower-cased."""
    pairs = []
    for item in query.replace(";", "&").split("&"):
        if item:
            name, _eq, value = item.partition("=")
            pairs.append((name.lower(), value))
    return pairs


# -- a whole template ------------------------------------------------------------------------


@dataclass
class Findings:
    """What is wrong with a template (refused at start-up) and what only deserves a warning."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_template(template: str, marker: str) -> Findings:
    """Findings for a template whose ``%s`` (replaced by ``marker``) is already its host.

    Messages never quote the template: it may carry a password.
    """
    parts = urlsplit(template.replace("%s", marker))
    found = Findings()
    _check_scheme(parts.scheme, found)
    if parts.path != "/system":
        found.problems.append(
            f"{OPTION} must end its path with /system, the destination's system daemon, where "
            "the guests are (another path or none is another daemon or an error)")
    if parts.fragment:
        found.problems.append(f"{OPTION} must not have a '#' fragment")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port when it is read
    except ValueError:
        found.problems.append(f"{OPTION}: the port after '%s' is not a number from 0 to 65535")
    if parts.password is not None:
        found.warnings.append(
            "libvirt takes no password from a URI: it reads 'user:password' whole as the user "
            "name (ssh logs in as that user). Remove the password and use libvirt's SASL "
            "credentials (auth.conf) or ssh keys")
    for name, value in query_params(parts.query):
        _judge_param(name, value, found)
    return found


def _check_scheme(scheme: str, found: Findings) -> None:
    driver, transport = split_scheme(scheme, has_host=True)
    if driver != "qemu":
        found.problems.append(
            f"{OPTION} must use libvirt's qemu driver (qemu+<transport>://), not "
            f"{driver[:20]!r}: migrator migrates QEMU guests")
    if transport not in TRANSPORTS:
        found.problems.append(
            f"{OPTION}: libvirt knows no transport {transport[:20]!r}; use one of "
            f"{', '.join(t for t in TRANSPORTS if t not in ('unix', 'ext'))}")
    elif transport == "unix":
        found.problems.append(
            f"{OPTION}: libvirt refuses the unix transport with a remote host (a unix socket "
            "is local); use tls or ssh")
    elif transport == "ext":
        found.problems.append(
            f"{OPTION}: with the ext transport libvirt ignores the host and runs the 'command' "
            "parameter to carry the connection, so migrations would not go to the destination "
            "migrator names; use tls or ssh")


def _judge_param(name: str, value: str, found: Findings) -> None:
    param = QUERY_PARAMS.get(name)
    if param is None:
        found.warnings.append(f"query parameter {name[:40]!r}: {_UNKNOWN}")
        return
    verdict, why = param.judge(value)
    text = f"query parameter {name!r} {param.effect}" + (f"; {why}" if why else "")
    if verdict == REFUSE:
        found.problems.append(f"{OPTION}: {text}; remove it")
    elif verdict == WARN:
        found.warnings.append(text)
