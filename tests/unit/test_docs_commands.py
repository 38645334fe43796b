"""The ``migrator`` commands in the README and the documentation run as written.

Every command that needs nothing outside the repository (``plan`` without
``--connect``, ``simulate``) is run; where a page shows its output after a
``$ migrator ...`` line, the output must be exactly what the command prints.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from migrator.cli import main

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.rst", *sorted((ROOT / "doc" / "source").rglob("*.rst"))]
NEEDS_A_HOST = ("--connect", "--dest-connect", "DOMAIN")


def _commands(path: Path) -> list[tuple[str, list[str], list[str] | None]]:
    """(where, argv, expected stdout lines or None) of each runnable command on a page."""
    lines = path.read_text().splitlines()
    found = []
    i = 0
    while i < len(lines):
        m = re.search(r"(?:^|&& |^\s+)(\$ )?migrator ((?:plan|simulate) .*)$", lines[i])
        i += 1
        if not m:
            continue
        text = m.group(2)
        while text.endswith("\\") and i < len(lines):
            text, i = text[:-1] + " " + lines[i].strip(), i + 1
        argv = shlex.split(text)
        files = [a for a in argv if a.endswith(".conf") or a.endswith(".sample")]
        if any(a in NEEDS_A_HOST for a in argv) or any(not (ROOT / f).exists() for f in files):
            continue
        expected = None
        if m.group(1):  # "$ migrator ...": the output follows, up to the next blank line
            expected = []
            while i < len(lines) and lines[i].strip():
                expected.append(lines[i][4:])
                i += 1
        found.append((f"{path.relative_to(ROOT)}:{i}", argv, expected))
    return found


COMMANDS = [c for page in PAGES for c in _commands(page)]


def test_the_pages_have_commands_to_check():
    where = {c[0].split(":")[0] for c in COMMANDS}
    assert {"README.rst", "doc/source/install.rst", "doc/source/admin/reading-a-plan.rst"} <= where


@pytest.mark.parametrize(("where", "argv", "expected"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_a_documented_command_runs_as_written(where, argv, expected, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = main(argv)
    out, _ = capsys.readouterr()
    assert code == 0, (where, out[-500:])
    if expected is not None:
        assert out.splitlines() == expected, where


def test_the_documented_log_lines_are_what_simulate_prints(capsys, monkeypatch):
    page = (ROOT / "doc" / "source" / "admin" / "commands.rst").read_text()
    shown = [line.strip() for line in page.splitlines() if line.strip().startswith("sim+")]
    assert len(shown) >= 3
    monkeypatch.chdir(ROOT)
    main(["simulate", "--memory", "16GiB", "--dirty-rate", "1GiB/s", "--bandwidth", "10Gbit/s",
          "--progress-interval", "10"])
    _, err = capsys.readouterr()
    assert shown == err.splitlines()[:len(shown)]
