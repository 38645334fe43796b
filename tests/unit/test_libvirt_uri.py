"""live_migration_uri templates as libvirt's remote driver reads them: refused, warned or fine.

The premises (qemu:// is TLS, unix with a host is refused, ext needs a command and ignores
the host, the user name keeps 'user:password' whole, a non-integer no_verify fails) are
checked against real libvirt in tests/functional/test_uri_real.py.
"""

from __future__ import annotations

import pytest

from migrator import exception, libvirt_uri, uri
from migrator.flags import HostFacts, MigrationFacts, Options, check_options, plan

HOST = HostFacts("kvm", (11, 0, 0), (10, 1, 0))
PASSWORD = "s3cr3t"

# every parameter libvirt's remote driver reads -> (value, verdict)
PARAM_CASES: dict[str, list[tuple[str, str]]] = {
    "name": [("qemu:///session", "refuse")],
    "command": [("/opt/ssh", "refuse")],
    "netcat": [("/opt/nc", "refuse")],
    "socket": [("/run/other-sock", "refuse")],
    "no_verify": [("1", "refuse"), ("0", "accept"), ("yes", "refuse")],
    "known_hosts_verify": [("normal", "accept"), ("auto", "refuse"), ("ignore", "refuse"),
                           ("sometimes", "refuse")],
    "no_sanity": [("1", "warn"), ("0", "accept"), ("x", "refuse")],
    "no_tty": [("1", "accept"), ("0", "accept"), ("x", "refuse")],
    "keyfile": [("/etc/nova/migration/identity", "warn")],
    "known_hosts": [("/etc/nova/known_hosts", "warn")],
    "pkipath": [("/etc/pki/nova", "warn")],
    "sshauth": [("privkey", "warn")],
    "tls_priority": [("NORMAL", "warn")],
    "auth": [("sasl", "warn")],
    "authfile": [("/etc/nova/auth.conf", "warn")],
    "mode": [("auto", "accept"), ("legacy", "warn"), ("direct", "warn"), ("x", "refuse")],
    "proxy": [("auto", "accept"), ("native", "warn"), ("netcat", "warn"), ("x", "refuse")],
}


def verdict(template: str) -> str:
    found = libvirt_uri.check_template(template, "dest")
    return "refuse" if found.problems else "warn" if found.warnings else "accept"


def test_every_parameter_libvirt_reads_has_a_case():
    assert set(PARAM_CASES) == set(libvirt_uri.QUERY_PARAMS)


@pytest.mark.parametrize("name,value,expected", [
    (name, value, expected) for name, cases in PARAM_CASES.items() for value, expected in cases
])
def test_query_parameter_verdict(name, value, expected):
    template = f"qemu+ssh://%s/system?{name}={value}"
    assert verdict(template) == expected
    found = libvirt_uri.check_template(template, "dest")
    for message in found.problems + found.warnings:
        assert repr(name) in message  # says which parameter, and what libvirt does with it


def test_parameter_names_are_read_without_case_and_split_on_both_separators():
    assert verdict("qemu+tls://%s/system?No_Verify=1") == "refuse"
    assert verdict("qemu+ssh://%s/system?no_tty=1;command=/x") == "refuse"
    assert libvirt_uri.query_params("a=1&B=2;c") == [("a", "1"), ("b", "2"), ("c", "")]


def test_unknown_parameter_is_warned_about_without_its_value():
    found = libvirt_uri.check_template(f"qemu+tcp://%s/system?password={PASSWORD}", "dest")
    assert not found.problems
    (warning,) = found.warnings
    assert "'password'" in warning and "passes it unchanged" in warning
    assert PASSWORD not in warning


@pytest.mark.parametrize("template,word", [
    ("qemu+unix://%s/system", "unix transport with a remote host"),
    ("qemu+ext://%s/system?command=/usr/bin/nc", "ignores the host"),
    ("qemu+bogus://%s/system", "no transport 'bogus'"),
    ("xen+ssh://%s/system", "qemu driver"),
    ("remote+tls://%s/system", "qemu driver"),
    ("qemu+tcp://%s/session", "/system"),
    ("qemu+tcp://%s", "/system"),
    ("qemu+tcp://%s/system#x", "fragment"),
])
def test_transports_and_paths_libvirt_refuses_or_that_go_elsewhere(template, word):
    with pytest.raises(exception.ConfigError) as err:
        uri.validate_template(template)
    assert any(word in problem for problem in err.value.problems), err.value.problems


@pytest.mark.parametrize("template", [
    "qemu+tcp://%s/system", "qemu+ssh://nova@%s:2022/system", "qemu://%s/system",
    "qemu+TLS://%s/system", "qemu+libssh2://%s/system?known_hosts_verify=normal",
])
def test_templates_that_are_fine(template):
    assert uri.validate_template(template) == template
    assert uri.template_warnings(template) == []


def test_a_password_is_warned_about_and_never_quoted():
    template = f"qemu+tcp://admin:{PASSWORD}@%s/system"
    (warning,) = uri.template_warnings(template)
    assert "no password from a URI" in warning and PASSWORD not in warning
    with pytest.raises(exception.ConfigError) as err:
        uri.validate_template(f"qemu+unix://admin:{PASSWORD}@%s/system?no_verify=1")
    assert len(err.value.problems) == 2 and PASSWORD not in str(err.value)


# -- through the start-up checks and the plan ------------------------------------------------


def test_refused_template_is_a_start_up_error_naming_the_option():
    with pytest.raises(exception.ConfigError) as err:
        check_options(Options(uri_template="qemu+tls://%s/system?no_verify=1"), HOST)
    (problem,) = err.value.problems
    assert problem.startswith("[libvirt] live_migration_uri") and "no_verify" in problem


def test_template_warnings_are_start_up_decisions_and_plan_warnings():
    options = Options(uri_template="qemu+ssh://nova@%s/system?keyfile=/etc/nova/id")
    (decision,) = check_options(options, HOST)
    assert decision.item == "live_migration_uri" and decision.warning
    assert "keyfile" in decision.reason and "private key" in decision.reason
    p = plan(options, HOST, MigrationFacts(dest="compute-2"))
    assert any("keyfile" in w for w in p.warnings)


def test_qemu_scheme_without_transport_is_tls_so_auto_tunnels():
    """libvirt opens qemu://host over TLS: the auto rule sees an encrypted control channel."""
    p = plan(Options(uri_template="qemu://%s/system"), HOST, MigrationFacts(dest="compute-2"))
    assert p.tunnelled and p.uri == "qemu://compute-2/system"
    reason = next(d.reason for d in p.decisions if d.item == "VIR_MIGRATE_TUNNELLED")
    assert "encrypted (tls)" in reason
    # with native TLS it is not tunnelled, and the control channel is not called plain tcp
    p = plan(Options(uri_template="qemu://%s/system", native_tls=True), HOST,
             MigrationFacts(dest="compute-2"))
    assert not p.tunnelled and not any("plain tcp" in w for w in p.warnings)
