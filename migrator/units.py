"""Sizes and rates as people write them: 8GiB, 512MiB, 400MiB/s, 10Gbit/s."""

from __future__ import annotations

import re

_SIZE = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_BITS = {"bit": 1, "kbit": 1000, "mbit": 1000**2, "gbit": 1000**3, "tbit": 1000**4}
_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*(/s|ps)?\s*$")


KiB = 1024
MiB = 1024**2
GiB = 1024**3

MAX_SIZE = 1024**5  # 1 PiB: larger is a typo, not a guest
MAX_RATE = 1e12  # 1 TB/s


def _split(text: str, what: str) -> tuple[float, str, bool]:
    m = _RE.match(text) if len(text) < 64 and text.isascii() else None
    if not m:
        raise ValueError(f"{ascii(text[:40])} is not a {what} like 8GiB or 400MiB/s")
    return float(m.group(1)), m.group(2).lower(), bool(m.group(3))


def _bounded(value: float, limit: float, text: str, what: str, zero_ok: bool = False) -> float:
    if not (0 <= value if zero_ok else 0 < value) or value > limit:
        floor = "0 or more" if zero_ok else "above 0"
        raise ValueError(f"{ascii(text[:40])}: a {what} must be {floor} and at most "
                         f"{human_bytes(limit)}{'/s' if what == 'rate' else ''}")
    return value


def parse_size(text: str) -> int:
    """Bytes in ``text`` ('8GiB', '512MiB', '1.5TB', '4096')."""
    value, unit, per_second = _split(text, "size")
    if per_second or unit not in _SIZE:
        raise ValueError(f"{ascii(text[:40])} is not a size; use B, KiB, MiB, GiB, TiB "
                         "(or kB, MB, GB)")
    return int(_bounded(value * _SIZE[unit], MAX_SIZE, text, "size"))


def parse_rate(text: str, zero_ok: bool = False) -> float:
    """Bytes per second in ``text`` ('400MiB/s', '10Gbit/s', '1.2GB/s'); 0 only if ``zero_ok``."""
    value, unit, _ = _split(text, "rate")
    if unit in _BITS:
        return _bounded(value * _BITS[unit] / 8, MAX_RATE, text, "rate", zero_ok)
    if unit in _SIZE:
        return _bounded(value * _SIZE[unit], MAX_RATE, text, "rate", zero_ok)
    raise ValueError(f"{ascii(text[:40])} is not a rate; use e.g. 400MiB/s, 1.2GB/s or 10Gbit/s")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def human_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


# Numbers inside a decision's reason: short, no float noise, no unit (the text says it).


def secs_text(value: float) -> str:
    """Seconds in a reason: '3201', '3200.5', '0.25'."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def mib_text(value: float) -> str:
    """Bytes (or bytes/s) as MiB in a reason: '812', '0.5'."""
    mib = value / MiB
    return f"{mib:.0f}" if mib >= 10 else f"{mib:.2g}"


def gib_text(value: float) -> str:
    """GiB (given in GiB) in a reason: '4.0', '14.25'."""
    text = f"{value:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text
