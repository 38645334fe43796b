"""`migrator plan`: the default plans, --json, errors with exit status 2 and no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrator import cli

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = str(ROOT / "etc" / "migrator.conf.sample")


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_default_plan_from_sample(capsys):
    code, out, err = run(capsys, "plan", "--config-file", SAMPLE, "--dest", "compute-2")
    assert code == 0 and err == ""
    assert "flags:       27 = VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER" in out
    assert "qemu+tcp://compute-2/system" in out
    assert "assumed libvirt and QEMU" in out


def test_json_plan_block(capsys):
    code, out, _ = run(capsys, "plan", "--config-file", SAMPLE, "--dest", "compute-2",
                       "--block-migration", "--disk", "vda", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["flags"] == 155
    assert doc["flag_names"][-1] == "VIR_MIGRATE_NON_SHARED_INC"
    assert doc["migrate_uri"] is None
    assert doc["params"] == {"bandwidth": 0, "migrate_disks": ["vda"]}
    assert {"item", "action", "reason", "options"} <= set(doc["decisions"][0])
    assert isinstance(doc["warnings"], list)
    assert doc["libvirt_version"] == "8.0.0" and doc["qemu_version"] == "6.2.0"


def test_json_keys_with_inbound_and_versions(tmp_path, capsys):
    conf = tmp_path / "c.conf"
    conf.write_text("[libvirt]\nlive_migration_permit_post_copy = true\n"
                    "live_migration_permit_auto_converge = true\n")
    code, out, _ = run(capsys, "plan", "--config-file", str(conf), "--dest", "h2",
                       "--inbound-addr", "fd00::2", "--libvirt-version", "9.0.0",
                       "--qemu-version", "7.2.0", "--json")
    doc = json.loads(out)
    assert code == 0
    assert doc["uri"] == "qemu+tcp://[fd00::2]/system"
    assert doc["migrate_uri"] == "tcp://[fd00::2]"
    assert "VIR_MIGRATE_POSTCOPY" in doc["flag_names"]
    assert any("AUTO_CONVERGE" in w for w in doc["warnings"])
    assert doc["notes"] == []


def test_paused_and_vfio(tmp_path, capsys):
    conf = tmp_path / "c.conf"
    conf.write_text("[libvirt]\nlive_migration_permit_post_copy = true\n")
    for flag in ("--paused", "--vfio"):
        _, out, _ = run(capsys, "plan", "--config-file", str(conf), "--dest", "h", flag, "--json")
        assert "VIR_MIGRATE_POSTCOPY" not in json.loads(out)["flag_names"]


def test_invalid_config_exit_2_one_line_per_problem(tmp_path, capsys):
    conf = tmp_path / "bad.conf"
    conf.write_text("[libvirt]\nlive_migration_downtime = 5\nlive_migration_timeout_action = x\n")
    code, out, err = run(capsys, "plan", "--config-file", str(conf), "--dest", "h")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 2
    assert "live_migration_downtime" in lines[0] and "at least 100" in lines[0]
    assert "Traceback" not in err


def test_contradiction_exit_2(tmp_path, capsys):
    conf = tmp_path / "c.conf"
    conf.write_text("[libvirt]\nlive_migration_tunnelled = true\n"
                    "live_migration_with_native_tls = true\n")
    code, _, err = run(capsys, "plan", "--config-file", str(conf), "--dest", "h")
    assert code == 2
    assert "live_migration_tunnelled" in err and "live_migration_with_native_tls" in err


@pytest.mark.parametrize("text", ["[libvirt\nx=1\n", "no section here\n", "[libvirt]\n=5\n"])
def test_malformed_ini_exit_2(tmp_path, capsys, text):
    conf = tmp_path / "c.conf"
    conf.write_text(text)
    code, _, err = run(capsys, "plan", "--config-file", str(conf), "--dest", "h")
    assert code == 2 and "Traceback" not in err and err.startswith("migrator: error:")


def test_missing_config_exit_2(capsys):
    code, _, err = run(capsys, "plan", "--config-file", "/nonexistent.conf", "--dest", "h")
    assert code == 2 and "nonexistent.conf" in err


@pytest.mark.parametrize("dest", ["h/evil", "a@b", "x" * 300, "héllo", "h\x07"])
def test_bad_dest_exit_2(capsys, dest):
    code, _, err = run(capsys, "plan", "--config-file", SAMPLE, "--dest", dest)
    assert code == 2 and "destination host" in err


def test_bad_version_and_usage_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["plan", "--config-file", SAMPLE, "--dest", "h", "--libvirt-version", "x"])
    assert exc.value.code == 2
    code, _, err = run(capsys, "plan", "--config-file", SAMPLE, "--dest", "h", "--disk", "vda")
    assert code == 2 and "--block-migration" in err


def test_connect_failure_exit_2(capsys):
    pytest.importorskip("libvirt")
    code, _, err = run(capsys, "plan", "--config-file", SAMPLE, "--dest", "h",
                       "--connect", "qemu+tcp://127.0.0.1:1/system")
    assert code == 2 and "cannot read versions" in err



def test_block_migration_without_disks_is_a_warning_at_the_top(capsys):
    code, out, _ = run(capsys, "plan", "--config-file", SAMPLE, "--dest", "h",
                       "--block-migration")
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == "Plan for a block migration to h that copies NO disk"
    first_warning = lines.index("Warnings:") + 1
    assert first_warning < lines.index("migrateToURI3:")
    assert lines[first_warning].startswith("  ! VIR_MIGRATE_NON_SHARED_INC dropped: ")
    assert "nothing is copied, pass the disks to copy" in lines[first_warning]


def test_block_migration_names_the_disks(capsys):
    _, out, _ = run(capsys, "plan", "--config-file", SAMPLE, "--dest", "h",
                    "--block-migration", "--disk", "vda", "--disk", "vdb")
    assert out.splitlines()[0] == "Plan for a block migration to h copying vda, vdb"
    assert "Warnings:" not in out


def test_each_warning_is_printed_once(tmp_path, capsys):
    conf = tmp_path / "c.conf"
    conf.write_text("[libvirt]\nlive_migration_scheme = tls\n"
                    "live_migration_permit_post_copy = true\n"
                    "live_migration_permit_auto_converge = true\n")
    _, out, _ = run(capsys, "plan", "--config-file", str(conf), "--dest", "h")
    _, doc, _ = run(capsys, "plan", "--config-file", str(conf), "--dest", "h", "--json")
    warnings = json.loads(doc)["warnings"]
    assert len(warnings) == 2
    for warning in warnings:
        reason = warning.split(": ", 1)[1]
        assert out.count(reason) == 1, reason
    assert out.count("see the warning above") == 2
