"""The layering rules of doc/source/contributor/layout.rst, checked on the code.

The pure core never imports threading, time, libvirt, eventlet or an I/O
module (so every decision can be tested with plain data and simulated in
virtual time), and every module of ``migrator`` is named on the layout page.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "migrator"
LAYOUT = ROOT / "doc" / "source" / "contributor" / "layout.rst"

# Modules (or packages) that may call libvirt, read the clock or start threads.
IO_MODULES = {"_libvirt", "clock", "concurrency", "monitor", "driver", "simulate", "measure",
              "watch",
              "cli", "nova", "testing", "__main__", "control", "facts", "startup", "recovery",
              "monitoring", "handle", "execution"}
FORBIDDEN = {"threading", "time", "libvirt", "eventlet"} | {f"migrator.{m}" for m in IO_MODULES}


def _top_level_modules() -> list[str]:
    names = [p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"]
    names += [p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()]
    return sorted(names)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "migrator":  # from migrator import driver
                found |= {f"migrator.{a.name}" for a in node.names}
    return found


CORE = [m for m in _top_level_modules() if m not in IO_MODULES]


def _files(module: str) -> list[Path]:
    """The module's file, or every file of a package."""
    path = PACKAGE / module
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_io(module):
    imported = set().union(*(_imports(f) for f in _files(module)))
    bad = {name for name in imported
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)}
    assert not bad, (f"migrator/{module}.py is pure core and imports {sorted(bad)}; "
                     "move the I/O to the monitor or the driver, or list the module as I/O "
                     "in tests/unit/test_layout.py and doc/source/contributor/layout.rst")


def test_every_module_is_on_the_layout_page():
    text = LAYOUT.read_text()
    named = set(re.findall(r"``([a-z_]+)``", text)) | set(re.findall(r"([a-z_]+)\.py", text))
    missing = [m for m in _top_level_modules() if m not in named and m != "__main__"]
    assert not missing, f"say in {LAYOUT.relative_to(ROOT)} what these modules are for: {missing}"
