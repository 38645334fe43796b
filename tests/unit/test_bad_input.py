"""Bad input: malformed ini files, values crafted to get into URIs, credentials, hostile CLI args.

The promise: whatever the input, migrator either works or stops with a clear error (one
``migrator: error:`` line per problem, exit status 2, never a traceback), nothing crafted
reaches a libvirt URI, and a password in ``live_migration_uri`` never shows up in logs,
outcomes or CLI output.  test_cli_plan.py covers the basic ``plan`` errors; this file
covers the hostile and oversized cases for every subcommand (``plan``, ``simulate``,
``migrate``), in a subprocess (``python -m migrator.cli``) where the exit status and the
absence of a traceback are what a user sees.
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from migrator import cli, exception
from migrator import constants as C
from migrator.driver import LiveMigrationDriver
from migrator.testing import GiB, MiB
from migrator.testing import fakelibvirt as fl

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = str(ROOT / "etc" / "migrator.conf.sample")
PASSWORD = "s3cr3t"
CRED_TEMPLATE = f"qemu+tcp://admin:{PASSWORD}@%s/system"
MAX_ERR = 2000  # a clear error is short, whatever the size of the input

# -- helpers ---------------------------------------------------------------------------------


def cli_in_process(capsys, *argv):
    """cli.main in this process; an escaping exception is the traceback a user would see."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse
        code = exc.code
    except Exception as exc:  # pragma: no cover - that is the failure being tested for
        pytest.fail(f"traceback: {type(exc).__name__}: {exc}")
    out, err = capsys.readouterr()
    return code, out, err


def assert_clear_error(code, out, err):
    assert code == 2, (code, err[-500:])
    assert "Traceback" not in err
    assert len(err) < MAX_ERR, f"{len(err)} characters of error"
    assert "migrator: error:" in err or "error: argument" in err, err[-500:]


def write(tmp_path, data: bytes | str, name="migrator.conf") -> str:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


@pytest.fixture(autouse=True)
def guest_vm1(request):
    """A test that uses the fake libvirt (conftest's ``fake``) finds guest vm1 on src."""
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").world.add_guest(
            "src", "vm1", memory=2 * GiB, working_set=512 * MiB, dirty_rate=100 * MiB)


@pytest.fixture
def driver_from(fake, ini_conf):
    """A driver (not started) on the fake libvirt from a [libvirt] ini body; and its connection."""

    def build(body: str):
        conn = fake.module.open("qemu+tcp://src/system")
        return LiveMigrationDriver(ini_conf(body), conn, clock=fake.clock), conn

    return build


# -- malformed ini files -------------------------------------------------------------------

MALFORMED = {
    "binary-garbage": random.Random(6).randbytes(4096),
    "truncated-section": b"[libvirt]\nlive_migration_bandwidth = 5\n[libv",
    "only-a-truncated-section": b"[libvirt",
    "no-section": b"live_migration_bandwidth = 5\n",
    "non-utf8-value": b"[libvirt]\nlive_migration_scheme = t\xffcp\n",
    "latin1-comment": b"# caf\xe9\n[libvirt]\nlive_migration_scheme = tcp\n",
    "utf16": "[libvirt]\nlive_migration_scheme = tcp\n".encode("utf-16"),
    "utf8-bom": b"\xef\xbb\xbf[libvirt]\nlive_migration_scheme = tcp\n",
    "nul-in-value": b"[libvirt]\nlive_migration_scheme = tcp\x00evil\n",
    "escape-in-value": b"[libvirt]\nlive_migration_scheme = tc\x1bp\n",
    "continuation-line": b"[libvirt]\nlive_migration_scheme = tcp\n  evil\n",
    "no-value-name": b"[libvirt]\n= 5\n",
    "bad-int": b"[libvirt]\nlive_migration_bandwidth = lots\n",
    "5000-digit-int": b"[libvirt]\nlive_migration_completion_timeout = " + b"9" * 5000 + b"\n",
    "negative-int": b"[libvirt]\nlive_migration_parallel_connections = -1\n",
    "bad-bool": b"[libvirt]\nlive_migration_tunnelled = maybe\n",
    "non-ascii-flag": "[libvirt]\nlive_migration_extra_flags = COMPRESSÉD\n".encode(),
    "bad-choice": b"[libvirt]\nlive_migration_timeout_action = reboot\n",
}


@pytest.mark.parametrize("command", ["plan", "simulate", "migrate"])
@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_ini_is_a_clear_error(tmp_path, capsys, command, name):
    path = write(tmp_path, MALFORMED[name])
    argv = {
        "plan": ["plan", "--config-file", path, "--dest", "h"],
        "simulate": ["simulate", "--config-file", path, "--memory", "1GiB"],
        "migrate": ["migrate", "--config-file", path, "--connect", "qemu+tcp://127.0.0.1:1/system",
                    "vm", "h"],
    }[command]
    code, out, err = cli_in_process(capsys, *argv)
    assert_clear_error(code, out, err)
    if command != "migrate":  # migrate may meet the unreachable libvirt first
        assert out == ""


def test_duplicate_keys_and_sections_last_one_wins(tmp_path, capsys):
    path = write(tmp_path, "[libvirt]\nlive_migration_bandwidth = 5\nlive_migration_bandwidth = 7\n"
                 "[DEFAULT]\n[libvirt]\nlive_migration_permit_post_copy = true\n"
                 "live_migration_bandwidth = 9\n")
    code, out, err = cli_in_process(capsys, "plan", "--config-file", path, "--dest", "h",
                                    "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["params"]["bandwidth"] == 9 and "VIR_MIGRATE_POSTCOPY" in doc["flag_names"]


def test_ten_megabyte_file_of_comments(tmp_path, capsys):
    body = b"[libvirt]\n" + (b"# " + b"x" * 98 + b"\n") * 100_000 + b"live_migration_bandwidth=3\n"
    path = write(tmp_path, body)
    assert os.path.getsize(path) >= 10_000_000
    code, out, err = cli_in_process(capsys, "plan", "--config-file", path, "--dest", "h",
                                    "--json")
    assert code == 0, err[-500:]
    assert json.loads(out)["params"]["bandwidth"] == 3


def test_ten_megabyte_bad_value_gives_a_short_error(tmp_path, capsys):
    path = write(tmp_path, b"[libvirt]\nlive_migration_inbound_addr = " + b"a" * 10_000_000)
    code, out, err = cli_in_process(capsys, "plan", "--config-file", path, "--dest", "h")
    assert_clear_error(code, out, err)
    assert "live_migration_inbound_addr" in err


def test_oversized_or_unknown_scheme_is_refused(tmp_path, capsys):
    for scheme in (b"a" * 10_000_000, b"kvm"):
        path = write(tmp_path, b"[libvirt]\nlive_migration_scheme = " + scheme + b"\n")
        code, out, err = cli_in_process(capsys, "plan", "--config-file", path, "--dest", "h")
        assert_clear_error(code, out, err)
        assert "live_migration_scheme" in err


@pytest.mark.parametrize("line", ["live_migration_scheme = $foo",
                                  "live_migration_uri = qemu+tcp://admin:pa$word@%s/system"])
def test_dollar_in_a_value_is_a_clear_error(tmp_path, capsys, line):
    path = write(tmp_path, f"[libvirt]\n{line}\n")
    code, out, err = cli_in_process(capsys, "plan", "--config-file", path, "--dest", "h")
    assert_clear_error(code, out, err)


HUGE_VALUES = {
    "live_migration_bandwidth": (
        "8796093022208", "libvirt refuses a bandwidth above 8796093022207 MiB/s "
        "(QEMU_DOMAIN_MIG_BANDWIDTH_MAX) and libvirt-python cannot pass one above 2**64-1, "
        "at migration time; fix: max=8796093022207 on the IntOpt"),
    "live_migration_parallel_connections": (
        "100000", "QEMU's multifd-channels is a uint8 and libvirt's parallel.connections "
        "an int: anything above 255 fails at migration time; fix: max=255 on the IntOpt"),
    "live_migration_downtime_steps": (
        "1000000000", "StepsPolicy materialises the whole ramp (list(downtime_steps(...))) "
        "in the migration thread: a billion steps exhausts memory mid-migration; fix: a max "
        "on the IntOpt (Nova's ramp never needs more than a few hundred) or a lazy ramp"),
}


@pytest.mark.parametrize("option", [
    option for option in sorted(HUGE_VALUES)
])
def test_huge_numbers_are_refused_at_start_up(fake, option, driver_from):
    value, _why = HUGE_VALUES[option]
    driver, _conn = driver_from(f"{option} = {value}")
    with pytest.raises(exception.ConfigError, match=option):
        driver.init_host()


# -- values crafted to get into URIs ---------------------------------------------------------

CRAFTED_ADDRESSES = [
    "10.0.0.1/evil", "evil@10.0.0.1", "user:pw@10.0.0.1", "10.0.0.1?x=1", "10.0.0.1#x",
    "10.0.0.1 evil", "10.0.0.1\nevil", "fe80::1%eth0", "[fd00::1]/x", "10.0.0.1:0",
    "10.0.0.1:65536", "tcp://10.0.0.1", "qemu+tcp://evil/system", "$(reboot)", "evil;ls",
    "10.0.0.1%2fevil", "ｅｖｉｌ", "e\u200bvil", "x" * 256, "",
]


@pytest.mark.parametrize("addr", CRAFTED_ADDRESSES)
def test_crafted_inbound_address_never_reaches_libvirt(fake, monkeypatch, addr, driver_from):
    called = []
    monkeypatch.setattr(fl.virDomain, "migrateToURI3", lambda *a, **k: called.append(a))
    driver, conn = driver_from("")
    driver.init_host()
    before = len(fake.world.connections())
    calls = []
    with pytest.raises(exception.InvalidAddress, match="destination inbound address"):
        driver.live_migration(conn.lookupByName("vm1"), "dst", inbound_addr=addr,
                              post_method=calls.append, recover_method=calls.append)
    assert not called and not calls and driver.active_migrations() == []
    assert len(fake.world.connections()) == before


@pytest.mark.parametrize("addr", [a for a in CRAFTED_ADDRESSES if a and "\n" not in a])
def test_crafted_inbound_address_on_the_destination_fails_its_start_up(fake, addr, driver_from):
    driver, _conn = driver_from(f"live_migration_inbound_addr = {addr}")
    with pytest.raises(exception.MigratorError, match="live_migration_inbound_addr"):
        driver.init_host()
        driver.pre_live_migration()


@pytest.mark.parametrize("scheme", ["tcp://evil/", "tcp@evil", "tls/x", "ssh?x", "tcp#",
                                    "tcp evil", "TLS", ""])
def test_crafted_scheme_fails_start_up(fake, scheme, driver_from):
    driver, _conn = driver_from(f"live_migration_scheme = {scheme}")
    with pytest.raises(exception.ConfigError, match="live_migration_scheme"):
        driver.init_host()


@pytest.mark.parametrize("template", [
    "qemu+tcp://%s/system%d", "qemu+tcp://%s/%s", "qemu+tcp://%(host)s/system",
    "qemu+tcp://%s/sys%%tem", "qemu+tcp://admin:%s@%s/system", "qemu+tcp://evil/system",
    "%s", "//%s/system",
])
def test_template_with_extra_percent_or_no_host_fails_start_up(fake, template, driver_from):
    driver, _conn = driver_from(f"live_migration_uri = {template}")
    with pytest.raises(exception.ConfigError, match="live_migration_uri"):
        driver.init_host()


@pytest.mark.parametrize("template", ["qemu+tcp://%s@evil/system", "qemu+tcp://evil/%s",
                                      "qemu+tcp://evil/system?x=%s"])
def test_template_must_put_the_destination_in_the_host_part(fake, template, driver_from):
    driver, _conn = driver_from(f"live_migration_uri = {template}")
    with pytest.raises(exception.ConfigError, match="live_migration_uri"):
        driver.init_host()


# -- credentials in the URI template ----------------------------------------------------------


def test_template_password_never_in_logs_or_outcome(fake, caplog, driver_from):
    caplog.set_level(logging.DEBUG)
    driver, conn = driver_from(f"live_migration_uri = {CRED_TEMPLATE}")
    driver.init_host()
    seen = []
    handle = driver.live_migration(conn.lookupByName("vm1"), "dst", post_method=seen.append,
                                   recover_method=seen.append, on_progress=seen.append)
    outcome = handle.wait(30)
    assert outcome is not None and outcome.status == "completed"
    assert handle.plan.uri == "qemu+tcp://admin:s3cr3t@dst/system"  # libvirt gets it
    assert any("admin:***@dst" in r.getMessage() for r in caplog.records)
    assert PASSWORD not in caplog.text
    assert PASSWORD not in json.dumps(outcome.to_dict())
    assert PASSWORD not in json.dumps(handle.plan.to_dict())
    assert all(PASSWORD not in str(d) for d in handle.plan.decisions)
    assert PASSWORD not in repr(outcome) and PASSWORD not in repr(handle.plan)


def test_template_password_masked_in_libvirt_errors(fake, caplog, driver_from):
    caplog.set_level(logging.DEBUG)
    fake.world.faults.fail("migrateToURI3", code=C.VIR_ERR_INTERNAL_ERROR,
                           domain=C.VIR_FROM_NONE,
                           message=f"internal error: Unable to parse URI "
                           f"{CRED_TEMPLATE % 'dst'}")
    driver, conn = driver_from(f"live_migration_uri = {CRED_TEMPLATE}")
    driver.init_host()
    handle = driver.live_migration(conn.lookupByName("vm1"), "dst", post_method=print,
                                   recover_method=print)
    outcome = handle.wait(30)
    assert outcome.status == "failed"
    assert PASSWORD not in json.dumps(outcome.to_dict()) and PASSWORD not in caplog.text


@pytest.mark.parametrize("password", ["s3/cr3t", "s3?cr3t", "s3#cr3t"])
def test_password_with_reserved_characters_is_masked(tmp_path, capsys, password):
    path = write(tmp_path, f"[libvirt]\nlive_migration_uri = qemu+tcp://admin:{password}@%s"
                 "/system\n")
    code, out, err = cli_in_process(capsys, "plan", "--config-file", path, "--dest", "h",
                                    "--json")
    assert password not in out + err
    assert code in (0, 2)


def test_template_password_not_in_plan_output(tmp_path, capsys):
    path = write(tmp_path, f"[libvirt]\nlive_migration_uri = {CRED_TEMPLATE}\n")
    for fmt in ([], ["--json"]):
        code, out, err = cli_in_process(capsys, "plan", "--config-file", path, "--dest",
                                        "compute-2", *fmt)
        assert code == 0 and "admin:***@compute-2" in out
        assert PASSWORD not in out + err


# -- hostile arguments to every subcommand, in a subprocess -------------------------------

LONG = "x" * 5000
NOT_UTF8 = b"comp\xffute"  # argv bytes that are not UTF-8 (surrogate-escaped by Python)
TEST_DRIVER = "test:///default"  # libvirt's in-process test driver: a domain named "test"


def _hidden_libvirt(tmp: Path) -> dict[str, str]:
    tmp.mkdir(exist_ok=True)
    (tmp / "libvirt.py").write_text("raise ImportError('libvirt-python hidden by the test')\n")
    return {"PYTHONPATH": str(tmp)}


CLI_CASES: dict[str, tuple[list, dict | None]] = {
    # plan
    "plan-dest-oversized": (["plan", "--config-file", SAMPLE, "--dest", LONG], None),
    "plan-dest-non-ascii": (["plan", "--config-file", SAMPLE, "--dest", "compute-é"], None),
    "plan-dest-not-utf8": (["plan", "--config-file", SAMPLE, "--dest", NOT_UTF8], None),
    "plan-inbound-fullwidth": (["plan", "--config-file", SAMPLE, "--dest", "h",
                                "--inbound-addr", "１０.0.0.1"], None),
    "plan-config-not-utf8": (["plan", "--config-file", b"/nonexistent/\xff.conf", "--dest",
                              "h"], None),
    "plan-connect-bogus": (["plan", "--config-file", SAMPLE, "--dest", "h", "--connect",
                            "bogus://x"], None),
    "plan-connect-not-utf8": (["plan", "--config-file", SAMPLE, "--dest", "h", "--connect",
                               b"qemu+tcp://\xff/system"], None),
    "plan-version-oversized": (["plan", "--config-file", SAMPLE, "--dest", "h",
                                "--libvirt-version", "9" * 5000], None),
    # simulate
    "simulate-memory-non-ascii": (["simulate", "--memory", "８GiB"], None),
    "simulate-rate-not-utf8": (["simulate", "--dirty-rate", b"\xff"], None),
    "simulate-seconds-nan": (["simulate", "--abort-at", "nan"], None),
    "simulate-plot-oversized": (["simulate", "--memory", "1GiB", "--plot", LONG], None),
    # migrate, with a bogus --connect or libvirt's test driver
    "migrate-connect-bogus": (["migrate", "--connect", "bogus://x", "vm", "h"], None),
    "migrate-connect-refused": (["migrate", "--connect", "qemu+tcp://127.0.0.1:1/system",
                                 "vm", "h"], None),
    "migrate-connect-non-ascii": (["migrate", "--connect", "é", "vm", "h"], None),
    "migrate-domain-non-ascii": (["migrate", "--connect", TEST_DRIVER, "vm-é", "h"], None),
    "migrate-dest-crafted": (["migrate", "--connect", TEST_DRIVER, "test", "h/evil"], None),
    "migrate-inbound-not-utf8": (["migrate", "--connect", TEST_DRIVER, "test", "h",
                                  "--inbound-addr", NOT_UTF8], None),
    "simulate-config-missing": (["simulate", "--config-file", "/nonexistent/é.conf"], None),
    "migrate-config-missing": (["migrate", "--config-file", b"/nonexistent/\xff.conf",
                                "--connect", TEST_DRIVER, "test", "h"], None),
    "plan-disk-non-ascii": (["plan", "--config-file", SAMPLE, "--dest", "h",
                             "--block-migration", "--disk", "vdé"], None),
    "plan-version-non-ascii-digits": (["plan", "--config-file", SAMPLE, "--dest", "h",
                                       "--libvirt-version", "٩.٠.٠"], None),
    "simulate-seconds-non-ascii-digits": (["simulate", "--memory", "1GiB",
                                           "--force-complete-at", "١٠"], None),
    "simulate-memory-oversized": (["simulate", "--memory", "1" * 4000], None),
    "simulate-memory-zero": (["simulate", "--memory", "0"], None),
    "simulate-bandwidth-zero": (["simulate", "--memory", "1GiB", "--bandwidth", "0"], None),
    "simulate-plot-unwritable": (["simulate", "--memory", "1GiB", "--plot",
                                  "/nonexistent/dir/plot.png"], None),
    "migrate-connect-not-utf8": (["migrate", "--connect", b"\xff", "vm", "h"], None),
    "migrate-domain-not-utf8": (["migrate", "--connect", TEST_DRIVER, NOT_UTF8, "h"], None),
    "migrate-without-libvirt-python": (["migrate", "--connect", "qemu:///system", "vm", "h"],
                                       {"hide_libvirt": True}),
}
# The same kind of input, in this process (cheaper; exit status and message only).
IN_PROCESS_CASES = {
    "plan-dest-4000": ["plan", "--config-file", SAMPLE, "--dest", "x" * 4000],
    "plan-inbound-oversized": ["plan", "--config-file", SAMPLE, "--dest", "h",
                               "--inbound-addr", LONG],
    "plan-inbound-zero-width": ["plan", "--config-file", SAMPLE, "--dest", "h",
                                "--inbound-addr", "10.0.0.1\u200b"],
    "plan-config-non-ascii": ["plan", "--config-file", "/nonexistent/é.conf", "--dest", "h"],
    "plan-config-oversized": ["plan", "--config-file", "/tmp/" + LONG, "--dest", "h"],
    "plan-connect-non-ascii": ["plan", "--config-file", SAMPLE, "--dest", "h", "--connect",
                               "qemu+tcp://é/system"],
    "plan-connect-oversized": ["plan", "--config-file", SAMPLE, "--dest", "h", "--connect",
                               LONG],
    "plan-disk-oversized": ["plan", "--config-file", SAMPLE, "--dest", "h",
                            "--block-migration", "--disk", LONG],
    "plan-qemu-version-garbage": ["plan", "--config-file", SAMPLE, "--dest", "h",
                                  "--qemu-version", "7.2.0; rm -rf /"],
    "simulate-working-set-non-ascii": ["simulate", "--working-set", "２GiB"],
    "simulate-rate-oversized-text": ["simulate", "--bandwidth", "9" * 63 + "Gbit/s x"],
    "simulate-seconds-inf": ["simulate", "--abort-at", "inf"],
    "simulate-seconds-negative": ["simulate", "--force-complete-at", "-1"],
    "migrate-connect-oversized": ["migrate", "--connect", LONG, "vm", "h"],
    "migrate-domain-oversized": ["migrate", "--connect", TEST_DRIVER, LONG, "h"],
    "migrate-dest-non-ascii": ["migrate", "--connect", TEST_DRIVER, "test", "compute-é"],
    "migrate-dest-oversized": ["migrate", "--connect", TEST_DRIVER, "test", "h" * 300],
    "migrate-disk-without-block": ["migrate", "--connect", TEST_DRIVER, "test", "h",
                                   "--disk", "vda"],
}




def _run_cli(case: str, tmp: Path) -> subprocess.CompletedProcess:
    argv, opts = CLI_CASES[case]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT)}
    if opts and opts.get("hide_libvirt"):
        env["PYTHONPATH"] = _hidden_libvirt(tmp / "hidden")["PYTHONPATH"] + os.pathsep + str(ROOT)
    args = [sys.executable.encode(), b"-m", b"migrator.cli"]
    args += [a if isinstance(a, bytes) else a.encode() for a in argv]
    try:
        return subprocess.run(args, capture_output=True, timeout=60, cwd=str(tmp), env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:  # pragma: no cover - reported as a failure
        return subprocess.CompletedProcess(args, -9, exc.stdout or b"", b"TIMEOUT")


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Every CLI case, run once, four at a time (each is a fresh interpreter)."""
    tmp = tmp_path_factory.mktemp("cli")
    with ThreadPoolExecutor(4) as pool:
        futures = {case: pool.submit(_run_cli, case, tmp) for case in CLI_CASES}
        return {case: fut.result() for case, fut in futures.items()}


CLI_PARAMS = list(CLI_CASES)


@pytest.mark.parametrize("case", CLI_PARAMS)
def test_cli_hostile_argument_is_a_clear_error(cli_runs, case):
    proc = cli_runs[case]
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, (proc.returncode, err[-800:])
    assert "Traceback" not in err, err[-800:]
    assert len(err) < MAX_ERR, len(err)
    last = err.strip().splitlines()[-1]
    assert last.startswith(("migrator: error:", "migrator plan: error:",
                            "migrator simulate: error:", "migrator migrate: error:")), last
    assert proc.stdout == b""


@pytest.mark.parametrize("case", sorted(IN_PROCESS_CASES))
def test_cli_hostile_argument_in_process(capsys, case):
    code, out, err = cli_in_process(capsys, *IN_PROCESS_CASES[case])
    assert_clear_error(code, out, err)
    assert out == ""


def test_simulate_with_a_password_in_the_template_prints_none(tmp_path):
    path = write(tmp_path, f"[libvirt]\nlive_migration_uri = {CRED_TEMPLATE}\n")
    for fmt in ([], ["--json"]):
        proc = subprocess.run([sys.executable, "-m", "migrator.cli", "simulate", "--config-file",
                               path, "--memory", "1GiB", *fmt], capture_output=True, text=True,
                              timeout=60, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        assert proc.returncode == 0, proc.stderr[-800:]
        assert "completed" in proc.stdout
        assert PASSWORD not in proc.stdout + proc.stderr


def test_absurd_sizes_are_refused_by_the_parser():
    parser = cli.build_parser()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["simulate", "--memory", "99999999999999999999999999GiB"])
    assert exc.value.code == 2
