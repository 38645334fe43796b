"""The command logs like an OpenStack service: oslo.log's options, --version, each error once."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

import migrator
from migrator.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = str(ROOT / "etc" / "migrator.conf.sample")
SIM = ["simulate", "--memory", "2GiB", "--dirty-rate", "100MiB/s"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"migrator {migrator.__version__}\n"


def test_log_file_gets_the_records_stderr_keeps_the_progress(capsys, tmp_path):
    log = tmp_path / "migrator.log"
    code, out, err = run(capsys, *SIM, "--log-file", str(log))
    text = log.read_text()
    assert code == 0 and out.startswith("Outcome: completed")
    assert " INFO migrator.driver [-] [guest -> dest-host] starting: flags 27 " in text
    assert " INFO migrator.monitor [-] [guest -> dest-host] set_max_downtime 50: " in text
    assert " DEBUG " not in text
    assert " INFO " not in err and "migration completed (pre-copy)" in err


def test_log_dir_names_the_file_after_the_command(capsys, tmp_path):
    code, _, _ = run(capsys, *SIM, "--log-dir", str(tmp_path))
    assert code == 0 and "set_max_downtime 50" in (tmp_path / "migrator.log").read_text()


def test_debug_on_stderr(capsys):
    code, _, err = run(capsys, *SIM, "--debug")
    assert code == 0
    assert " DEBUG migrator.monitor [-] [guest -> dest-host] progress " in err


def test_debug_from_the_config_file(capsys, tmp_path):
    conf = tmp_path / "m.conf"
    conf.write_text("[DEFAULT]\ndebug = true\n")
    _, _, err = run(capsys, *SIM, "--config-file", str(conf))
    assert " DEBUG migrator.monitor " in err


def test_console_shows_warnings_not_the_records_the_progress_already_shows(capsys, tmp_path):
    conf = tmp_path / "m.conf"
    conf.write_text("[libvirt]\nlive_migration_flag = VIR_MIGRATE_LIVE,VIR_MIGRATE_TUNNELLED\n")
    code, _, err = run(capsys, *SIM, "--config-file", str(conf))
    assert code == 0
    records = [line for line in err.splitlines() if line[:4].isdigit()]
    assert len(records) == 1 and " WARNING migrator.driver " in records[0]
    assert "live_migration_flag is deprecated" in records[0]  # said once, by migrator
    assert " INFO " not in err


def test_log_config_append(capsys, tmp_path):
    log = tmp_path / "custom.log"
    ini = tmp_path / "logging.conf"
    ini.write_text(f"""[loggers]
keys=root
[handlers]
keys=file
[formatters]
keys=plain
[logger_root]
level=INFO
handlers=file
[handler_file]
class=FileHandler
formatter=plain
args=({str(log)!r},)
[formatter_plain]
format=CUSTOM %(name)s %(message)s
""")
    code, _, _ = run(capsys, *SIM, "--log-config-append", str(ini))
    assert code == 0
    assert "CUSTOM migrator.monitor [guest -> dest-host] set_max_downtime 50" in log.read_text()


@pytest.mark.parametrize("option", ["--log-file", "--log-config-append"])
def test_logging_that_cannot_be_set_up_is_a_clear_error(capsys, tmp_path, option):
    target = tmp_path / "no" / "such" / "dir" / "x"
    code, out, err = run(capsys, *SIM, option, str(target))
    assert code == 2 and out == ""
    assert err.startswith("migrator: error: cannot set up logging") and "Traceback" not in err


def test_the_caller_gets_its_logging_back(capsys, tmp_path):
    root = logging.getLogger()
    before = (list(root.handlers), root.level, logging.getLogger("migrator").level,
              sys.excepthook)
    run(capsys, *SIM, "--debug", "--log-file", str(tmp_path / "x.log"))
    after = (list(root.handlers), root.level, logging.getLogger("migrator").level,
             sys.excepthook)
    assert after == before


def test_a_libvirt_error_is_printed_once():
    pytest.importorskip("libvirt")
    proc = subprocess.run([sys.executable, "-m", "migrator", "plan", "--config-file", SAMPLE,
                           "--dest", "h", "--connect", "qemu+tcp://127.0.0.1:1/system"],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("Connection refused") == 1, proc.stderr
    assert proc.stderr.startswith("migrator: error: cannot read versions from ")
