"""``migrator predict``: what migrating a host's guests would do, before draining it.

Every running (or paused) guest of ``--connect`` is measured, all in the same
few seconds, and predicted under the options; the table is sorted by the
predicted time, and the drain's total is given for the configured concurrency
(``max_concurrent_live_migrations``), the migrations that run at once sharing
``--bandwidth``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from migrator import constants, exception, forecast, units
from migrator.cli import common, prediction
from migrator.cli.common import EXIT_OK, UsageError
from migrator.predict import Prediction


def register(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="predict migrating the guests of a host (measures them, migrates nothing)",
        description="Measure how fast each guest of a host writes its memory (libvirt's page "
        "sampling, a few seconds for all of them) and predict, per guest, whether a live "
        "migration under these options completes, how long it takes, the downtime, and "
        "what would make it complete; then the drain's total at the configured concurrency.",
    )
    common.add_config_arg(p)
    p.add_argument("--connect", required=True, type=common.checked_text, metavar="URI",
                   help="the host whose guests to predict (e.g. qemu:///system)")
    p.add_argument("--domain", action="append", type=common.checked_text, metavar="NAME",
                   help="only this guest (repeatable; default: every running or paused one)")
    p.add_argument("--bandwidth", type=common.rate, metavar="RATE",
                   help="the migration network's rate (e.g. 10Gbit/s), shared by the "
                        "migrations that run at once; needed when live_migration_bandwidth "
                        "is 0 (no cap)")
    p.add_argument("--concurrency", type=int, metavar="N",
                   help="migrations at once (default: max_concurrent_live_migrations; 0: all)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _measure_all(doms: list[Any], named: bool) -> tuple[list[forecast.GuestFacts],
                                                        dict[str, str]]:
    """Facts of every guest; a paused one dirties nothing.  Failures: refused when the
    guest was named, else reported beside the table."""
    from migrator import measure

    paused = {d.name() for d in doms if d.state()[0] == constants.VIR_DOMAIN_PAUSED}
    running = [d for d in doms if d.name() not in paused]
    if running:
        sys.stderr.write(f"measuring how fast {len(running)} guest(s) write their memory "
                         f"(~{sum(measure.DEFAULT_WINDOWS)} s)...\n")
    rates: dict[str, Any] = measure.measure_many(running) if running else {}
    rates.update({name: forecast.DirtyRate(0.0, source="paused") for name in paused})
    facts, failed = [], {}
    for dom in doms:
        rate = rates[dom.name()]
        if isinstance(rate, exception.MeasurementFailed):
            failed[dom.name()] = str(rate)
        else:
            facts.append(measure.guest_facts(dom, rate))
    if failed and (named or not facts):
        raise UsageError(list(failed.values()))
    return facts, failed


def run(args: argparse.Namespace) -> int:
    conf = common.load_conf(args)
    prediction.require_link(conf, args)
    if args.concurrency is not None and args.concurrency < 0:
        raise UsageError("--concurrency must be 0 (all at once) or more")
    conn = prediction.connect(args.connect)
    try:
        if args.domain:
            doms = [prediction.lookup(conn, name, args.connect) for name in args.domain]
        else:
            doms = conn.listAllDomains(constants.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        if not doms:
            raise UsageError(f"no running guest on {args.connect}")
        facts, failed = _measure_all(doms, bool(args.domain))
    finally:
        conn.close()
    n = conf.max_concurrent_live_migrations if args.concurrency is None else args.concurrency
    share = min(n or len(facts), len(facts))
    preds = sorted(((f, prediction.predict(conf, f, args, share)) for f in facts),
                   key=lambda fp: (not fp[1].configured.completes,
                                   fp[1].configured.total_seconds))
    plan = forecast.drain([(f.name, p.configured) for f, p in preds], n)
    if args.json:
        json.dump({"uri": args.connect, "share": share,
                   "guests": [prediction.doc(f, p) for f, p in preds],
                   "drain": plan.to_dict(), "not_predicted": failed}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print(args.connect, preds, plan, failed, share, _options_text(conf))
    return EXIT_OK


def _options_text(conf: Any) -> str:
    lv = conf.libvirt
    policy = lv.live_migration_convergence
    text = f"max downtime {lv.live_migration_downtime} ms ({policy}"
    if policy == "steps":
        text += f": {lv.live_migration_downtime_steps} steps, " \
                f"{lv.live_migration_downtime_delay} s/GiB apart"
    timeout = lv.live_migration_completion_timeout
    return text + ")" + (f", completion timeout {timeout} s/GiB "
                         f"({lv.live_migration_timeout_action})" if timeout else "")


def _print(uri: str, preds: list[tuple[forecast.GuestFacts, Prediction]],
           plan: forecast.Drain, failed: dict[str, str], share: int, options: str) -> None:
    out = sys.stdout
    out.write(f"Predictions for {len(preds)} guest(s) on {uri}: pre-copy at "
              f"{units.human_bytes(preds[0][1].link.bandwidth)}/s each ({share} at a "
              f"time); {options}\n")
    out.write(f"  {'GUEST':<20} {'MEMORY':<10} {'DIRTIES':<14} {'STRATEGY':<14} "
              f"{'TOTAL':<10} DOWNTIME\n")
    for facts, pred in preds:
        est = pred.configured
        rate = "paused" if facts.dirty.source == "paused" else \
            units.human_bytes(facts.dirty.bytes_per_second) + "/s"
        total = f"~{units.human_seconds(est.total_seconds)}" if est.completes else "NO"
        downtime = "-" if est.downtime_seconds is None else \
            f"{est.downtime_seconds * 1000:.0f} ms"
        out.write(f"  {facts.name:<20} {units.human_bytes(facts.memory):<10} {rate:<14} "
                  f"{est.strategy:<14} {total:<10} {downtime}\n")
    at = f"{plan.concurrency} at a time" if plan.concurrency else "all at once"
    out.write(f"Drain: {len(plan.order)} of {len(preds)} guest(s) complete in "
              f"~{units.human_seconds(plan.seconds)} ({at}, longest first)\n")
    for facts, pred in preds:
        if not pred.configured.completes or pred.caveat:
            out.write(f"  {facts.name}: {pred.summary()}\n")
            for remedy in pred.remedies:
                out.write(f"    - {remedy.text}\n")
    for name, why in failed.items():
        out.write(f"  not predicted: {name}: {why}\n")
