"""Run one command (libvirtd) as a child of a prompt "subreaper"; exit when it exits.

libvirt daemonizes QEMU, so QEMU's parent is PID 1; when a guest is destroyed or migrated
away, libvirtd polls until the QEMU *process* is gone.  An init that reaps orphans lazily
(this CI's PID 1 reaps about every 2 s; no systemd) turns every destroy and every
migration's source cleanup into a ~2 s wait on a zombie.  As PR_SET_CHILD_SUBREAPER, this
process inherits the daemon's orphans instead and reaps them at once, as systemd would.

Usage: python _reaper.py -- CMD [ARGS...]   (exit status: the command's)
"""

import ctypes
import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36


def main() -> int:
    argv = sys.argv[sys.argv.index("--") + 1 :]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("reaper: prctl(PR_SET_CHILD_SUBREAPER) failed", file=sys.stderr)
    child = os.fork()
    if child == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    # a signal meant for the daemon (e.g. from a shell) is passed on, not fatal to us
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda n, _f: os.kill(child, n))
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 1
        if pid == child:
            # orphans still alive (QEMU outliving a killed daemon) move on to init
            return os.waitstatus_to_exitcode(status) & 0xFF


if __name__ == "__main__":
    sys.exit(main())
