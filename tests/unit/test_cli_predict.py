"""`migrator plan` with a prediction, and `migrator predict` for a host's guests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrator import cli, measure
from migrator.testing import GiB, MiB

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = str(ROOT / "etc" / "migrator.conf.sample")
URI = "qemu+tcp://src/system"
PLAN = ["plan", "--config-file", SAMPLE, "--dest", "h2"]


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def host(fake, monkeypatch):
    """Guests on "src"; measurements wait on the world's virtual clock, not for real."""
    monkeypatch.setattr(measure, "RealClock", lambda: fake.clock)
    fake.world.add_guest("src", "web", memory=4 * GiB, dirty_rate=20 * MiB)
    fake.world.add_guest("src", "db", memory=16 * GiB, working_set=4 * GiB,
                         dirty_rate=900 * MiB)
    fake.world.add_guest("src", "batch", memory=8 * GiB, working_set=6 * GiB,
                         dirty_rate=2 * GiB)
    fake.world.add_guest("src", "idle", memory=2 * GiB, state="paused")
    fake.world.add_guest("src", "off", memory=2 * GiB, state="shutoff")
    return fake


# -- migrator plan -------------------------------------------------------------------------


def test_plan_predicts_from_given_figures(capsys):
    code, out, err = run(capsys, *PLAN, "--memory", "8GiB", "--dirty-rate", "1.4GiB/s",
                         "--working-set", "4GiB", "--bandwidth", "1.1GiB/s")
    assert code == 0 and err == ""
    text = out[out.index("Prediction for the guest"):]
    assert text.startswith("Prediction for the guest: 8.0 GiB, dirties 1.4 GiB/s into a "
                           "working set of ~4.0 GiB (given)\n")
    assert "pre-copy at 1.1 GiB/s, final copy at 1.1 GiB/s; max downtime in 10 steps to " \
           "500 ms at 1h40m (Nova's ramp); completion timeout 1h46m (abort)" in text
    assert "it dirties 1.4 GiB/s, the link carries 1.1 GiB/s" in text
    rows = {line.split()[0]: line for line in text.splitlines()[4:7]}
    assert rows["pre-copy"].split()[1:4] == ["yes", "NO", "-"]
    assert rows["pre-copy"].endswith("<- these options")
    assert rows["post-copy"].split()[1:3] == ["no", "yes"]
    assert "What would make pre-copy complete:\n    - live_migration_permit_post_copy = True: " \
           "post-copy completes in ~" in text
    assert "- live_migration_downtime = 3638: pre-copy completes" in text


def test_plan_prediction_in_json(capsys):
    code, out, _ = run(capsys, *PLAN, "--memory", "8GiB", "--dirty-rate", "200MiB/s",
                       "--bandwidth", "10Gbit/s", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["flags"] == 27  # the plan is still there
    pred = doc["prediction"]
    assert pred["guest"]["memory"] == 8 * GiB and pred["guest"]["dirty_rate"]["source"] == "given"
    assert pred["configured"] == "pre-copy" and pred["remedies"] == []
    assert set(pred["estimates"]) == {"pre-copy", "auto-converge", "post-copy"}
    assert pred["estimates"]["pre-copy"]["completes"] is True
    assert pred["link"]["bandwidth"] == 10e9 / 8 and pred["limits"]["max_downtime"] == 0.5


def test_plan_without_a_guest_predicts_nothing(capsys):
    code, out, _ = run(capsys, *PLAN, "--json")
    assert code == 0 and "prediction" not in json.loads(out)


def test_plan_measures_a_running_guest(host, capsys):
    code, out, err = run(capsys, *PLAN, "--connect", URI, "--domain", "db",
                         "--bandwidth", "10Gbit/s")
    assert code == 0, err
    assert "measuring how fast db writes its memory (~6 s)" in err
    assert "Prediction for db: 16.0 GiB, dirties 900.0 MiB/s (measured: libvirt page " \
           "sampling, 1 s: 900 MiB/s, 1 s: 900 MiB/s, 1 s: 900 MiB/s, 3 s: 900 MiB/s)" in out
    code, out, _ = run(capsys, *PLAN, "--connect", URI, "--domain", "db", "--dirty-rate",
                       "100MiB/s", "--memory", "8GiB", "--bandwidth", "10Gbit/s", "--json")
    guest = json.loads(out)["prediction"]["guest"]
    assert guest["memory"] == 8 * GiB and guest["dirty_rate"]["bytes_per_second"] == 100 * MiB


@pytest.mark.parametrize("extra, message", [
    (["--domain", "web"], "--domain needs --connect URI, the host the guest runs on"),
    (["--memory", "8GiB", "--bandwidth", "1GB/s"],
     "to predict without --domain, give both --memory and --dirty-rate"),
    (["--memory", "8GiB", "--dirty-rate", "1GiB/s"],
     "live_migration_bandwidth is 0 (no cap): give --bandwidth"),
    (["--memory", "1GiB", "--dirty-rate", "1GiB/s", "--working-set", "2GiB", "--bandwidth",
      "1GB/s"], "the working set (2.0 GiB) cannot be larger than the memory (1.0 GiB)"),
    (["--memory", "8GiB", "--dirty-rate", "fast", "--bandwidth", "1GB/s"], "is not a rate"),
])
def test_plan_prediction_bad_input(capsys, extra, message):
    code, out, err = run(capsys, *PLAN, *extra) if "fast" not in extra else (None, "", "")
    if "fast" in extra:
        with pytest.raises(SystemExit) as exit_:
            cli.main([*PLAN, *extra])
        code, (out, err) = exit_.value.code, capsys.readouterr()
    assert code == 2 and out == "" and message in err and "Traceback" not in err


@pytest.mark.parametrize("domain, message", [
    ("nope", "no domain 'nope' on qemu+tcp://src/system"),
    ("off", "off is not running: only a running guest can be measured"),
    ("idle", "idle is paused: a paused guest writes nothing"),
])
def test_plan_refuses_a_guest_it_cannot_measure(host, capsys, domain, message):
    code, out, err = run(capsys, *PLAN, "--connect", URI, "--domain", domain,
                         "--bandwidth", "10Gbit/s")
    assert code == 2 and out == "" and message in err


def test_plan_says_when_libvirt_cannot_measure(host, capsys):
    host.world.add_host("old", libvirt_version=(7, 1, 0))
    host.world.add_guest("old", "vm", memory=GiB)
    code, _, err = run(capsys, *PLAN, "--connect", "qemu+tcp://old/system", "--domain", "vm",
                       "--bandwidth", "10Gbit/s")
    assert code == 2 and "the libvirt of vm cannot measure dirty rates" in err
    assert "give the guest's dirty rate instead" in err


def test_plan_on_libvirts_test_driver_says_it_cannot_measure(capsys):
    pytest.importorskip("libvirt")
    code, _, err = run(capsys, *PLAN, "--connect", "test:///default", "--domain", "test",
                       "--bandwidth", "10Gbit/s")
    assert code == 2 and "the libvirt of test cannot measure dirty rates" in err


# -- migrator predict --------------------------------------------------------------------------


def test_predict_every_guest_of_a_host(host, capsys):
    code, out, err = run(capsys, "predict", "--connect", URI, "--bandwidth", "10Gbit/s",
                         "--concurrency", "2")
    assert code == 0, err
    assert "measuring how fast 3 guest(s) write their memory" in err
    lines = out.splitlines()
    assert lines[0].startswith("Predictions for 4 guest(s) on qemu+tcp://src/system: "
                               "pre-copy at 596.0 MiB/s each (2 at a time); max downtime 500 "
                               "ms (steps: 10 steps, 75 s/GiB apart), completion timeout "
                               "800 s/GiB (abort)")
    rows = [line.split() for line in lines[2:6]]
    assert [r[0] for r in rows] == ["idle", "web", "batch", "db"]  # by predicted time
    assert rows[0][3] == "paused" and rows[2][-2:] == ["NO", "-"]
    assert lines[6] == "Drain: 2 of 4 guest(s) complete in ~8.7 s (2 at a time, longest first)"
    assert any(line.startswith("  batch: it dirties 2.0 GiB/s") for line in lines)
    assert "off" not in out  # shut off: nothing to live-migrate


def test_predict_json_and_a_chosen_guest(host, capsys):
    code, out, _ = run(capsys, "predict", "--connect", URI, "--domain", "web", "--domain",
                       "idle", "--bandwidth", "1GB/s", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["uri"] == URI and doc["share"] == 1
    assert [g["guest"]["name"] for g in doc["guests"]] == ["idle", "web"]
    assert doc["drain"]["order"] == ["web", "idle"] and doc["drain"]["incomplete"] == []
    assert doc["drain"]["seconds"] == pytest.approx(
        sum(g["estimates"][g["configured"]]["total_seconds"] for g in doc["guests"]))
    assert doc["not_predicted"] == {}


@pytest.mark.parametrize("argv, message", [
    (["--domain", "nope"], "no domain 'nope' on qemu+tcp://src/system"),
    (["--domain", "off"], "off is not running"),
    (["--concurrency", "-1"], "--concurrency must be 0 (all at once) or more"),
])
def test_predict_bad_input(host, capsys, argv, message):
    code, out, err = run(capsys, "predict", "--connect", URI, "--bandwidth", "1GB/s", *argv)
    assert code == 2 and out == "" and message in err


def test_predict_a_host_without_guests_or_without_the_api(fake, capsys):
    code, _, err = run(capsys, "predict", "--connect", URI, "--bandwidth", "1GB/s")
    assert code == 2 and "no running guest on qemu+tcp://src/system" in err
    fake.world.add_host("old", libvirt_version=(7, 1, 0))
    fake.world.add_guest("old", "vm", memory=GiB)
    code, _, err = run(capsys, "predict", "--connect", "qemu+tcp://old/system", "--bandwidth",
                       "1GB/s")
    assert code == 2 and "the libvirt of vm cannot measure dirty rates" in err
