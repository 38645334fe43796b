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
window tells ``min(rate x window, working set) / window``.  Short windows give
the rate; a longer one shows whether the writes stay inside a working set, and
when they do not, it measured the rate too (:func:`migrator.forecast.interpret`
reads them).  QEMU samples 512 pages per GiB, so a rate is read from about one
sampled page per 2 MiB written: more seconds, not a larger guest, make it exact.
:func:`guest_facts` adds the guest's memory for a prediction.
"""

from __future__ import annotations

import threading
from typing import Any

from migrator import _libvirt, constants, exception
from migrator.clock import Clock, RealClock
from migrator.forecast import DirtyRate, GuestFacts, Window, interpret
from migrator.units import MiB

# Three 1 s windows (the rate) and one of 3 s (the working set, else the rate too): ~6 s.
DEFAULT_WINDOWS = (1, 1, 1, 3)
# How long after a window's end libvirt may still say "measuring".
RESULT_GRACE_SECONDS = 10.0
POLL_SECONDS = 0.1


def check_measurable(domain: Any) -> None:
    """Refuse, with the reason, a guest that is not running or has a job (a migration)."""
    name = domain.name()
    try:
        state, _reason = domain.state()
        job = _job(domain) if state != constants.VIR_DOMAIN_SHUTOFF else {}
    except Exception as exc:  # libvirtError, real or fake
        raise exception.MeasurementFailed(
            f"cannot read the state of {name}: {_libvirt.error_message(exc)}") from None
    if state == constants.VIR_DOMAIN_PAUSED:
        raise exception.MeasurementFailed(
            f"{name} is paused: a paused guest writes nothing; resume it to measure, or give "
            "its dirty rate (0 for a guest that stays paused)")
    if state != constants.VIR_DOMAIN_RUNNING:
        raise exception.MeasurementFailed(f"{name} is not running: only a running guest can "
                                          "be measured")
    kind = job.get("type", constants.VIR_DOMAIN_JOB_NONE)
    if kind != constants.VIR_DOMAIN_JOB_NONE:
        what = ("is migrating" if job.get("operation") in (
            constants.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT,
            constants.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN)
            else "has a job running")
        raise exception.MeasurementFailed(
            f"{name} {what}: measuring now would wait for the job and contend with a "
            "migration's own dirty tracking; measure before migrating (during a migration "
            "the job stats' memory_dirty_rate is the guest's rate)")


def _job(domain: Any) -> dict[str, Any]:
    """The domain's job stats; a driver without them (libvirt's test driver) has none."""
    try:
        return domain.jobStats()
    except Exception as exc:  # libvirtError, real or fake
        if _libvirt.error_code(exc) == constants.VIR_ERR_NO_SUPPORT:
            return {}
        raise


def _start(domain: Any, seconds: int) -> None:
    try:
        domain.startDirtyRateCalc(seconds, constants.VIR_DOMAIN_DIRTYRATE_MODE_PAGE_SAMPLING)
    except AttributeError:
        raise exception.MeasurementFailed(
            "this libvirt-python has no startDirtyRateCalc: measuring needs libvirt >= 7.2; "
            "give the guest's dirty rate instead") from None
    except Exception as exc:  # libvirtError, real or fake
        raise exception.MeasurementFailed(_failure(domain, exc)) from None


def _result(domain: Any, seconds: int) -> Window | None:
    """The finished calculation's window, or None while libvirt still measures."""
    try:
        stats = domain.connect().domainListGetStats([domain],
                                                    constants.VIR_DOMAIN_STATS_DIRTYRATE)[0][1]
    except Exception as exc:  # libvirtError, real or fake
        raise exception.MeasurementFailed(_failure(domain, exc)) from None
    if (stats.get("dirtyrate.calc_status") == constants.VIR_DOMAIN_DIRTYRATE_MEASURED
            and stats.get("dirtyrate.calc_period") == seconds
            and "dirtyrate.megabytes_per_second" in stats):
        return Window(seconds, stats["dirtyrate.megabytes_per_second"] * MiB)
    return None


def _collect(started: dict[str, Any], seconds: int, clock: Clock,
             failed: dict[str, exception.MeasurementFailed]) -> dict[str, Window]:
    """Read every started calculation back, polling while libvirt still measures."""
    never = threading.Event()
    deadline, done = clock.now() + RESULT_GRACE_SECONDS, {}
    while started:
        for name, dom in list(started.items()):
            try:
                window = _result(dom, seconds)
            except exception.MeasurementFailed as exc:
                failed[name], window = exc, None
            if window is not None:
                done[name] = window
            if window is not None or name in failed:
                del started[name]
        if started and clock.now() >= deadline:
            for name in started:
                failed[name] = exception.MeasurementFailed(
                    f"libvirt did not finish a {seconds} s dirty-rate calculation of {name} "
                    f"within {RESULT_GRACE_SECONDS:.0f} s")
            break
        if started:
            clock.wait(never, POLL_SECONDS)
    return done


def _window(domains: dict[str, Any], seconds: int, clock: Clock,
            failed: dict[str, exception.MeasurementFailed]) -> dict[str, Window]:
    """One page-sampling calculation of ``seconds`` on every domain at once."""
    started = {}
    for name, dom in domains.items():
        try:
            _start(dom, seconds)
            started[name] = dom
        except exception.MeasurementFailed as exc:
            failed[name] = exc
    clock.wait(threading.Event(), seconds)
    return _collect(started, seconds, clock, failed)


def measure_many(domains: list[Any], windows: tuple[int, ...] = DEFAULT_WINDOWS,
                 clock: Clock | None = None,
                 ) -> dict[str, DirtyRate | exception.MeasurementFailed]:
    """Measure several guests in the same windows (the time of one); per guest name, its
    :class:`~migrator.forecast.DirtyRate` or why it could not be measured."""
    if not windows or any(not 1 <= s <= 60 for s in windows):
        raise ValueError(f"measurement windows must be 1-60 s each, not {windows!r}")
    clock = clock or RealClock()
    failed: dict[str, exception.MeasurementFailed] = {}
    todo = {}
    for dom in domains:
        try:
            check_measurable(dom)
            todo[dom.name()] = dom
        except exception.MeasurementFailed as exc:
            failed[dom.name()] = exc
    seen: dict[str, list[Window]] = {name: [] for name in todo}
    for seconds in windows:
        for name, window in _window(todo, seconds, clock, failed).items():
            seen[name].append(window)
        todo = {n: d for n, d in todo.items() if n not in failed}
    out: dict[str, DirtyRate | exception.MeasurementFailed] = dict(failed)
    out.update({n: interpret(tuple(seen[n])) for n in todo})
    return out


def measure(domain: Any, windows: tuple[int, ...] = DEFAULT_WINDOWS,
            clock: Clock | None = None) -> DirtyRate:
    """Measure ``domain`` (a running guest with no job) in page-sampling mode.

    Takes ``sum(windows)`` seconds and a little more; raises
    :class:`~migrator.exception.MeasurementFailed` with the reason (not
    running, migrating, a libvirt without the API).
    """
    result = measure_many([domain], windows, clock)[domain.name()]
    if isinstance(result, exception.MeasurementFailed):
        raise result
    return result


def _failure(domain: Any, exc: BaseException) -> str:
    name, code = domain.name(), _libvirt.error_code(exc)
    if code == constants.VIR_ERR_NO_SUPPORT:
        return (f"the libvirt of {name} cannot measure dirty rates (virDomainStartDirtyRateCalc "
                "needs libvirt >= 7.2 and its QEMU driver); give the guest's dirty rate instead")
    if code == constants.VIR_ERR_OPERATION_INVALID:
        return f"{name} is not running: only a running guest can be measured"
    if code == constants.VIR_ERR_OPERATION_TIMEOUT:
        return f"{name} has a job (a migration?) holding it: measure it when it is idle"
    return f"measuring the dirty rate of {name} failed: {_libvirt.error_message(exc)}"


def guest_facts(domain: Any, dirty: DirtyRate | float | None = None, *,
                memory: float | None = None,
                disk: float = 0.0, windows: tuple[int, ...] = DEFAULT_WINDOWS,
                clock: Clock | None = None) -> GuestFacts:
    """A running guest's facts: its RAM (libvirt's maxMem), QEMU's resident memory, and
    ``dirty`` (bytes/s or a :class:`~migrator.measure.DirtyRate`) or, when not given, a
    measurement (:func:`migrator.measure.measure`)."""
    name = domain.name()
    try:
        ram = float(domain.info()[1]) * 1024
    except Exception as exc:  # libvirtError, real or fake
        raise exception.MeasurementFailed(f"cannot read the memory of {name}: {exc}") from None
    if dirty is None:
        dirty = measure(domain, windows, clock)
    elif not isinstance(dirty, DirtyRate):
        dirty = DirtyRate(float(dirty))
    return GuestFacts(name, memory or ram, dirty, disk, _resident(domain))


def _resident(domain: Any) -> float | None:
    try:
        rss = domain.memoryStats().get("rss")
    except Exception:  # noqa: BLE001 - informational: libvirt may not report it
        return None
    return float(rss) * 1024 if rss else None
