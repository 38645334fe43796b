"""Sizes and rates as people write them: 8GiB, 512MiB, 400MiB/s, 10Gbit/s."""

from __future__ import annotations

import re

_PREFIX = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}
_BINARY = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)(/s)?\s*$")

KiB = 1024
MiB = 1024**2
GiB = 1024**3

MAX_SIZE = 1024**5  # 1 PiB: larger is a typo, not a guest
MAX_RATE = 1e12  # 1 TB/s


def _split(text: str, what: str) -> tuple[str, str, bool]:
    """(the number as written, the unit, whether '/s' followed)."""
    m = _RE.match(text) if len(text) < 64 and text.isascii() else None
    if not m:
        raise ValueError(f"{ascii(text[:40])} is not a {what} like 8GiB or 400MiB/s")
    return m.group(1), m.group(2), bool(m.group(3))


def _bounded(value: float, limit: float, text: str, what: str, zero_ok: bool = False) -> float:
    if not (0 <= value if zero_ok else 0 < value) or value > limit:
        floor = "0 or more" if zero_ok else "above 0"
        raise ValueError(f"{ascii(text[:40])}: a {what} must be {floor} and at most "
                         f"{human_bytes(limit)}{'/s' if what == 'rate' else ''}")
    return value


def _decimal(prefix: str) -> str:
    """The SI spelling of an upper-case prefix (kilo is a small k)."""
    return "k" if prefix == "K" else prefix


def _bytes_unit(unit: str) -> float | None:
    """Bytes per unit for B, kB/KB/MB/GB/TB (decimal) and KiB/MiB/GiB/TiB (binary)."""
    low = unit.lower()
    if low in ("", "b"):
        return 1
    if len(low) == 2 and low[1] == "b" and low[0] in _PREFIX:
        return _PREFIX[low[0]]
    if len(low) == 3 and low[1:] == "ib" and low[0] in _BINARY:
        return _BINARY[low[0]]
    return None


def parse_size(text: str) -> int:
    """Bytes in ``text`` ('8GiB', '512MiB', '1.5TB', '4096').

    A bare prefix ('8G') is refused: QEMU and libvirt read it as GiB, most
    people as GB, and the two differ by 7 %.
    """
    number, unit, per_second = _split(text, "size")
    if per_second:
        raise ValueError(f"{ascii(text[:40])} is a rate; a size is bytes, like 8GiB")
    if unit.lower() in ("k", "m", "g", "t", "ki", "mi", "gi", "ti"):
        p = unit[0].upper()
        raise ValueError(f"{ascii(text[:40])} is ambiguous: write {number}{p}iB (binary, what "
                         f"libvirt and QEMU mean by {p}) or {number}{_decimal(p)}B (decimal)")
    scale = _bytes_unit(unit)
    if scale is None:
        raise ValueError(f"{ascii(text[:40])} is not a size; use B, KiB, MiB, GiB, TiB "
                         "(or kB, MB, GB, TB)")
    return int(_bounded(float(number) * scale, MAX_SIZE, text, "size"))


def _rate_unit(unit: str, per_second: bool) -> tuple[float | None, bool]:
    """(bytes/s per unit, ambiguous) for a rate's unit, the /s already taken off.

    Bits: ``bit``/``Gbit`` (any case), ``Gb`` (capital prefix, small b) and
    ``Gbps``; bytes: ``B``, ``GB`` (capital B), ``GiB``, ``GBps``.  ``G``,
    ``gb`` and a bare number could be either.
    """
    if unit.endswith("ps") and not per_second:
        unit = unit[:-2]
    low = unit.lower()
    for word in ("bits", "bit"):
        if low.endswith(word) and low[: -len(word)] in _PREFIX:
            return _PREFIX[low[: -len(word)]] / 8, False
    if unit == "b" or (len(unit) == 2 and unit[1] == "b" and unit[0] in "kKMGT"):
        return _PREFIX[low[:-1]] / 8, False
    if unit == "B" or (len(unit) == 2 and unit[1] == "B" and unit[0] in "kKMGT"):
        return _PREFIX[low[:-1]], False
    if len(unit) == 3 and unit[1:] in ("iB", "ib") and low[0] in _BINARY and (
            unit[1:] == "iB" or unit == low):
        return _BINARY[low[0]], False
    return None, low in ("", "k", "m", "g", "t", "ki", "mi", "gi", "ti", "kb", "mb", "gb", "tb")


def parse_rate(text: str, zero_ok: bool = False) -> float:
    """Bytes per second in ``text`` ('400MiB/s', '10Gbit/s', '10Gbps', '1.2GB/s').

    Bits or bytes must be said: '10G' is refused with both spellings (a
    10 Gbit/s link read as 10 GB/s is eight times too fast).  0 only if
    ``zero_ok``, and then without a unit.
    """
    number, unit, per_second = _split(text, "rate")
    if float(number) == 0 and zero_ok and unit == "":
        return 0.0
    scale, ambiguous = _rate_unit(unit, per_second)
    if ambiguous and unit == "":
        raise ValueError(f"{ascii(text[:40])} needs a unit: bits per second (e.g. "
                         f"{number}Mbit/s) or bytes per second (e.g. {number}MiB/s)")
    if ambiguous:
        p = unit[0].upper()
        raise ValueError(f"{ascii(text[:40])} is ambiguous: write {number}{_decimal(p)}bit/s for "
                         f"bits per second (a link's speed) or {number}{_decimal(p)}B/s or "
                         f"{number}{p}iB/s for bytes per second")
    if scale is None:
        raise ValueError(f"{ascii(text[:40])} is not a rate; use e.g. 400MiB/s, 1.2GB/s, "
                         "10Gbit/s or 10Gbps")
    return _bounded(float(number) * scale, MAX_RATE, text, "rate", zero_ok)


def human_bytes(n: float) -> str:
    """``n`` bytes in the largest binary unit that keeps it below 1024 once rounded."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        shown = f"{n:.0f}" if unit == "B" else f"{n:.1f}"
        if abs(float(shown)) < 1024 or unit == "PiB":
            return f"{shown} {unit}"
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
