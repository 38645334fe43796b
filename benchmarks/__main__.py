"""``python -m benchmarks {sim,margin,hold,rig,fidelity,overhead,predict} [--quick] [--json FILE]``.

Prints each benchmark's Markdown tables and verdict to stdout (progress goes
to stderr); ``--json`` also writes the tables and every raw record.
"""

from __future__ import annotations

import argparse
import sys
import time

from benchmarks.common import Report, machine

NAMES = ("sim", "margin", "hold", "rig", "fidelity", "overhead", "predict")


def _run(name: str, args: argparse.Namespace) -> Report:
    if name == "sim":
        from benchmarks import sim

        return sim.run(quick=args.quick, jobs=args.jobs)
    if name == "margin":
        from benchmarks import margin

        return margin.run(quick=args.quick, jobs=args.jobs)
    if name == "hold":
        from benchmarks import hold

        return hold.run(quick=args.quick, jobs=args.jobs)
    if name == "rig":
        from benchmarks import realrig

        return realrig.run(quick=args.quick, reps=args.reps)
    if name == "fidelity":
        from benchmarks import fidelity

        return fidelity.run(quick=args.quick, reps=args.reps)
    if name == "predict":
        from benchmarks import predict

        return predict.run(quick=args.quick, reps=args.reps)
    from benchmarks import overhead

    return overhead.run(quick=args.quick)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("benchmark", choices=NAMES + ("all",))
    parser.add_argument("--quick", action="store_true",
                        help="a small version (CI: seconds for sim/overhead, ~2 min on the rig)")
    parser.add_argument("--json", metavar="FILE", help="also write tables and raw records")
    parser.add_argument("--jobs", type=int, default=None,
                        help="sim, margin, hold: worker processes (default: one per CPU)")
    parser.add_argument("--reps", type=int, default=None,
                        help="rig/fidelity: repetitions per workload and policy")
    args = parser.parse_args(argv)
    names = NAMES if args.benchmark == "all" else (args.benchmark,)
    info = machine()
    print(f"<!-- python -m benchmarks {' '.join(sys.argv[1:] if argv is None else argv)} -->")
    print(f"<!-- {info.get('date')}; {info.get('cpus')} x {info.get('cpu', '?')}, "
          f"{info.get('memory', '?')}; {info.get('platform')}; Python {info.get('python')} -->")
    reports = []
    for name in names:
        t0 = time.perf_counter()
        report = _run(name, args)
        report.meta.setdefault("wall_seconds", round(time.perf_counter() - t0, 1))
        reports.append(report)
        print(f"\n## {name}\n")
        print(report.markdown())
        sys.stdout.flush()
    if args.json:
        import json

        doc = ({"machine": info, "reports": [r.to_dict() for r in reports]}
               if len(reports) > 1 else reports[0].to_dict())
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
