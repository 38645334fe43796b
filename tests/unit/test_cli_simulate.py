"""`migrator simulate`: a whole migration through the real driver on the simulated hypervisor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrator import cli

SAMPLE = str(Path(__file__).resolve().parents[2] / "etc" / "migrator.conf.sample")


def simulate(capsys, *args: str) -> tuple[int, str, str]:
    status = cli.main(["simulate", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_quick_start_command_converges_and_explains_itself(capsys):
    status, out, err = simulate(capsys, "--config-file", SAMPLE, "--memory", "8GiB",
                                "--working-set", "2GiB", "--dirty-rate", "400MiB/s",
                                "--bandwidth", "10Gbit/s")
    assert status == 0
    first = out.splitlines()[0]
    assert first.startswith("Outcome: completed (pre-copy) after ") and "(simulated)" in first
    assert "Actions:" in out and "set_max_downtime 50: downtime step 0/10" in out
    assert err.splitlines()[-1].endswith(" migration completed (pre-copy) after 11.0 s")


def test_json_object(capsys):
    status, out, _ = simulate(capsys, "--memory", "4GiB", "--dirty-rate", "200MiB/s",
                              "--bandwidth", "10Gbit/s", "--json")
    doc = json.loads(out)
    assert status == 0
    assert doc["outcome"] == "completed" and doc["mode"] == "pre-copy"
    assert doc["total_seconds"] > 4 * 2**30 / (10e9 / 8)  # never faster than the link
    assert 0 < doc["downtime_ms"] <= 500 and doc["passes"] >= 1
    assert {"at", "action", "value", "reason", "ok", "error"} <= set(doc["actions"][0])


def test_abort_at_leaves_the_guest_on_the_source(capsys):
    status, out, _ = simulate(capsys, "--memory", "4GiB", "--dirty-rate", "2GiB/s",
                              "--bandwidth", "10Gbit/s", "--abort-at", "30", "--json")
    doc = json.loads(out)
    assert status == 1
    assert doc["outcome"] == "cancelled" and doc["mode"] is None
    assert [a["action"] for a in doc["actions"]][-1] == "abort"
    assert "canceled by client" in doc["error"]


@pytest.mark.parametrize(("post_copy", "mode"), [(False, "paused"), (True, "post-copy")])
def test_force_complete_at(capsys, tmp_path, post_copy, mode):
    conf = tmp_path / "m.conf"
    conf.write_text(f"[libvirt]\nlive_migration_permit_post_copy = {post_copy}\n")
    status, out, _ = simulate(capsys, "--config-file", str(conf), "--memory", "4GiB",
                              "--dirty-rate", "2GiB/s", "--bandwidth", "10Gbit/s",
                              "--force-complete-at", "20", "--json")
    doc = json.loads(out)
    assert status == 0 and doc["outcome"] == "completed" and doc["mode"] == mode
    forced = [a for a in doc["actions"] if a["action"] in ("suspend", "start_post_copy")]
    assert len(forced) == 1 and forced[0]["at"] >= 20


def test_idle_guest_and_one_pass(capsys):
    status, out, _ = simulate(capsys, "--memory", "2GiB", "--dirty-rate", "0")
    assert status == 0
    assert "Outcome: completed (pre-copy)" in out and ", 1 pass\n" in out


def test_hopeless_guest_times_out_with_the_reason(capsys, tmp_path):
    conf = tmp_path / "m.conf"
    conf.write_text("[libvirt]\nlive_migration_completion_timeout = 10\n")
    status, out, _ = simulate(capsys, "--config-file", str(conf), "--memory", "1GiB",
                              "--dirty-rate", "2GiB/s", "--bandwidth", "1Gbit/s")
    assert status == 1
    assert out.startswith("Outcome: timed_out")
    assert "abort: " in out and "completion timeout 20 s = 10 s/GiB x 2.0 GiB" in out


def test_adaptive_stalls_early_and_says_what_would_help(capsys, tmp_path):
    conf = tmp_path / "m.conf"
    conf.write_text("[libvirt]\nlive_migration_convergence = adaptive\n")
    status, out, _ = simulate(capsys, "--config-file", str(conf), "--memory", "4GiB",
                              "--dirty-rate", "2GiB/s", "--bandwidth", "10Gbit/s", "--json")
    doc = json.loads(out)
    assert status == 1 and doc["outcome"] == "stalled"
    assert doc["total_seconds"] < 800 * 4  # far sooner than Nova's completion timeout
    assert "needs >=" in doc["actions"][-1]["reason"]
    # asked to dirty 2 GiB/s, QEMU's measure shows the link's rate: the reason says why
    assert "dirty rate 1192 MiB/s vs link 1192 MiB/s (QEMU counts a page once per pass" in (
        doc["actions"][-1]["reason"])


def test_plot_is_written(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "run.png"
    status, _, _ = simulate(capsys, "--memory", "2GiB", "--dirty-rate", "400MiB/s",
                            "--plot", str(png))
    assert status == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_working_set_larger_than_memory_is_refused(capsys):
    status, out, err = simulate(capsys, "--memory", "4GiB", "--working-set", "8GiB")
    assert status == 2 and out == ""
    assert err == ("migrator: error: --working-set 8.0 GiB is larger than --memory 4.0 GiB: "
                   "a guest rewrites only memory it has\n")


def test_an_ambiguous_rate_is_refused_with_the_spelling_meant(capsys):
    with pytest.raises(SystemExit) as exc:
        simulate(capsys, "--bandwidth", "10G")
    assert exc.value.code == 2
    assert "write 10Gbit/s for bits per second" in capsys.readouterr().err
