"""Control and data URIs (Nova §3 cases) and address validation against injection."""

from __future__ import annotations

import pytest

from migrator import exception, uri


@pytest.mark.parametrize(
    "dest,expected",
    [
        ("host2", "qemu+tcp://host2/system"),
        ("10.0.0.1", "qemu+tcp://10.0.0.1/system"),
        ("10.0.0.1:4444", "qemu+tcp://10.0.0.1:4444/system"),
        ("host2:4444", "qemu+tcp://host2:4444/system"),
        ("::1", "qemu+tcp://[::1]/system"),
        ("2001:db8::7", "qemu+tcp://[2001:db8::7]/system"),
        ("[::1]:4444", "qemu+tcp://[::1]:4444/system"),
        ("[2001:db8::7]", "qemu+tcp://[2001:db8::7]/system"),
    ],
)
def test_control_uri(dest, expected):
    assert uri.control_uri(uri.validate_address(dest)) == expected


def test_scheme():
    assert uri.control_uri("host2", scheme="tls") == "qemu+tls://host2/system"
    assert uri.control_uri("::1", scheme="ssh") == "qemu+ssh://[::1]/system"


def test_forced_template_wins_over_scheme():
    assert uri.control_uri("host2", "tcp", "qemu+ssh://%s/system") == "qemu+ssh://host2/system"
    assert uri.control_uri("::1", None, "qemu+ssh://%s/system") == "qemu+ssh://[::1]/system"


def test_data_uri():
    assert uri.data_uri("127.0.0.2") == "tcp://127.0.0.2"
    assert uri.data_uri("fd00::2") == "tcp://[fd00::2]"
    assert uri.data_uri("[fd00::2]") == "tcp://[fd00::2]"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "host 2",
        "host2/evil",
        "user@host2",
        "host2?socket=/tmp/x",
        "host2#frag",
        "fe80::1%eth0",
        "host2\n",
        "host2\x00",
        "hôst",
        "a" * 300,
        "1.2.3",
        "-host",
        "host2:0",
        "host2:65536",
        "host2:http",
        "[host2]:22",
        "[::1",
        "[::1]x",
        "host2/system?x=1#",
        "qemu+tcp://evil/system",
        "h\tb",
        "'; rm -rf /",
    ],
)
def test_injection_refused(bad):
    with pytest.raises(exception.InvalidAddress) as err:
        uri.validate_address(bad, "destination host")
    assert "destination host" in str(err.value)


def test_zone_hint_only_for_percent():
    with pytest.raises(exception.InvalidAddress, match="zone ids"):
        uri.validate_address("fe80::1%eth0")
    with pytest.raises(exception.InvalidAddress) as err:
        uri.validate_address("a/b")
    assert "zone" not in str(err.value)


@pytest.mark.parametrize(
    "template", ["qemu+ssh://host/system", "qemu+ssh://%s/%s", "%s", "qemu://%s/%d", "nothing"]
)
def test_bad_templates(template):
    with pytest.raises(exception.ConfigError, match="live_migration_uri"):
        uri.validate_template(template)


def test_transport():
    assert uri.transport(None, None) == "tcp"
    assert uri.transport("tls", None) == "tls"
    assert uri.transport("tcp", "qemu+ssh://%s/system") == "ssh"
    assert uri.transport(None, "qemu+LibSSH2://%s/system") == "libssh2"  # libvirt lower-cases


def test_a_template_without_transport_is_tls():
    # libvirt's default transport for a URI with a host is TLS (remoteSplitURIScheme;
    # tests/functional/test_uri_real.py shows it on the rig)
    assert uri.transport(None, "qemu://%s/system") == "tls"
    assert uri.transport("tcp", "qemu://%s/system") == "tls"
    assert uri.is_encrypted_transport(uri.transport(None, "qemu://%s/system"))
    assert uri.is_encrypted_transport("libssh2")
    assert not uri.is_encrypted_transport("tcp")


def test_mask_credentials():
    assert uri.mask_credentials("qemu+tcp://user:s3cret@h/system") == "qemu+tcp://user:***@h/system"
    assert uri.mask_credentials("qemu+ssh://root@h/system") == "qemu+ssh://root@h/system"
    assert uri.mask_credentials("qemu+tcp://h/system") == "qemu+tcp://h/system"


@pytest.mark.parametrize("scheme", ["tcp", "tls", "ssh", "libssh", "libssh2"])
def test_valid_schemes(scheme):
    assert uri.validate_scheme(scheme) == scheme


@pytest.mark.parametrize("scheme,why", [("unix", "local"), ("ext", "runs a command")])
def test_schemes_that_cannot_reach_another_host_are_refused(scheme, why):
    # libvirt: "using unix socket and remote server 'h' is not supported"; ext runs `command`
    with pytest.raises(exception.ConfigError, match="cannot reach another host") as err:
        uri.validate_scheme(scheme)
    assert why in str(err.value)


@pytest.mark.parametrize("scheme", ["tcp://evil", "t cp", "TLS", "", "tls/x"])
def test_bad_schemes(scheme):
    with pytest.raises(exception.ConfigError, match="live_migration_scheme"):
        uri.validate_scheme(scheme)
