"""What ``simulate`` / ``migrate`` show while a migration runs: the bar on a terminal (driven
through a pseudo-terminal), timestamped lines for a log (cadence on the virtual clock), and
JSON lines parsed back."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from migrator import constants
from migrator.cli import main, view
from migrator.jobstats import JobSample
from migrator.outcome import ActionRecord
from migrator.progress import WHY_PERCENT

ROOT = Path(__file__).resolve().parents[2]
MiB, GiB = 2**20, 2**30
CONVERGES = ["--memory", "16GiB", "--dirty-rate", "1GiB/s", "--bandwidth", "10Gbit/s"]
HOPELESS = ["--memory", "4GiB", "--dirty-rate", "2GiB/s", "--bandwidth", "10Gbit/s",
            "--abort-at", "300"]


def on_a_terminal(*args: str, columns: int = 120) -> tuple[int, str, str]:
    """``migrator simulate`` with stderr on a pseudo-terminal of ``columns``; (status, out, tty)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "migrator", "simulate", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    out = proc.stdout.read().decode()
    proc.wait(timeout=120)
    return proc.returncode, out, b"".join(chunks).decode()


def test_the_bar_rewrites_one_line_with_the_figures_operators_read():
    status, out, tty = on_a_terminal(*CONVERGES, "--progress-interval", "5", columns=150)
    assert status == 0 and out.startswith("Outcome: completed (pre-copy)")
    legend, rest = tty.split("completed.", 1)
    assert " ".join(legend.split()) == f"Progress: {WHY_PERCENT[:-len(' completed')]}"
    redraws = [line for line in rest.split("\r\x1b[K") if line.strip()]
    assert len(redraws) >= 3
    for line in redraws:
        assert len(line.rstrip("\r\n").splitlines()[0]) < 150  # never wraps
    converging = [r for r in redraws if "ETA " in r]
    assert converging, redraws[-3:]
    sample = converging[len(converging) // 2]
    assert re.search(r"^\[[#.]{20}\] +\d+\.\d% +pass \d+ +[\d.]+ \w+ left +ETA ", sample), sample
    assert "sent 1.2 GiB/s, dirtied 1.0 GiB/s" in sample and "downtime ~" in sample
    assert re.search(r"  t \d", sample)
    percents = [float(m) for m in re.findall(r"(\d+\.\d)% ", rest)]
    assert percents == sorted(percents) and percents[-1] < 100  # never down, never 100 early
    assert "at 1.5 s: set_max_downtime 50: downtime step 0/10" in rest  # actions scroll above


def test_a_hopeless_migration_says_why_instead_of_an_eta():
    status, out, tty = on_a_terminal(*HOPELESS, columns=200)
    assert status == 1 and out.startswith("Outcome: cancelled")
    later = tty.split("\r\x1b[K")[-3]
    assert "ETA" not in later
    assert "not converging: dirties >=1.2 GiB/s, link carries 1.2 GiB/s" in later


def test_a_narrow_terminal_keeps_the_verdict_and_drops_the_rest():
    _, _, tty = on_a_terminal(*HOPELESS, columns=60)
    # the bar is the redraw's last line: an action at the same moment may scroll above it
    later = tty.split("\r\x1b[K")[-3].rstrip("\r\n").splitlines()[-1]
    assert later == "not converging: dirties >=1.2 GiB/s, link carries 1.2 GiB/s"


def run_redirected(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["simulate", *args])
    out, err = capsys.readouterr()
    return status, out, err


def _stamps(lines: list[str]) -> list[float]:
    found = []
    for line in lines:
        h, m, s = re.match(r"sim\+(\d\d):(\d\d):(\d\d\.\d) ", line).groups()
        found.append(int(h) * 3600 + int(m) * 60 + float(s))
    return found


def test_log_lines_at_a_steady_interval_of_the_virtual_clock(capsys):
    status, out, err = run_redirected(capsys, *CONVERGES, "--progress-interval", "10")
    lines = err.splitlines()
    running = [line for line in lines if " migration running for " in line]
    times = _stamps(running)
    assert len(times) >= 8
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(10 <= gap <= 10.5 for gap in gaps), gaps  # one poll (0.5 s) of slack at most
    first = running[0]
    assert re.search(r"memory \d+% remaining \(bytes processed=\d+, remaining=\d+, "
                     r"total=17179869184\); pass 1, sent 1.2 GiB/s", first), first
    assert any("converging, ETA" in line for line in running)
    actions = [line for line in lines if " action at " in line]
    assert actions == ["sim+00:00:01.5 action at 1.5 s: set_max_downtime 50: downtime step 0/10:"
                       " 50 ms after 0 s (delay 75 s/GiB x 16.0 GiB)"]
    assert lines[-1].startswith("sim+00:01:38.") and lines[-1].endswith("completed (pre-copy) "
                                                                         "after 1m38s")
    assert out.startswith("Outcome: completed")  # stdout keeps the summary only


def test_a_hopeless_migration_is_not_silent_in_a_log(capsys):
    _, _, err = run_redirected(capsys, *HOPELESS)
    running = [line for line in err.splitlines() if " migration running for " in line]
    assert len(running) >= 10  # every 30 s of its 5 minutes, not one line per 10 %
    assert all(line.endswith("link carries 1.2 GiB/s (QEMU counts a page once per pass, so a "
                             "guest that rewrites everything every pass shows the link's rate)")
               for line in running[3:])


def test_json_lines_stream_every_sample_and_action_and_end_with_the_outcome(capsys):
    status, out, err = run_redirected(capsys, "--memory", "4GiB", "--dirty-rate", "2GiB/s",
                                      "--bandwidth", "10Gbit/s", "--force-complete-at", "20",
                                      "--json-lines", "--progress-interval", "5")
    docs = [json.loads(line) for line in out.splitlines()]
    assert status == 0 and err == ""  # stderr is no terminal: no bar, no log lines
    kinds = [d["event"] for d in docs]
    assert kinds[-1] == "outcome" and kinds.count("outcome") == 1
    outcome = docs[-1]
    assert outcome["outcome"] == "completed" and outcome["mode"] == "paused"
    actions = [{k: v for k, v in d.items() if k != "event"} for d in docs if d["event"] == "action"]
    assert actions == outcome["actions"]
    samples = [d for d in docs if d["event"] == "sample"]
    assert [s["t"] for s in samples] == sorted(s["t"] for s in samples)
    assert samples[-1]["t"] >= 20 and {"memory_remaining", "memory_bps", "dirty_rate_bytes",
                                       "memory_iteration", "percent"} <= set(samples[-1])
    progress = [d for d in docs if d["event"] == "progress"]
    assert len(progress) >= 3 and {"percent", "eta_seconds", "converging", "outlook"} <= set(
        progress[0])


# -- the view with plain data -------------------------------------------------------------------


def _sample(remaining: int, iteration: int = 3, dirty: int = 100 * MiB) -> JobSample:
    return JobSample(type=constants.VIR_DOMAIN_JOB_UNBOUNDED, memory_total=GiB,
                     memory_remaining=remaining, data_total=GiB, data_remaining=remaining,
                     memory_bps=1000 * MiB, memory_dirty_rate=dirty // 4096,
                     memory_iteration=iteration)


def test_an_action_changes_what_the_outlook_assumes():
    seen = []

    class Keep:
        def sample(self, t, sample, percent): pass
        def progress(self, report): seen.append(report)
        def action(self, record, report): pass
        def finish(self, outcome, extra): pass

    shown = view.View([Keep()], interval=0, wall=iter(range(10**6)).__next__)
    shown.sample(1.0, _sample(500 * MiB))
    shown.action(ActionRecord(1.5, "set_max_downtime", 400, "step"))
    shown.sample(2.0, _sample(500 * MiB))
    shown.action(ActionRecord(2.5, "start_post_copy", None, "force"))
    shown.sample(3.0, _sample(500 * MiB, dirty=4000 * MiB))
    assert [r.max_downtime_ms for r in seen] == [None, 400, 400]
    assert seen[0].eta_seconds > seen[1].eta_seconds  # a larger max downtime ends sooner
    assert seen[2].converging is True and seen[2].outlook.startswith("post-copy")


def test_failed_actions_change_nothing_and_are_shown_as_failed():
    stream = io.StringIO()
    shown = view.View([view.LogLines(stream, view.sim_stamp)], interval=10)
    shown.action(ActionRecord(3.0, "set_max_downtime", 400, "step", ok=False, error="boom"))
    assert shown.max_downtime_ms is None
    assert stream.getvalue() == ("sim+00:00:03.0 action at 3.0 s: set_max_downtime 400 "
                                 "FAILED (boom): step\n")


def test_fit_leaves_out_the_least_important_fields_first():
    fields = [(1, "aaaa"), (9, "bbbb"), (5, "cccc"), (8, "dddd")]
    assert view.fit(fields, 100) == "aaaa  bbbb  cccc  dddd"
    assert view.fit(fields, 17) == "bbbb  cccc  dddd"
    assert view.fit(fields, 11) == "bbbb  dddd"
    assert view.fit(fields, 3) == "bb"


@pytest.mark.parametrize(("seconds", "stamp"), [(0, "sim+00:00:00.0"), (61.25, "sim+00:01:01.2"),
                                                (7322.5, "sim+02:02:02.5")])
def test_simulated_time_stamps(seconds, stamp):
    assert view.sim_stamp(seconds) == stamp
