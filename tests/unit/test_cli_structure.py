"""The ``migrator.cli`` package: no import cycle, commands independent, no libvirt at import."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "migrator" / "cli"
SAMPLE = str(ROOT / "etc" / "migrator.conf.sample")


def _imports(path: Path) -> set[str]:
    """Modules of migrator.cli that ``path`` imports (at any level, lazily or not)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "migrator.cli":
            found |= {f"migrator.cli.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("migrator.cli."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("migrator.cli.")}
    return found


def _graph() -> dict[str, set[str]]:
    return {f"migrator.cli.{p.stem}": _imports(p) for p in CLI.glob("*.py")}


def test_no_import_cycle_in_the_cli_package():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join([*path, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_commands_import_only_the_shared_modules():
    from migrator.cli import app

    shared = {"migrator.cli.common", "migrator.cli.report", "migrator.cli.view",
              "migrator.cli.prediction"}
    graph = _graph()
    for command in app.COMMANDS:
        assert graph[command.__name__] <= shared, (command.__name__, graph[command.__name__])


def test_importing_the_cli_loads_neither_libvirt_nor_the_driver():
    code = ("import sys, migrator.cli; "
            "print([m for m in ('libvirt', 'migrator.driver', 'migrator.monitor') "
            "if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["migrator", "migrator.cli"])
def test_python_dash_m_runs_the_command(module):
    proc = subprocess.run([sys.executable, "-m", module, "plan", "--config-file", SAMPLE,
                           "--dest", "h", "--json"], capture_output=True, text=True, cwd=ROOT,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["flags"] == 27


def test_the_same_disk_mistake_is_the_same_error_everywhere(capsys):
    from migrator import cli

    errors = []
    for argv in (["plan", "--config-file", SAMPLE, "--dest", "h", "--disk", "vda"],
                 ["migrate", "--connect", "test:///default", "test", "h", "--disk", "vda"]):
        assert cli.main(argv) == 2
        errors.append(capsys.readouterr().err)
    assert errors[0] == errors[1] == (
        "migrator: error: --disk selects disks to copy and needs --block-migration\n")
