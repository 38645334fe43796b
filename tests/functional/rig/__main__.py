"""Command line for the rig (run from the repository root, as root).

  python -m tests.functional.rig up [--mode netns]   # start, print the env, run until ^C/TERM
  python -m tests.functional.rig clean               # stop what a killed rig left behind
  python -m tests.functional.rig build-guest DIR     # just compile dirtyguest.elf into DIR
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shlex
import signal
import sys
from pathlib import Path

from tests.functional.rig import DEFAULT_BASE, Rig, RigError, build_guest, clean_stale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.functional.rig")
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start both daemons and wait (stop with ^C or SIGTERM)")
    up.add_argument("--mode", choices=("loopback", "netns"), default="loopback")
    up.add_argument("--base", help=f"base dir (default {DEFAULT_BASE}[-netns])")
    up.add_argument("--keep", action="store_true", help="keep the base dir (logs) on exit")
    cl = sub.add_parser("clean", help="kill and remove what a killed rig left behind")
    cl.add_argument("--base", action="append",
                    help=f"base dir(s) (default {DEFAULT_BASE}, {DEFAULT_BASE}-netns and -tls)")
    bg = sub.add_parser("build-guest", help="compile the test guest")
    bg.add_argument("dir", type=Path)
    args = ap.parse_args(argv)

    if args.cmd == "build-guest":
        print(build_guest(args.dir))
        return 0

    if args.cmd == "clean":
        for base in args.base or [DEFAULT_BASE, DEFAULT_BASE + "-netns", DEFAULT_BASE + "-tls"]:
            lock = Path(base) / ".lock"
            if not lock.exists():
                continue
            fd = os.open(lock, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"{base}: a rig is running there; stop it instead", file=sys.stderr)
                continue
            print(f"{base}: {clean_stale(base) or 'nothing to clean'}")
            os.close(fd)
        return 0

    rig = Rig(mode=args.mode, base=args.base, keep=args.keep or None)
    try:
        rig.start()
    except RigError as e:
        print(f"rig: {e}", file=sys.stderr)
        return 1
    print(f"# rig up in {rig.timings['start']:.1f}s; ^C or kill -TERM {os.getpid()} stops it")
    for k, v in rig.env().items():
        print(f"export {k}={shlex.quote(v)}")
    sys.stdout.flush()
    signal.signal(signal.SIGINT, lambda *_: None)  # just wake up from pause()
    try:
        signal.pause()  # SIGTERM/SIGHUP: the rig's own handler stops it and exits
    finally:
        rig.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
