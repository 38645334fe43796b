"""libvirt's dirty-rate calculation on a simulated guest (``virDomainStartDirtyRateCalc``).

What libvirt 9.0 and QEMU 7.2 did on the rig (real-libvirt facts, peers-and-libvirt §9):

* ``startDirtyRateCalc(seconds, flags)`` takes 1-60 s (else "unsupported
  configuration: seconds=0 is invalid, please choose value within [1, 60].");
  page-sampling (flags 0) and dirty-bitmap work, dirty-ring needs KVM's dirty
  ring ("Operation not supported"); a shut-off domain is "not running"; while
  the domain migrates the call waits 30 s for the state change lock and then
  fails (the fake fails at once, with the same error);
* ``VIR_DOMAIN_STATS_DIRTYRATE`` reports ``dirtyrate.calc_status`` (1
  measuring, 2 measured), ``calc_start_time`` (s), ``calc_period`` (s),
  ``calc_mode`` and, once measured, ``megabytes_per_second`` (MiB/s, an
  integer): the distinct pages written in the window per second, so a small
  region rewritten fast reads as about its size per window;
* a paused guest measures 0.

Here the guest writes its ``dirty_rate`` into its ``working_set``: the window
sees ``min(working set, bytes written)`` (a guest paused when the calculation
started writes nothing).  libvirt < 7.2 has no such call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from migrator import constants
from migrator.testing import errors as E
from migrator.testing.physics import rate_at
from migrator.units import MiB

if TYPE_CHECKING:
    from migrator.testing.world import DomainRecord, Host

MIN_SECONDS, MAX_SECONDS = 1, 60
API_SINCE = (7, 2, 0)
_MODES = {
    constants.VIR_DOMAIN_DIRTYRATE_MODE_PAGE_SAMPLING: "page-sampling",
    constants.VIR_DOMAIN_DIRTYRATE_MODE_DIRTY_BITMAP: "dirty-bitmap",
    constants.VIR_DOMAIN_DIRTYRATE_MODE_DIRTY_RING: "dirty-ring",
}
# Samples of a callable dirty rate over one window.
_STEPS = 100


@dataclass(frozen=True)
class DirtyRateCalc:
    """One calculation: when it started, for how long, how, and whether the guest ran."""

    start: float
    seconds: int
    mode: str
    running: bool

    def stats(self, rec: DomainRecord, now: float) -> dict[str, Any]:
        done = now >= self.start + self.seconds
        out: dict[str, Any] = {
            "dirtyrate.calc_status": constants.VIR_DOMAIN_DIRTYRATE_MEASURED if done
            else constants.VIR_DOMAIN_DIRTYRATE_MEASURING,
            "dirtyrate.calc_start_time": int(self.start),
            "dirtyrate.calc_period": self.seconds,
            "dirtyrate.calc_mode": self.mode,
        }
        if done:
            written = _written(rec, self.start, self.seconds) if self.running else 0.0
            distinct = min(written, rec.guest.working_set)
            out["dirtyrate.megabytes_per_second"] = int(distinct / self.seconds / MiB)
        return out


def _written(rec: DomainRecord, start: float, seconds: float) -> float:
    """Bytes the guest writes in [start, start + seconds] (a callable rate is sampled)."""
    rate = rec.guest.dirty_rate
    if not callable(rate):
        return float(rate) * seconds
    step = seconds / _STEPS
    return sum(rate_at(rate, start + (i + 0.5) * step) for i in range(_STEPS)) * step


def start(host: Host, rec: DomainRecord, seconds: int, flags: int, now: float) -> None:
    """``virDomainStartDirtyRateCalc`` on ``rec``, refused the way libvirt refuses it."""
    if host.libvirt_version < API_SINCE:
        raise E.spec(constants.VIR_ERR_NO_SUPPORT, constants.VIR_FROM_NONE,
                     "virDomainStartDirtyRateCalc").exc()
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise E.spec(constants.VIR_ERR_CONFIG_UNSUPPORTED, constants.VIR_FROM_QEMU,
                     f"seconds={seconds} is invalid, please choose value within "
                     f"[{MIN_SECONDS}, {MAX_SECONDS}].").exc()
    if flags not in _MODES:
        raise E.spec(constants.VIR_ERR_INVALID_ARG, constants.VIR_FROM_DOMAIN,
                     f"unsupported flags (0x{flags:x}) in function "
                     "qemuDomainStartDirtyRateCalc").exc()
    if flags == constants.VIR_DOMAIN_DIRTYRATE_MODE_DIRTY_RING:
        raise E.spec(constants.VIR_ERR_OPERATION_UNSUPPORTED, constants.VIR_FROM_QEMU,
                     "dirty-ring calculation mode requires dirty-ring feature enabled.").exc()
    if not rec.active:
        raise E.domain_not_running().exc()
    if rec.outgoing is not None or rec.incoming is not None:
        raise E.state_lock_timeout().exc()  # real libvirt: after waiting 30 s
    rec.dirty_calc = DirtyRateCalc(now, seconds, _MODES[flags],
                                   running=rec.state == constants.VIR_DOMAIN_RUNNING)


def domain_stats(host: Host, rec: DomainRecord, stats: int, flags: int,
                 now: float) -> dict[str, Any]:
    """One domain's entry of ``domainListGetStats`` for the groups the fake knows."""
    known = constants.VIR_DOMAIN_STATS_STATE | (
        constants.VIR_DOMAIN_STATS_DIRTYRATE if host.libvirt_version >= API_SINCE else 0)
    wanted = stats or known
    if flags & constants.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ENFORCE_STATS and wanted & ~known:
        raise E.spec(constants.VIR_ERR_ARGUMENT_UNSUPPORTED, constants.VIR_FROM_NONE,
                     f"Stats types bits 0x{wanted & ~known:x} are not supported by this "
                     "daemon").exc()
    out: dict[str, Any] = {}
    if wanted & constants.VIR_DOMAIN_STATS_STATE:
        out.update({"state.state": rec.state, "state.reason": rec.reason})
    if wanted & known & constants.VIR_DOMAIN_STATS_DIRTYRATE and rec.active:
        calc = rec.dirty_calc
        out.update(calc.stats(rec, now) if calc is not None else {
            "dirtyrate.calc_status": constants.VIR_DOMAIN_DIRTYRATE_UNSTARTED,
            "dirtyrate.calc_start_time": 0, "dirtyrate.calc_period": 0})
    return out
