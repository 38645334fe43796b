"""Measure how fast a running guest dirties its memory, before it migrates.

libvirt's dirty-rate calculation (``virDomainStartDirtyRateCalc``, libvirt
>= 7.2) in page-sampling mode: QEMU hashes a sample of pages, waits, and
counts the ones that changed.  It costs the guest nothing.  The other modes
are never used: dirty-bitmap mode killed a TCG guest's QEMU on the rig, and
dirty-ring mode needs KVM's dirty ring.  A guest that has a job (a migration
above all) is refused: libvirt waits 30 s for the job's lock, and a
calculation would contend with the migration's own dirty tracking; during a
migration the job stats' ``memory_dirty_rate`` is the figure to read.

Page sampling counts the *distinct* pages written in the window, so one
window tells ``min(rate x window, working set) / window``.  Several short
windows (averaged: a small guest has few sampled pages) give the rate; one
longer window shows whether the writes stay inside a working set: if it sees
clearly fewer distinct pages than the rate would write, they do, and its count
is the working set.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from migrator import _libvirt, exception
from migrator import constants as c
from migrator.clock import Clock, RealClock
from migrator.units import human_bytes

MiB = 1024**2
# Three 1 s windows (the rate) and one of 3 s (the working set): ~6 s per guest.
DEFAULT_WINDOWS = (1, 1, 1, 3)
# The long window's distinct pages below this share of rate x window: a working set.
SATURATED = 0.75
# How long after a window's end libvirt may still say "measuring".
RESULT_GRACE_SECONDS = 10.0
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Window:
    seconds: int
    bytes_per_second: float  # distinct pages written in the window, per second


@dataclass(frozen=True)
class DirtyRate:
    """How fast a guest writes its memory, and where (bytes, bytes/s)."""

    bytes_per_second: float
    working_set: float | None = None  # None: not seen (all of memory, for all we know)
    at_least: bool = False  # the short windows were saturated: the rate may be higher
    windows: tuple[Window, ...] = ()
    source: str = "given"  # or "page-sampling"

    def describe(self) -> str:
        text = f"dirties {'at least ' if self.at_least else ''}" \
               f"{human_bytes(self.bytes_per_second)}/s"
        if self.working_set is not None:
            text += f" into a working set of ~{human_bytes(self.working_set)}"
        if self.source == "page-sampling":
            text += " (measured: libvirt page sampling, " + ", ".join(
                f"{w.seconds} s: {w.bytes_per_second / MiB:.0f} MiB/s" for w in self.windows) + ")"
        else:
            text += " (given)"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"bytes_per_second": self.bytes_per_second, "working_set": self.working_set,
                "at_least": self.at_least, "source": self.source,
                "windows": [[w.seconds, w.bytes_per_second] for w in self.windows]}


def interpret(windows: tuple[Window, ...]) -> DirtyRate:
    """The rate (mean of the shortest windows) and the working set (the longest one, if the
    writes saturated it), from page-sampling results."""
    if not windows:
        raise ValueError("no measurement windows")
    short = min(w.seconds for w in windows)
    rates = [w.bytes_per_second for w in windows if w.seconds == short]
    rate = sum(rates) / len(rates)
    longest = max(windows, key=lambda w: w.seconds)
    working_set = None
    if longest.seconds > short:
        distinct = longest.bytes_per_second * longest.seconds
        if distinct < SATURATED * rate * longest.seconds:
            working_set = distinct
    # a short window that saw (about) the whole working set only bounds the rate from below
    at_least = working_set is not None and rate * short >= 0.9 * working_set
    return DirtyRate(rate, working_set, at_least, windows, "page-sampling")


def check_measurable(domain: Any) -> None:
    """Refuse, with the reason, a guest that is not running or has a job (a migration)."""
    name = domain.name()
    try:
        state, _reason = domain.state()
        job = domain.jobStats() if state != c.VIR_DOMAIN_SHUTOFF else {}
    except Exception as exc:  # libvirtError, real or fake
        raise exception.MeasurementFailed(
            f"cannot read the state of {name}: {_libvirt.error_message(exc)}") from None
    if state == c.VIR_DOMAIN_PAUSED:
        raise exception.MeasurementFailed(
            f"{name} is paused: a paused guest writes nothing; resume it to measure, or give "
            "its dirty rate (0 for a guest that stays paused)")
    if state != c.VIR_DOMAIN_RUNNING:
        raise exception.MeasurementFailed(f"{name} is not running: only a running guest can "
                                          "be measured")
    kind = job.get("type", c.VIR_DOMAIN_JOB_NONE)
    if kind != c.VIR_DOMAIN_JOB_NONE:
        what = ("is migrating" if job.get("operation") in (
            c.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT, c.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN)
            else "has a job running")
        raise exception.MeasurementFailed(
            f"{name} {what}: measuring now would wait for the job and contend with a "
            "migration's own dirty tracking; measure before migrating (during a migration "
            "the job stats' memory_dirty_rate is the guest's rate)")


def _window(domain: Any, seconds: int, clock: Clock) -> Window:
    """One page-sampling calculation of ``seconds``, waited for and read back."""
    conn = domain.connect()
    domain.startDirtyRateCalc(seconds, c.VIR_DOMAIN_DIRTYRATE_MODE_PAGE_SAMPLING)
    never = threading.Event()
    clock.wait(never, seconds)
    deadline = clock.now() + RESULT_GRACE_SECONDS
    while True:
        stats = conn.domainListGetStats([domain], c.VIR_DOMAIN_STATS_DIRTYRATE)[0][1]
        if (stats.get("dirtyrate.calc_status") == c.VIR_DOMAIN_DIRTYRATE_MEASURED
                and stats.get("dirtyrate.calc_period") == seconds
                and "dirtyrate.megabytes_per_second" in stats):
            return Window(seconds, stats["dirtyrate.megabytes_per_second"] * MiB)
        if clock.now() >= deadline:
            raise exception.MeasurementFailed(
                f"libvirt did not finish a {seconds} s dirty-rate calculation of "
                f"{domain.name()} within {RESULT_GRACE_SECONDS:.0f} s (last: {stats})")
        clock.wait(never, POLL_SECONDS)


def measure(domain: Any, windows: tuple[int, ...] = DEFAULT_WINDOWS,
            clock: Clock | None = None) -> DirtyRate:
    """Measure ``domain`` (a running guest with no job) in page-sampling mode.

    Takes ``sum(windows)`` seconds and a little more; raises
    :class:`~migrator.exception.MeasurementFailed` with the reason (not
    running, migrating, a libvirt without the API).
    """
    if not windows or any(not 1 <= s <= 60 for s in windows):
        raise ValueError(f"measurement windows must be 1-60 s each, not {windows!r}")
    check_measurable(domain)
    clock = clock or RealClock()
    try:
        return interpret(tuple(_window(domain, s, clock) for s in windows))
    except AttributeError:
        raise exception.MeasurementFailed(
            "this libvirt-python has no startDirtyRateCalc: measuring needs libvirt >= 7.2; "
            "give the guest's dirty rate instead") from None
    except exception.MeasurementFailed:
        raise
    except Exception as exc:  # libvirtError, real or fake
        raise exception.MeasurementFailed(_failure(domain, exc)) from None


def _failure(domain: Any, exc: BaseException) -> str:
    name, code = domain.name(), _libvirt.error_code(exc)
    if code == c.VIR_ERR_NO_SUPPORT:
        return (f"the libvirt daemon of {name} cannot measure dirty rates (it needs libvirt "
                ">= 7.2); give the guest's dirty rate instead")
    if code == c.VIR_ERR_OPERATION_INVALID:
        return f"{name} is not running: only a running guest can be measured"
    if code == c.VIR_ERR_OPERATION_TIMEOUT:
        return f"{name} has a job (a migration?) holding it: measure it when it is idle"
    return f"measuring the dirty rate of {name} failed: {_libvirt.error_message(exc)}"
