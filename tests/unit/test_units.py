"""Sizes and rates as people write them; what could mean two things is refused with both."""

from __future__ import annotations

import pytest

from migrator.units import human_bytes, human_seconds, parse_rate, parse_size

GiB, MiB = 2**30, 2**20


@pytest.mark.parametrize(("text", "value"), [
    ("8GiB", 8 * GiB), ("8gib", 8 * GiB), ("512MiB", 512 * MiB), ("1.5TB", 1.5e12),
    ("8GB", 8e9), ("8gb", 8e9), ("4096", 4096), ("4096B", 4096), ("8 GiB", 8 * GiB),
])
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize(("text", "meant"), [
    ("8G", "write 8GiB (binary, what libvirt and QEMU mean by G) or 8GB (decimal)"),
    ("512m", "write 512MiB (binary, what libvirt and QEMU mean by M) or 512MB (decimal)"),
    ("1k", "write 1KiB (binary, what libvirt and QEMU mean by K) or 1kB (decimal)"),
    ("2Gi", "write 2GiB"),
])
def test_a_size_with_a_bare_prefix_is_refused_with_both_spellings(text, meant):
    with pytest.raises(ValueError, match="is ambiguous") as exc:
        parse_size(text)
    assert meant in str(exc.value)


@pytest.mark.parametrize(("text", "problem"), [
    ("8GiB/s", "is a rate"), ("8Gbit", "is not a size"), ("0GiB", "above 0"),
    ("2PiB", "is not a size"), ("9" * 20 + "GiB", "at most"), ("８GiB", "is not a size"),
])
def test_bad_sizes(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_size(text)


@pytest.mark.parametrize(("text", "value"), [
    ("10Gbit/s", 1.25e9), ("10Gbps", 1.25e9), ("10Gb/s", 1.25e9), ("10gbit", 1.25e9),
    ("10 Gbit/s", 1.25e9), ("100Mbps", 12.5e6), ("5kbit/s", 625), ("5bit/s", 0.625),
    ("1.2GB/s", 1.2e9), ("10GBps", 10e9), ("5kB/s", 5000), ("5KB/s", 5000), ("5B/s", 5),
    ("400MiB/s", 400 * MiB), ("400mib/s", 400 * MiB), ("2GiB", 2 * GiB),
])
def test_rates_say_bits_or_bytes(text, value):
    assert parse_rate(text) == pytest.approx(value)


@pytest.mark.parametrize(("text", "meant"), [
    ("10G", "write 10Gbit/s for bits per second (a link's speed) or 10GB/s or 10GiB/s"),
    ("10g/s", "write 10Gbit/s"), ("10gb/s", "write 10Gbit/s"), ("400mb", "or 400MB/s"),
    ("1k", "write 1kbit/s for bits per second (a link's speed) or 1kB/s or 1KiB/s"),
    ("1000", "needs a unit: bits per second (e.g. 1000Mbit/s) or bytes per second"),
])
def test_a_rate_that_could_be_bits_or_bytes_is_refused_with_both_spellings(text, meant):
    with pytest.raises(ValueError) as exc:
        parse_rate(text)
    assert meant in str(exc.value)


def test_zero_only_where_it_makes_sense():
    assert parse_rate("0", zero_ok=True) == 0 and parse_rate("0MiB/s", zero_ok=True) == 0
    with pytest.raises(ValueError, match="above 0"):
        parse_rate("0MiB/s")
    with pytest.raises(ValueError, match="needs a unit"):
        parse_rate("0")


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (1023, "1023 B"), (1023.6, "1.0 KiB"), (1023.99 * MiB, "1.0 GiB"),
    (1023.94 * MiB, "1023.9 MiB"), (5 * 2**50, "5.0 PiB"),
])
def test_human_bytes_never_shows_1024_of_a_unit(n, text):
    assert human_bytes(n) == text


@pytest.mark.parametrize(("s", "text"), [(5.25, "5.2 s"), (61, "1m01s"), (7322, "2h02m")])
def test_human_seconds(s, text):
    assert human_seconds(s) == text
