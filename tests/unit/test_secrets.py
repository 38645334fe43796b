"""A password in ``live_migration_uri`` never reaches a log, an error or the CLI's output.

Every path a configuration value takes to a person: oslo.config's ``log_opt_values``
(the option is secret), ini syntax errors (oslo quotes the line), the ``$`` interpolation
error (oslo names the text after the ``$``), bad values of other options, libvirt errors
that echo the URI.  Masking replaces the userinfo password of a URI, never a substring
wherever it occurs (``operation aborted`` stays as it is for the password ``b``).
"""

from __future__ import annotations

import json
import logging

import pytest
from oslo_config import cfg

import migrator.conf
from migrator import cli, constants, exception, uri
from migrator.testing import GiB, MiB
from tests.unit.helpers.driver_run import open_driver

PASSWORD = "s3cr3t"


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path, text: str) -> str:
    path = tmp_path / "migrator.conf"
    path.write_text(text)
    return str(path)


# -- masking by URI component ---------------------------------------------------------------


@pytest.mark.parametrize(
    "given,shown",
    [
        ("qemu+tcp://user:s3cret@h/system", "qemu+tcp://user:***@h/system"),
        # the password is also the host name and part of the user: only the password goes
        ("qemu+tcp://admin:a@a/system", "qemu+tcp://admin:***@a/system"),
        ("qemu+tcp://tcp:tcp@tcp/system", "qemu+tcp://tcp:***@tcp/system"),
        ("qemu+tcp://a:p@ss@h/system?k=x", "qemu+tcp://a:***@h/system?k=x"),
        ("qemu+tcp://a:s3/cr3t@h/system", "qemu+tcp://a:***@h/system"),
        ("qemu+ssh://root@h/system", "qemu+ssh://root@h/system"),
        ("qemu+ssh://u@h/system?keyfile=/a:b@c", "qemu+ssh://u@h/system?keyfile=/a:b@c"),
        ("qemu+tcp://[::1]:22/system", "qemu+tcp://[::1]:22/system"),
        ("qemu+tcp://h/system", "qemu+tcp://h/system"),
    ],
)
def test_mask_credentials_replaces_the_password_component_only(given, shown):
    assert uri.mask_credentials(given) == shown


def test_redact_never_touches_words_that_contain_the_password():
    message = "operation aborted: Unable to parse URI qemu+tcp://admin:b@dst/system"
    assert uri.redact(message, "b") == (
        "operation aborted: Unable to parse URI qemu+tcp://admin:***@dst/system"
    )
    assert uri.redact("job aborted by client", "b") == "job aborted by client"


def test_redact_masks_a_known_password_even_in_a_uri_it_cannot_parse():
    assert uri.redact("URI 'qemu+tcp://admin:pass word@dst/system'", "pass word") == (
        "URI 'qemu+tcp://admin:***@dst/system'"
    )


def test_mask_text_masks_every_uri_in_a_message():
    text = ("from qemu+tcp://a:one@h1/system to qemu+tls://b:two@h2/system; "
            "qemu+ssh://root@h3/system has none")
    assert uri.mask_text(text) == (
        "from qemu+tcp://a:***@h1/system to qemu+tls://b:***@h2/system; "
        "qemu+ssh://root@h3/system has none"
    )


def test_options_repr_masks_the_template_password():
    from migrator.flags import Options

    shown = repr(Options(uri_template=f"qemu+tcp://admin:{PASSWORD}@%s/system", bandwidth=5))
    assert PASSWORD not in shown
    assert "uri_template='qemu+tcp://admin:***@%s/system'" in shown and "bandwidth=5" in shown


# -- oslo.config's own output ----------------------------------------------------------------


def test_the_uri_option_is_secret_and_log_opt_values_hides_it(ini_conf, caplog):
    conf = ini_conf(f"live_migration_uri = qemu+tcp://admin:{PASSWORD}@%s/system\n")
    opt = {o.name: o for o in migrator.conf.libvirt_opts}["live_migration_uri"]
    assert opt.secret
    caplog.set_level(logging.DEBUG)
    conf.log_opt_values(logging.getLogger("test"), logging.DEBUG)
    assert "live_migration_uri" in caplog.text and PASSWORD not in caplog.text


def test_dollar_in_the_password_names_no_part_of_it(ini_conf):
    conf = ini_conf("live_migration_uri = qemu+tcp://admin:pa$sword@%s/system\n")
    with pytest.raises(exception.ConfigError) as err:
        migrator.conf.read_values(conf)
    text = str(err.value)
    assert "live_migration_uri" in text and "'$$'" in text
    assert "sword" not in text and "pa$" not in text


def test_dollar_in_a_plain_option_still_names_the_reference(ini_conf):
    with pytest.raises(exception.ConfigError, match="no_such_thing"):
        migrator.conf.read_values(ini_conf("live_migration_scheme = $no_such_thing\n"))


def test_bad_value_of_a_secret_option_is_never_quoted():
    opt = cfg.StrOpt("token", secret=True)
    exc = ValueError(f"Value for option token is not valid: {PASSWORD!r} is too long")
    line = migrator.conf.values._explain("libvirt", opt, exc)
    assert "[libvirt] token" in line and PASSWORD not in line


def test_bad_value_of_another_option_has_its_password_masked(ini_conf):
    conf = ini_conf(f"live_migration_bandwidth = qemu+tcp://admin:{PASSWORD}@h/system\n")
    with pytest.raises(exception.ConfigError) as err:
        migrator.conf.read_values(conf)
    assert "live_migration_bandwidth" in str(err.value)
    assert "admin:***@h" in str(err.value) and PASSWORD not in str(err.value)


# -- the CLI's config loading ----------------------------------------------------------------


@pytest.mark.parametrize(
    "body,line",
    [
        # an indented credential before any option: "Unexpected continuation line"
        (f"[libvirt]\n  qemu+tcp://admin:{PASSWORD}@%s/system\n", 2),
        (f"live_migration_uri = qemu+tcp://admin:{PASSWORD}@%s/system\n[libvirt]\n", 2),
        (f"[libvirt]\n[qemu+tcp://admin:{PASSWORD}@%s/system\n", 2),
    ],
)
def test_ini_syntax_error_names_the_line_not_its_text(tmp_path, capsys, body, line):
    code, out, err = run_cli(capsys, "plan", "--config-file", write(tmp_path, body),
                             "--dest", "h")
    assert code == 2 and out == ""
    assert f"near line {line} is not valid ini" in err
    assert PASSWORD not in err


@pytest.mark.parametrize("password", ["pa$word", "s3/cr3t", "s3?cr3t", "s3#cr3t", "p@ss"])
def test_no_password_reaches_the_cli_output(tmp_path, capsys, password):
    path = write(tmp_path, f"[libvirt]\nlive_migration_uri = qemu+tcp://admin:{password}@%s"
                 "/system\n")
    for fmt in ([], ["--json"]):
        code, out, err = run_cli(capsys, "plan", "--config-file", path, "--dest", "h", *fmt)
        assert code in (0, 2)
        secret_part = password.split("$")[-1]
        assert password not in out + err and secret_part not in out + err


# -- libvirt errors that echo the URI (through the driver) -----------------------------------


def test_a_one_letter_password_leaves_libvirt_messages_readable(fake, ini_conf):
    fake.world.add_guest("src", "vm1", memory=GiB, working_set=64 * MiB, dirty_rate=MiB)
    fake.world.faults.fail(
        "migrateToURI3", code=constants.VIR_ERR_OPERATION_FAILED, domain=constants.VIR_FROM_QEMU,
        message="operation aborted: migration to qemu+tcp://admin:b@dst/system broke")
    conf = ini_conf("live_migration_uri = qemu+tcp://admin:b@%s/system\n")
    driver, conn = open_driver(fake, conf)
    done = []
    handle = driver.live_migration(conn.lookupByName("vm1"), "dst", post_method=done.append,
                                   recover_method=done.append)
    outcome = handle.wait(30)
    assert outcome is not None and outcome.status != "completed"
    text = json.dumps(outcome.to_dict())
    assert "operation aborted" in text and "admin:***@dst" in text
    assert "admin:b@" not in text
