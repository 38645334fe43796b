"""Predictions on the command line (``migrator plan`` and ``migrator predict``).

A guest's facts come from a host (its memory from libvirt, its dirty rate
measured with page sampling) or from the command line (``--memory``,
``--dirty-rate``, ``--working-set``); the link is ``--bandwidth`` or
``live_migration_bandwidth``.  The answer is shown per strategy, with what
would make the migration complete, for a person or as JSON.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from migrator import _libvirt, constants, exception, forecast, units
from migrator.cli import common
from migrator.cli.common import UsageError
from migrator.predict import STRATEGIES, Estimate, Limits, Prediction


def add_guest_args(p: argparse.ArgumentParser) -> None:
    """The figures a prediction can be given instead of (or over) a measurement."""
    p.add_argument("--memory", type=common.size, metavar="SIZE",
                   help="guest memory to send (default with --domain: its RAM)")
    p.add_argument("--dirty-rate", type=common.dirty_rate, metavar="RATE",
                   help="rate the guest writes its memory at (default with --domain: "
                        "measured with libvirt's page sampling, ~6 s)")
    p.add_argument("--working-set", type=common.size, metavar="SIZE",
                   help="memory the guest keeps rewriting (default: all of it, or measured)")
    p.add_argument("--bandwidth", type=common.rate, metavar="RATE",
                   help="the migration network's rate (e.g. 10Gbit/s); needed when "
                        "live_migration_bandwidth is 0 (no cap)")


def connect(uri: str) -> Any:
    """A read-write connection (a dirty-rate calculation is not a read-only call)."""
    try:
        return _libvirt.module().open(uri)
    except exception.MigratorError as exc:
        raise UsageError(str(exc)) from None
    except Exception as exc:  # libvirtError without importing libvirt here
        raise UsageError(f"cannot connect to {uri}: {_libvirt.error_message(exc)}") from None


def lookup(conn: Any, name: str, uri: str) -> Any:
    try:
        return conn.lookupByName(name)
    except Exception as exc:  # libvirtError without importing libvirt here
        if _libvirt.error_code(exc) == constants.VIR_ERR_NO_DOMAIN:
            raise UsageError(f"no domain {name!r} on {uri}") from None
        raise UsageError(f"cannot look up {name!r} on {uri}: "
                         f"{_libvirt.error_message(exc)}") from None


def given_rate(args: argparse.Namespace) -> forecast.DirtyRate | None:
    if args.dirty_rate is None:
        return None
    return forecast.DirtyRate(args.dirty_rate, args.working_set)


def with_overrides(facts: forecast.GuestFacts,
                   args: argparse.Namespace) -> forecast.GuestFacts:
    """``--memory`` / ``--working-set`` over what was read or measured."""
    dirty = facts.dirty
    if args.working_set is not None and dirty.working_set != args.working_set:
        dirty = forecast.DirtyRate(dirty.bytes_per_second, args.working_set, False,
                                   dirty.windows, dirty.source)
    memory = args.memory or facts.memory
    if dirty.working_set is not None and dirty.working_set > memory:
        raise UsageError(f"the working set ({units.human_bytes(dirty.working_set)}) cannot be "
                         f"larger than the memory ({units.human_bytes(memory)})")
    return forecast.GuestFacts(facts.name, memory, dirty, facts.disk, facts.resident)


def predict(conf: Any, facts: forecast.GuestFacts, args: argparse.Namespace,
            share: int = 1) -> Prediction:
    """The model's answer; ``share``: migrations that share ``--bandwidth`` at once."""
    link_rate = args.bandwidth / share if args.bandwidth else None
    return forecast.forecast(conf, facts, link_rate)


# -- output ------------------------------------------------------------------------------------


def _rate(value: float) -> str:
    return units.human_bytes(value) + "/s"


def limits_text(limits: Limits) -> str:
    """The max downtime over time and the completion timeout, as the model used them."""
    ceiling = f"{limits.max_downtime * 1000:.0f} ms"
    if not limits.schedule:
        text = f"max downtime {ceiling}"
    elif len(limits.schedule) <= 2 and limits.post_copy_early:
        text = f"max downtime {ceiling} from the first pass boundary (adaptive)"
    else:
        last = limits.schedule[-1][0]
        text = f"max downtime in {len(limits.schedule) - 1} steps to {ceiling} at " \
               f"{units.human_seconds(last)} (Nova's ramp)"
    if limits.completion_timeout:
        text += f"; completion timeout {units.human_seconds(limits.completion_timeout)} " \
                f"({limits.timeout_action})"
    return text


def _row(est: Estimate, configured: bool) -> str:
    done = est.completes
    total = f"~{units.human_seconds(est.total_seconds)}" if done else "-"
    downtime = "-" if est.downtime_seconds is None else f"{est.downtime_seconds * 1000:.0f} ms"
    post = units.human_seconds(est.postcopy_seconds) if est.postcopy_seconds else "-"
    return (f"    {est.strategy:<14} {'yes' if est.permitted else 'no':<10} "
            f"{'yes' if done else 'NO':<10} {total:<10} {est.passes if done else '-':<7} "
            f"{downtime:<10} {post:<12}{'<- these options' if configured else ''}").rstrip()


def print_prediction(facts: forecast.GuestFacts, pred: Prediction,
                     out: TextIO | None = None) -> None:
    """One guest's prediction for a person (on stdout by default)."""
    out = out or sys.stdout
    link = pred.link
    out.write(f"Prediction for {facts.name}: {units.human_bytes(facts.memory)}, "
              f"{facts.dirty.describe()}\n")
    out.write(f"  pre-copy at {_rate(link.bandwidth)}, final copy at {_rate(link.line)}; "
              f"{limits_text(pred.limits)}\n")
    out.write(f"  {pred.summary()}\n")
    out.write(f"    {'strategy':<14} {'permitted':<10} {'completes':<10} {'total':<10} "
              f"{'passes':<7} {'downtime':<10} in post-copy\n")
    for name in STRATEGIES:
        est = pred.estimates[name]
        out.write(_row(est, est is pred.configured) + "\n")
    if pred.remedies:
        out.write("  What would make pre-copy complete:\n")
        for remedy in pred.remedies:
            out.write(f"    - {remedy.text}\n")


def doc(facts: forecast.GuestFacts, pred: Prediction) -> dict[str, Any]:
    return {"guest": facts.to_dict(), **pred.to_dict()}


def require_link(conf: Any, args: argparse.Namespace) -> None:
    """Refuse early (before measuring) what :func:`forecast.link` would refuse."""
    if not args.bandwidth and not conf.libvirt.live_migration_bandwidth:
        raise UsageError("live_migration_bandwidth is 0 (no cap): give --bandwidth, the "
                         "migration network's rate (e.g. 10Gbit/s), to predict")


def measured(uri: str, name: str, args: argparse.Namespace) -> forecast.GuestFacts:
    """``name`` on ``uri``: its memory, and its dirty rate measured unless given."""
    from migrator import measure

    conn = connect(uri)
    try:
        dom = lookup(conn, name, uri)
        rate = given_rate(args)
        if rate is None:
            seconds = sum(measure.DEFAULT_WINDOWS)
            sys.stderr.write(f"measuring how fast {name} writes its memory (~{seconds} s)...\n")
        return measure.guest_facts(dom, rate)
    finally:
        conn.close()


def for_plan(conf: Any, args: argparse.Namespace) -> tuple[forecast.GuestFacts,
                                                             Prediction] | None:
    """``migrator plan``'s prediction, when a guest was named or described."""
    if args.domain is None and args.memory is None and args.dirty_rate is None:
        return None
    if args.domain is not None and not args.connect:
        raise UsageError("--domain needs --connect URI, the host the guest runs on")
    require_link(conf, args)
    if args.domain is not None:
        facts = measured(args.connect, args.domain, args)
    elif args.memory is None or args.dirty_rate is None:
        raise UsageError("to predict without --domain, give both --memory and --dirty-rate")
    else:
        facts = forecast.GuestFacts("the guest", args.memory, given_rate(args))
    facts = with_overrides(facts, args)
    return facts, predict(conf, facts, args)
