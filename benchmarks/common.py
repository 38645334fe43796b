"""Helpers shared by the benchmarks: configuration, statistics, Markdown tables."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import platform
import statistics
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from migrator.testing.config import make_conf as make_conf  # the benchmarks' options

KiB = 1024
MiB = 1024**2
GiB = 1024**3
POLICIES = ("steps", "adaptive")


@contextlib.contextmanager
def migrator_logs_at(level: int) -> Iterator[None]:
    """Only ``level`` and above from migrator's loggers inside the block; restored after.

    Restoring matters when a benchmark runs inside a test session: a level left
    behind would hide the log records later tests look for.
    """
    logger = logging.getLogger("migrator")
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def median(values: Iterable[float | None]) -> float | None:
    """Median of the values that are not None; None when there are none."""
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def percentile(values: Iterable[float | None], pct: float) -> float | None:
    """Nearest-rank percentile (``pct`` in 0..100) of the values that are not None."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    rank = max(1, math.ceil(pct / 100.0 * len(vals)))
    return vals[min(rank, len(vals)) - 1]


def fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    """A number for a table cell; '-' for None."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "inf"
    return f"{value:.{digits}f}{unit}"


@dataclass
class Table:
    """A titled Markdown table with optional notes under it."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([str(c) for c in cells])

    def markdown(self) -> str:
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

        out = [f"### {self.title}", "", line(self.columns),
               "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(r) for r in self.rows]
        if self.notes:
            out.append("")
            out += [f"{n}" for n in self.notes]
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "columns": self.columns, "rows": self.rows,
                "notes": self.notes}


def machine() -> dict[str, Any]:
    """Where and when a benchmark ran (for the README)."""
    info: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    try:
        import os

        info["cpus"] = os.cpu_count()
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    info["cpu"] = ln.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["memory"] = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    return info


@dataclass
class Report:
    """What one benchmark produced: its tables, a verdict text and raw records."""

    name: str
    tables: list[Table] = field(default_factory=list)
    verdict: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def markdown(self) -> str:
        parts = [t.markdown() for t in self.tables]
        if self.verdict:
            parts.append("\n".join(self.verdict))
        return "\n\n".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "meta": self.meta, "machine": machine(),
                "tables": [t.to_dict() for t in self.tables], "verdict": self.verdict,
                "records": self.records}

    def write_json(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1, default=str)
