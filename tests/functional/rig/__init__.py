"""Two real libvirt "hosts" on one machine, for functional tests and benchmarks.

Each host is a privileged ``libvirtd --listen`` in its own mount namespace, where per-host
directories are bind-mounted over the paths a privileged libvirtd hard-codes (/etc/libvirt,
/run/libvirt, /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt).  QEMU inherits the
namespace, so its pid files, monitor sockets and logs stay per host too.

* ``mode="loopback"``: both daemons share the network stack and listen on 127.0.0.2 and
  127.0.0.3 (port 16509, plain TCP, no auth).
* ``mode="netns"``: each daemon also gets its own network namespace, joined by a veth pair
  whose addresses exist only inside those namespaces, so a test can cut or shape the link.

* ``tls=True`` (either mode): a test CA and host certificates are made at start (``tls.py``),
  each daemon also listens for TLS (port 16514), and each host's
  ``/etc/pki`` (libvirt's and QEMU's certificates) is bind-mounted in its mount namespace.

Clients in this process always talk to the daemons over their UNIX sockets (that works
across network namespaces, and is what a compute service does with its local daemon); the
daemons reach each other over TCP (``Host.peer_uri``), the QEMU stream goes to ``Host.addr``.

Each libvirtd runs under ``_reaper.py``, a child subreaper that reaps the daemonized QEMU
processes at once: this machine's PID 1 reaps orphans only every ~2 s, and libvirtd waits for
a destroyed (or migrated-away) QEMU to really disappear, which made every destroy and every
migration ~2 s slower than on a host with a proper init.

Everything the rig starts is recorded (PIDs, mount namespaces, network namespaces) in
``<base>/state.json`` and stopped by PID on ``stop()``, at interpreter exit, on SIGTERM/SIGHUP,
and at the next ``start()`` with the same base dir if the process was killed.  The empty
mount-point directories it had to create are removed by the last rig to stop.

Guests are TCG (``<domain type='qemu'>``) running ``guest/dirtyguest.c``, built at start.

libvirt 9.0's client can hang when a second thread calls into a connection that another
thread has blocked in ``migrateToURI3``: give every thread its own connection
(``Rig.connect()``).  The rig's own helpers use private, locked connections.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:  # the rig must be importable (to report *why* it cannot run) without libvirt-python
    import libvirt
except ImportError:  # pragma: no cover - depends on the machine
    libvirt = None  # type: ignore[assignment]

__all__ = ["BASE_FLAGS", "DEFAULT_BASE", "Host", "Migration", "Rig", "RigError", "build_guest",
           "clean_stale"]

DEFAULT_BASE = os.environ.get("MIGRATOR_RIG_BASE", "/tmp/migrator-rig")
GUEST_SRC = Path(__file__).resolve().parent / "guest"
REAPER = Path(__file__).resolve().parent / "_reaper.py"
PORT = 16509
QEMU = "/usr/bin/qemu-system-x86_64"
QEMU_I386 = "/usr/bin/qemu-system-i386"

# per-host directory name -> the path the daemon (and its QEMU) sees it as
BIND_DIRS = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "cache": "/var/cache/libvirt",
    "log": "/var/log/libvirt",
}
HOST_UUIDS = {
    "a": "11111111-1111-4111-8111-1111111111a1",
    "b": "22222222-2222-4222-8222-2222222222b2",
}
# disjoint QEMU migration (and NBD) port ranges: in loopback mode both hosts share one stack
MIGRATION_PORTS = {"a": (49152, 49183), "b": (49184, 49215)}
LOOPBACK_ADDRS = {"a": "127.0.0.2", "b": "127.0.0.3"}
NETNS_ADDRS = {"a": "10.211.77.1", "b": "10.211.77.2"}
# TLS mode: libvirtd's TLS listener, and the /etc/pki tree (per host) it and QEMU read
TLS_PORT = 16514
PKI_MOUNT = "/etc/pki"
TLS_DOMAIN = "rig.test"  # host names <h>.rig.test: reserved TLD, never resolvable
DEFAULT_LOG_FILTERS = "1:qemu.qemu_migration 1:qemu.qemu_migration_params 1:libvirt.domain 3:*"

# VIR_MIGRATE_LIVE | PEER2PEER | PERSIST_DEST | UNDEFINE_SOURCE (1|2|8|16): what a compute
# service uses; literal so the module imports without libvirt-python
BASE_FLAGS = 1 | 2 | 8 | 16
VIR_MIGRATE_TUNNELLED = 4

# (state, reason): RUNNING/POSTCOPY, RUNNING/POSTCOPY_FAILED, PAUSED/POSTCOPY,
# PAUSED/POSTCOPY_FAILED
POSTCOPY_STATES = {(1, 10), (1, 11), (3, 12), (3, 13)}

HEARTBEAT_RE = re.compile(r"^dirtyguest tick=(\d+)(.*)$", re.MULTILINE)
KV_RE = re.compile(r"(\w+)=(\d+)")


class RigError(RuntimeError):
    """The rig could not be started/used; the message says why (shown by the fixture)."""


@dataclass
class Host:
    """One fake hypervisor host (one libvirtd)."""

    name: str  # "a" or "b"
    addr: str  # where the daemon listens and where QEMU's migration stream goes
    root: Path  # per-host directory on the real filesystem
    uuid: str
    migration_ports: tuple[int, int]
    netns: str | None = None
    veth: str | None = None
    pid: int | None = None  # libvirtd
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)  # its reaper

    @property
    def socket(self) -> Path:
        return self.root / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        """Client URI for this process (UNIX socket: works in both modes)."""
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def peer_uri(self) -> str:
        """URI the *other* daemon uses to reach this one (``dconnuri`` of migrateToURI3)."""
        return f"qemu+tcp://{self.addr}:{PORT}/system"

    @property
    def tls_name(self) -> str:
        """The host name its certificates carry next to its address (never resolvable)."""
        return f"{self.name}.{TLS_DOMAIN}"

    @property
    def migrate_uri(self) -> str:
        """``migrate_uri`` parameter for a migration *to* this host."""
        return f"tcp://{self.addr}"

    @property
    def log(self) -> Path:
        """libvirtd's debug log."""
        return self.root / "libvirtd.log"

    def hostpath(self, inside: str | Path) -> Path:
        """Translate a path as the daemon sees it into the path seen from this process."""
        p = str(inside)
        for sub, mnt in BIND_DIRS.items():
            if p == mnt or p.startswith(mnt + "/"):
                return self.root / sub / p[len(mnt) :].lstrip("/")
        return Path(p)

    def serial_path(self, domain: str) -> Path:
        return self.hostpath(serial_inside(domain))

    def disk_path(self, domain: str) -> Path:
        return self.hostpath(disk_inside(domain))


def serial_inside(domain: str) -> str:
    return f"/var/log/libvirt/qemu/{domain}-serial.log"


def disk_inside(domain: str) -> str:
    # per-host view: a disk here exists on one host only, so a migration must copy it
    return f"/var/lib/libvirt/images/{domain}.qcow2"


# --------------------------------------------------------------------------- processes


def _comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def _alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (PID 1 here may not reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _mntns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _ours(pid: int) -> bool:
    """Only ever signal libvirtd or QEMU: a recorded PID may have been reused."""
    comm = _comm(pid) or ""
    return comm == "libvirtd" or comm.startswith("qemu-system")


def _kill_and_wait(pids: set[int], timeout: float = 10.0) -> None:
    pids = {p for p in pids if _alive(p) and _ours(p)}
    for p in pids:
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = {p for p in pids if _alive(p)}
        time.sleep(0.05)
    for p in pids:
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        pids = {p for p in pids if _alive(p)}
        time.sleep(0.05)


def _pids_in_mntns(namespaces: set[str]) -> set[int]:
    """PIDs living in mount namespaces the rig created (libvirtd and the QEMUs it forked)."""
    if not namespaces:
        return set()
    found = set()
    for d in os.listdir("/proc"):
        if d.isdigit() and _mntns(int(d)) in namespaces:
            found.add(int(d))
    return found


def _env() -> dict[str, str]:
    """Our environment with the sbin directories on PATH (libvirtd, ip, tc live there; a
    non-login root shell or a venv may not have them)."""
    path = os.environ.get("PATH", "/usr/bin:/bin").split(":")
    extra = [d for d in ("/usr/local/sbin", "/usr/sbin", "/sbin") if d not in path]
    return dict(os.environ, PATH=":".join(path + extra))


def _run(
    cmd: list[str], *, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
    if check and r.returncode:
        raise RigError(f"{' '.join(cmd)} failed ({r.returncode}): {(r.stderr or r.stdout).strip()}")
    return r


def _check_port_free(addr: str, port: int) -> None:
    """Fail early and clearly when another rig (any base dir) or daemon holds the address."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sk:
        sk.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sk.bind((addr, port))
        except OSError as e:
            raise RigError(f"{addr}:{port} is in use ({e.strerror}): another loopback rig is "
                           "running? (netns mode can run next to it)") from None


def _tail(path: Path, nbytes: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - nbytes))
            return f.read().decode(errors="replace")
    except OSError as e:
        return f"<{path}: {e.strerror}>"


# --------------------------------------------------------------------------- guest kernel


def build_guest(dest: Path) -> Path:
    """Compile guest/dirtyguest.c into ``dest/dirtyguest.elf`` (needs only gcc and ld)."""
    dest.mkdir(parents=True, exist_ok=True)
    obj, elf = dest / "dirtyguest.o", dest / "dirtyguest.elf"
    _run(["gcc", "-m32", "-ffreestanding", "-fno-pic", "-fno-pie", "-fno-stack-protector",
          "-nostdlib", "-O2", "-Wall", "-c", str(GUEST_SRC / "dirtyguest.c"), "-o", str(obj)])
    ld = ["ld", "-m", "elf_i386", "-T", str(GUEST_SRC / "dirtyguest.ld"), "-o", str(elf), str(obj)]
    # binutils >= 2.39 warns about the RWX load segment; older ones reject the option
    if _run(ld[:1] + ["--no-warn-rwx-segments"] + ld[1:], check=False).returncode:
        _run(ld)
    return elf


# --------------------------------------------------------------------------- config files


def _libvirtd_conf(host: Host, log_filters: str, keepalive: tuple[int, int],
                   tls: bool = False) -> str:
    # TLS mode: certificates at libvirt's default paths under /etc/pki (the host's own tree,
    # bind-mounted); clients are verified against the test CA, no SASL on top
    listen_tls = (f'listen_tls = 1\ntls_port = "{TLS_PORT}"\nauth_tls = "none"' if tls
                  else "listen_tls = 0")
    return f"""\
# libvirtd.conf for rig host {host.name}: test-only, plain TCP without auth on a
# loopback/namespace-only address.
{listen_tls}
listen_tcp = 1
listen_addr = "{host.addr}"
tcp_port = "{PORT}"
auth_tcp = "none"
auth_unix_rw = "none"
auth_unix_ro = "none"
unix_sock_group = "root"
unix_sock_rw_perms = "0700"
unix_sock_ro_perms = "0700"
unix_sock_admin_perms = "0700"
# libvirt refuses to migrate to a host with its own UUID; both daemons share one machine
host_uuid = "{host.uuid}"
log_filters = "{log_filters}"
log_outputs = "1:file:{host.log}"
# server side of the daemon-to-daemon connection (clients without an event loop never get
# pinged): lets a destination notice a dead source and drop its half-migrated guest quickly
keepalive_interval = {keepalive[0]}
keepalive_count = {keepalive[1]}
max_clients = 64
"""


def _qemu_conf(host: Host, p2p_keepalive: tuple[int, int]) -> str:
    return f"""\
# qemu.conf for rig host {host.name}. QEMU runs as root, unconfined: test-only.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
# the daemons share one kernel: same-named per-domain cgroups would collide
cgroup_controllers = [ ]
namespaces = [ ]
# a privileged libvirtd does not spawn virtlogd; QEMU writes its log file itself
stdio_handler = "file"
lock_manager = "nop"
# incoming migrations (and NBD for storage migration) listen here only
migration_address = "{host.addr}"
migration_host = "{host.addr}"
migration_port_min = {host.migration_ports[0]}
migration_port_max = {host.migration_ports[1]}
vnc_listen = "{host.addr}"
spice_listen = "{host.addr}"
# source daemon -> destination daemon connection: notice a cut link in seconds, not minutes
keepalive_interval = {p2p_keepalive[0]}
keepalive_count = {p2p_keepalive[1]}
"""


# --------------------------------------------------------------------------- mount points

# The bind mounts need empty directories to mount over in the root namespace (/etc/libvirt
# belongs to libvirt-clients, which is not installed).  Removing such a directory would
# silently detach the bind mounts of *every* rig still running (the kernel lazily unmounts
# mounts on a removed dentry in other namespaces), so the directories the rigs created are
# removed only by the last rig to stop: each running rig holds a shared flock on this file.
MOUNTPOINTS_USERS = Path("/tmp/.migrator-rig-mountpoints.users")  # shared flock per rig
MOUNTPOINTS_MUTEX = Path("/tmp/.migrator-rig-mountpoints.mutex")  # short exclusive sections
MOUNTPOINTS_CREATED = Path("/tmp/.migrator-rig-mountpoints.json")


def _flock_path(path: Path, how: int) -> int:
    """flock a file that the last user unlinks while holding it: retry on a stale inode."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, how)
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _mountpoints_acquire(extra: tuple[str, ...] = ()) -> int:
    users = _flock_path(MOUNTPOINTS_USERS, fcntl.LOCK_SH)
    mutex = _flock_path(MOUNTPOINTS_MUTEX, fcntl.LOCK_EX)
    try:
        try:
            created = json.loads(MOUNTPOINTS_CREATED.read_text())
        except (OSError, ValueError):
            created = []
        for mnt in (*BIND_DIRS.values(), *extra):
            if not os.path.isdir(mnt):
                os.makedirs(mnt)
                created.append(mnt)
        MOUNTPOINTS_CREATED.write_text(json.dumps(created))
    finally:
        os.close(mutex)
    return users


def _mountpoints_release(users: int) -> None:
    mutex = _flock_path(MOUNTPOINTS_MUTEX, fcntl.LOCK_EX)
    try:
        try:  # the last user can upgrade its shared lock
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another rig still runs: leave everything to it
            return
        try:
            created = json.loads(MOUNTPOINTS_CREATED.read_text())
        except (OSError, ValueError):
            created = []
        for d in reversed(created):
            with contextlib.suppress(OSError):  # not empty (someone else's now): keep it
                os.rmdir(d)
        for f in (MOUNTPOINTS_CREATED, MOUNTPOINTS_USERS, MOUNTPOINTS_MUTEX):
            with contextlib.suppress(OSError):
                f.unlink()
    finally:
        os.close(users)
        os.close(mutex)


# --------------------------------------------------------------------------- state / stale


def _load_state(base: Path) -> dict[str, Any]:
    try:
        return json.loads((base / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def clean_stale(base: str | Path = DEFAULT_BASE) -> list[str]:
    """Stop whatever a previous, killed rig with this base dir left behind.

    Must be called with the base dir's lock held (``Rig.start`` does).  Returns a list of
    what was cleaned, for logging.
    """
    base = Path(base)
    st = _load_state(base)
    done: list[str] = []
    pids = set(st.get("pids", []))
    for pf in list(base.glob("*/run/qemu/*.pid")) + list(base.glob("*/libvirtd.pid")):
        with contextlib.suppress(OSError, ValueError):
            pids.add(int(pf.read_text().strip()))
    pids |= _pids_in_mntns(set(st.get("mntns", [])))
    pids = {p for p in pids if _alive(p) and _ours(p)}
    if pids:
        _kill_and_wait(pids)
        done.append(f"killed {sorted(pids)}")
    for ns in st.get("netns", []):
        if _run(["ip", "netns", "del", ns], check=False).returncode == 0:
            done.append(f"netns {ns}")
    with contextlib.suppress(OSError):
        (base / "state.json").unlink()
    return done


# --------------------------------------------------------------------------- migrations


class Migration(threading.Thread):
    """One raw ``migrateToURI3`` call in its own thread, on its own connection (never share a
    connection that is blocked in migrateToURI3: libvirt 9.0's client can hang)."""

    def __init__(self, src: Host, dst: Host, name: str, flags: int,
                 params: dict[str, Any]) -> None:
        super().__init__(name=f"migrate-{name}-{src.name}-{dst.name}", daemon=True)
        self.src, self.dst, self.domain, self.flags, self.params = src, dst, name, flags, params
        self.error: Exception | None = None
        self.seconds: float | None = None
        self.started = threading.Event()  # set once the call is about to be issued

    def run(self) -> None:
        t0 = time.monotonic()
        try:
            conn = libvirt.open(self.src.uri)
            try:
                dom = conn.lookupByName(self.domain)
                self.started.set()
                dom.migrateToURI3(self.dst.peer_uri, self.params, self.flags)
            finally:
                conn.close()
        except Exception as e:  # noqa: BLE001 - handed to the waiting test
            self.error = e
        finally:
            self.seconds = time.monotonic() - t0
            self.started.set()

    def wait(self, timeout: float = 300.0) -> Migration:
        """Join; raise RigError if still running after ``timeout`` (the job is left to the
        caller or to cleanup_guests(), which aborts it)."""
        self.join(timeout)
        if self.is_alive():
            raise RigError(f"migration of {self.domain} still running after {timeout}s")
        return self

    @property
    def ok(self) -> bool:
        return not self.is_alive() and self.seconds is not None and self.error is None


# --------------------------------------------------------------------------- signals/atexit

_LIVE: set[Rig] = set()
_LIVE_LOCK = threading.Lock()
_HANDLERS_INSTALLED = False


def _stop_all() -> None:
    with _LIVE_LOCK:
        rigs = list(_LIVE)
    for r in rigs:
        with contextlib.suppress(Exception):
            r.stop()


def _on_signal(signum: int, frame: Any) -> None:
    _stop_all()
    prev = _PREV_HANDLERS.get(signum, signal.SIG_DFL)
    if callable(prev):
        prev(signum, frame)
    elif prev != signal.SIG_IGN:  # default action: die of the same signal
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


_PREV_HANDLERS: dict[int, Any] = {}


def _install_handlers() -> None:
    """SIGINT is left alone: KeyboardInterrupt unwinds through fixtures/with-blocks and atexit."""
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    atexit.register(_stop_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            _PREV_HANDLERS[sig] = signal.getsignal(sig)
            signal.signal(sig, _on_signal)
    _HANDLERS_INSTALLED = True


# --------------------------------------------------------------------------- the rig


class Rig:
    """Two libvirt daemons ("a" and "b") plus helpers to run and inspect test guests.

    Use as a context manager, or call ``start()`` / ``stop()``.  ``stop()`` is idempotent.
    """

    def __init__(
        self,
        mode: str = "loopback",
        base: str | Path | None = None,
        *,
        tag: str | None = None,
        log_filters: str = DEFAULT_LOG_FILTERS,
        p2p_keepalive: tuple[int, int] = (3, 3),
        keep: bool | None = None,
        caps_cache: str | Path | None = None,
        start_timeout: float = 240.0,
        tls: bool = False,
    ) -> None:
        if mode not in ("loopback", "netns"):
            raise ValueError(f"mode must be 'loopback' or 'netns', not {mode!r}")
        self.mode = mode
        self.base = Path(base or (DEFAULT_BASE + ("-netns" if mode == "netns" else ""))).absolute()
        # names the network namespaces and veths: derived from the base dir by default, so
        # rigs with different base dirs never collide
        tag = tag or "mr" + hashlib.sha1(str(self.base).encode()).hexdigest()[:6]
        if not re.fullmatch(r"[a-z0-9]{1,10}", tag):
            raise ValueError("tag must be 1-10 lowercase letters/digits (interface name limit)")
        self.tag = tag
        self.log_filters = log_filters
        self.p2p_keepalive = p2p_keepalive
        self.keep = keep if keep is not None else os.environ.get("MIGRATOR_RIG_KEEP") == "1"
        self.start_timeout = start_timeout
        # TLS mode: a test CA and host certificates (made at start), libvirtd's TLS listener,
        # and each host's /etc/pki (see tls.py) bind-mounted for libvirtd and its QEMUs
        self.tls = tls
        self.pki: Any = None  # tls.Pki once started
        self.certs: dict[str, Any] = {}  # host -> its tls.Cert
        # QEMU capability cache to seed the daemons from and save to: the first start of a
        # daemon spends ~1.3 s probing QEMU, a valid cache cuts that to ~0.2 s (libvirt itself
        # re-validates it: binary ctime, libvirt version, host CPU, kernel).
        cc = caps_cache or os.environ.get("MIGRATOR_RIG_CAPS_CACHE")
        self.caps_cache = Path(cc) if cc else None
        addrs = NETNS_ADDRS if mode == "netns" else LOOPBACK_ADDRS
        self.hosts: dict[str, Host] = {}
        for h in ("a", "b"):
            self.hosts[h] = Host(
                name=h, addr=addrs[h], root=self.base / h, uuid=HOST_UUIDS[h],
                migration_ports=MIGRATION_PORTS[h],
                netns=f"{tag}-{h}" if mode == "netns" else None,
                veth=f"{tag}-v{h}" if mode == "netns" else None,
            )
        self.kernel = self.base / "guest" / "dirtyguest.elf"
        self.shared_dir = self.base / "shared"  # same path, same files, for both daemons
        self.timings: dict[str, float] = {}
        self._lock = threading.RLock()
        self._lockfd: int | None = None
        self._mpfd: int | None = None
        self._conns: dict[str, Any] = {}
        # re-entrant: stop() may run from a signal handler in a thread that holds one
        self._conn_locks = {h: threading.RLock() for h in self.hosts}
        self._state: dict[str, Any] = {}
        self._running = False

    # ------------------------------------------------------------------ properties
    @property
    def a(self) -> Host:
        return self.hosts["a"]

    @property
    def b(self) -> Host:
        return self.hosts["b"]

    @property
    def running(self) -> bool:
        return self._running

    def host(self, h: str | Host) -> Host:
        return self.hosts[h.name if isinstance(h, Host) else h]

    def other(self, h: str | Host) -> Host:
        return self.b if self.host(h).name == "a" else self.a

    def __enter__(self) -> Rig:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Rig mode={self.mode} base={self.base} running={self._running}>"

    # ------------------------------------------------------------------ start
    def preflight(self) -> None:
        """Raise RigError saying what is missing on this machine (no side effects)."""
        if libvirt is None:
            raise RigError("libvirt-python is not installed (pip install .[libvirt])")
        if os.geteuid() != 0:
            raise RigError("needs root (privileged libvirtd, mount/network namespaces)")
        tools = ["libvirtd", "unshare", "mount", "gcc", "ld", "qemu-img", "qemu-io"]
        if self.mode == "netns":
            tools += ["ip", "tc"]
        if self.tls:
            tools += ["openssl"]
        missing = [t for t in tools if not shutil.which(t, path=_env()["PATH"])]
        if not os.path.exists(QEMU):
            missing.append(QEMU)
        if missing:
            raise RigError(f"missing {', '.join(missing)}: run "
                           "'sudo bash tests/functional/rig/install.sh'")
        try:
            import pwd

            pwd.getpwnam("libvirt-qemu")
        except KeyError:
            raise RigError("user libvirt-qemu missing (libvirtd's QEMU driver will not start): "
                           "run 'sudo bash tests/functional/rig/install.sh'") from None

    def start(self) -> Rig:
        with self._lock:
            if self._running:
                return self
            t0 = time.monotonic()
            self.preflight()
            libvirt.registerErrorHandler(lambda *_: None, None)  # errors are raised anyway
            self.base.mkdir(parents=True, exist_ok=True)
            self._lockfd = os.open(self.base / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._lockfd)
                self._lockfd = None
                raise RigError(f"another rig is running with base dir {self.base}") from None
            with _LIVE_LOCK:
                _LIVE.add(self)
            _install_handlers()
            self._running = True  # from here on, stop() has something to undo
            try:
                self._start(t0)
            except BaseException:
                self.stop()
                raise
            return self

    def _start(self, t0: float) -> None:
        stale = clean_stale(self.base)
        for sub in ("a", "b", "guest", "shared", "pki"):
            if sub in ("a", "b") and (self.base / sub / "cache").is_dir():
                # keep the QEMU capability cache of a kept rig: saves the probe if valid
                for p in (self.base / sub).iterdir():
                    if p.name != "cache":
                        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            else:
                shutil.rmtree(self.base / sub, ignore_errors=True)
        self._state = {"pids": [], "mntns": [], "netns": [], "stale": stale}
        self._save_state()
        build_guest(self.kernel.parent)
        self.shared_dir.mkdir(parents=True, exist_ok=True)
        if self.mode == "loopback":
            for h in self.hosts.values():
                _check_port_free(h.addr, PORT)
        self._mpfd = _mountpoints_acquire((PKI_MOUNT,) if self.tls else ())
        if self.mode == "netns":
            self._make_netns()
        for h in self.hosts.values():
            for sub in BIND_DIRS:
                (h.root / sub).mkdir(parents=True, exist_ok=True)
            (h.root / "log" / "qemu").mkdir(exist_ok=True)
            (h.root / "lib" / "images").mkdir(exist_ok=True)
            conf = _libvirtd_conf(h, self.log_filters, self.p2p_keepalive, self.tls)
            (h.root / "etc" / "libvirtd.conf").write_text(conf)
            (h.root / "etc" / "qemu.conf").write_text(_qemu_conf(h, self.p2p_keepalive))
            if self.caps_cache and self.caps_cache.is_dir():
                dst = h.root / "cache" / "qemu" / "capabilities"
                dst.mkdir(parents=True, exist_ok=True)
                for x in self.caps_cache.glob("*.xml"):
                    shutil.copy2(x, dst / x.name)
        if self.tls:
            self._make_pki()
        self.timings["prepare"] = time.monotonic() - t0
        self._launch_and_wait(list(self.hosts.values()))
        if self.caps_cache:
            self.caps_cache.mkdir(parents=True, exist_ok=True)
            for x in (self.a.root / "cache" / "qemu" / "capabilities").glob("*.xml"):
                shutil.copy2(x, self.caps_cache / x.name)
        self.timings["start"] = time.monotonic() - t0

    def _save_state(self) -> None:
        tmp = self.base / "state.json.tmp"
        tmp.write_text(json.dumps(self._state, indent=1))
        tmp.replace(self.base / "state.json")

    def _make_netns(self) -> None:
        a, b = self.a, self.b
        assert a.netns and b.netns and a.veth and b.veth
        existing = _run(["ip", "netns", "list"]).stdout.split()
        for ns in (a.netns, b.netns):
            if ns in existing:  # left by a run whose state file is gone: only if empty
                if _run(["ip", "netns", "pids", ns], check=False).stdout.strip():
                    raise RigError(f"network namespace {ns} exists and has processes in it")
                _run(["ip", "netns", "del", ns])
            _run(["ip", "netns", "add", ns])
            self._state["netns"].append(ns)
            self._save_state()
        # the veth pair is created in the root namespace, then both ends are moved out; it
        # disappears with the namespaces
        _run(["ip", "link", "del", a.veth], check=False)  # if a crash left it half-made
        _run(["ip", "link", "add", a.veth, "type", "veth", "peer", "name", b.veth])
        for h in (a, b):
            _run(["ip", "link", "set", h.veth, "netns", h.netns])
            _run(["ip", "-n", h.netns, "addr", "add", f"{h.addr}/24", "dev", h.veth])
            _run(["ip", "-n", h.netns, "link", "set", "lo", "up"])
            _run(["ip", "-n", h.netns, "link", "set", h.veth, "up"])

    def _make_pki(self) -> None:
        from tests.functional.rig import tls

        self.pki = tls.Pki(self.base / "pki")
        for h in self.hosts.values():
            self.certs[h.name] = self.pki.issue(h.name, ips=(h.addr,), dns=(h.tls_name,))
            tls.Pki.host_tree(h.root / "pki", self.certs[h.name])

    def set_qemu_server_cert(self, host: str | Host, cert: Any = None) -> None:
        """Make ``host``'s QEMU present ``cert`` (a ``tls.Cert``) as the server of incoming
        native-TLS migrations; None restores the host's own.  QEMU reads the files when a
        migration starts, so this applies to the next migration (no daemon restart)."""
        from tests.functional.rig import tls

        if not self.tls:
            raise RigError("certificates need Rig(tls=True)")
        h = self.host(host)
        tls.Pki.host_tree(h.root / "pki", self.certs[h.name], cert)

    def _launch(self, h: Host) -> None:
        for stale in (h.socket, h.root / "libvirtd.pid"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        binds = [f"mount --bind {h.root / sub} {mnt}" for sub, mnt in BIND_DIRS.items()]
        if self.tls:
            binds.append(f"mount --bind {h.root / 'pki'} {PKI_MOUNT}")
        # x86_64 guests only: hiding the i386 binary (in this namespace only) halves the
        # daemon's first-start QEMU capability probe (one QEMU run per binary and accelerator)
        if os.path.exists(QEMU_I386):
            binds.append(f"mount --bind /dev/null {QEMU_I386}")
        conf, pidfile = h.root / "etc" / "libvirtd.conf", h.root / "libvirtd.pid"
        script = (f"{' && '.join(binds)} && "
                  f"exec libvirtd --listen --config {conf} --pid-file {pidfile}")
        cmd = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script]
        if h.netns:
            cmd = ["ip", "netns", "exec", h.netns] + cmd
        # ip netns exec, unshare and sh all exec(), so libvirtd is the reaper's direct child
        cmd = [sys.executable, str(REAPER), "--"] + cmd
        with open(h.root / "stdout.log", "ab") as out:
            h.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, env=_env(),
                                      stderr=subprocess.STDOUT, start_new_session=True)
        h.pid = None  # libvirtd's, once it has written its pid file

    def _launch_and_wait(self, hosts: list[Host]) -> None:
        t0 = time.monotonic()
        for h in hosts:
            self._launch(h)
        deadline = t0 + self.start_timeout
        for h in hosts:
            while not h.socket.exists():
                self._check_daemon(h, "before creating its socket")
                if time.monotonic() > deadline:
                    raise RigError(f"host {h.name}: no socket after {self.start_timeout}s"
                                   + self._why(h))
                time.sleep(0.05)
            h.pid = self._daemon_pid(h)
            self._state["pids"].append(h.pid)
            ns = _mntns(h.pid)
            if ns and ns not in self._state["mntns"]:
                self._state["mntns"].append(ns)
            self._save_state()
        self.timings["listen"] = time.monotonic() - t0
        # The first API call waits for the daemon's QEMU capability probe (then cached):
        # do it here, in parallel, so no test pays for it inside its own timeouts.
        errors: dict[str, str] = {}

        def probe(h: Host) -> None:
            try:
                c = libvirt.open(h.uri)
                try:
                    caps = c.getCapabilities()
                    if f"<uuid>{h.uuid}</uuid>" not in caps:
                        errors[h.name] = "host UUID not applied (libvirtd.conf not read?)"
                finally:
                    c.close()
            except Exception as e:  # noqa: BLE001 - reported to the caller
                errors[h.name] = str(e)

        threads = [threading.Thread(target=probe, args=(h,), daemon=True) for h in hosts]
        for t in threads:
            t.start()
        for h, t in zip(hosts, threads, strict=True):
            t.join(max(1.0, deadline - time.monotonic()))
            if t.is_alive():
                errors[h.name] = f"capabilities probe still running after {self.start_timeout}s"
        for h in hosts:
            if h.name in errors:
                raise RigError(f"host {h.name}: {errors[h.name]}" + self._why(h))
        self.timings["ready"] = time.monotonic() - t0

    def _daemon_pid(self, h: Host) -> int:
        """libvirtd's PID from its pid file, checked to be the reaper's libvirtd child."""
        assert h.proc is not None
        try:
            pid = int((h.root / "libvirtd.pid").read_text().strip())
        except (OSError, ValueError) as e:
            raise RigError(f"host {h.name}: no pid file: {e}" + self._why(h)) from None
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            ppid = None
        if _comm(pid) != "libvirtd" or ppid != h.proc.pid:
            raise RigError(f"host {h.name}: pid file names {pid} ({_comm(pid)!r}, parent "
                           f"{ppid}), not the libvirtd started under {h.proc.pid}")
        return pid

    def _check_daemon(self, h: Host, when: str) -> None:
        if h.proc is not None and h.proc.poll() is not None:
            raise RigError(f"host {h.name}: libvirtd exited ({h.proc.returncode}) {when}"
                           + self._why(h))

    def _why(self, h: Host) -> str:
        return (f"\n--- {h.root / 'stdout.log'}:\n{_tail(h.root / 'stdout.log', 2000)}"
                f"\n--- {h.log} (tail):\n{_tail(h.log, 3000)}")

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        """Abort jobs, destroy/undefine guests, stop daemons and leftover QEMU by PID, remove
        namespaces, mount points and (unless ``keep``) the base dir.  Safe to call twice."""
        with self._lock:
            if not self._running:
                return
            t0 = time.monotonic()
            try:
                live = [h for h in self.hosts.values() if h.pid and _alive(h.pid)]
                if live:
                    with contextlib.suppress(Exception):
                        self._cleanup_guests(live, timeout=30)
                self._close_conns()
                for h in self.hosts.values():
                    self._stop_daemon(h, signal.SIGTERM)
                clean_stale(self.base)  # QEMU by pid file and by namespace, netns
            finally:
                if self._mpfd is not None:
                    _mountpoints_release(self._mpfd)
                    self._mpfd = None
                self._running = False
                with _LIVE_LOCK:
                    _LIVE.discard(self)
                if not self.keep:
                    for sub in ("a", "b", "guest", "shared", "pki"):
                        shutil.rmtree(self.base / sub, ignore_errors=True)
                    for f in ("state.json", "state.json.tmp", ".lock"):
                        with contextlib.suppress(OSError):
                            (self.base / f).unlink()
                    with contextlib.suppress(OSError):
                        self.base.rmdir()
                if self._lockfd is not None:
                    os.close(self._lockfd)  # releases the flock
                    self._lockfd = None
                self.timings["stop"] = time.monotonic() - t0

    def _stop_daemon(self, h: Host, sig: int) -> None:
        """Signal libvirtd by PID and wait for it (its reaper exits with it)."""
        if h.pid and _alive(h.pid) and _comm(h.pid) == "libvirtd":
            with contextlib.suppress(OSError):
                os.kill(h.pid, sig)
            deadline = time.monotonic() + 15
            while _alive(h.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(h.pid):
                with contextlib.suppress(OSError):
                    os.kill(h.pid, signal.SIGKILL)
        if h.proc is not None:
            try:
                h.proc.wait(10)
            except subprocess.TimeoutExpired:  # daemon never came up: reaper waits on it
                h.proc.kill()
                h.proc.wait(5)
        h.proc = None
        h.pid = None

    # ------------------------------------------------------------------ daemon faults
    def kill_daemon(self, host: str | Host) -> None:
        """SIGKILL one libvirtd (its guests keep running, as on a real host)."""
        with self._lock:
            h = self.host(host)
            self._drop_conn(h.name)
            self._stop_daemon(h, signal.SIGKILL)

    def start_daemon(self, host: str | Host) -> None:
        """(Re)start one libvirtd after kill_daemon(); it reconnects to running QEMUs."""
        with self._lock:
            h = self.host(host)
            if h.proc is not None and h.proc.poll() is None:
                return
            self._launch_and_wait([h])

    def revive(self) -> list[str]:
        """Start again every daemon that is not running with its socket.

        A test that leaves a daemon dead (it crashed, or the test stopped it and failed
        before starting it again) must not fail every later test: this brings the host
        back and returns what was found (with the daemon's log tail), for the report of
        the test that did it."""
        found: list[str] = []
        with self._lock:
            if not self._running:
                return found
            for h in self.hosts.values():
                alive = bool(h.pid) and _alive(h.pid) and _comm(h.pid) == "libvirtd"
                if alive and h.socket.exists():
                    continue
                what = ("was stopped and not started again" if not h.pid
                        else "lost its socket" if alive else "died")
                if h.proc is not None and h.proc.poll() is not None:  # the reaper's status
                    code = h.proc.returncode
                    what += f" (signal {256 - code})" if code > 128 else f" (exit {code})"
                daemon = f"libvirtd {h.pid}" if h.pid else "libvirtd"
                found.append(f"host {h.name}: {daemon} {what}; started again"
                             + self._why(h))
                self._drop_conn(h.name)
                self._stop_daemon(h, signal.SIGTERM)
                self._launch_and_wait([h])
        return found

    def restart_daemon(self, host: str | Host) -> None:
        """Graceful restart (SIGTERM, then start); guests keep running."""
        with self._lock:
            h = self.host(host)
            self._drop_conn(h.name)
            self._stop_daemon(h, signal.SIGTERM)
            self._launch_and_wait([h])

    # ------------------------------------------------------------------ connections
    def connect(self, host: str | Host) -> Any:
        """A new connection owned by the caller (close it).  Use one per thread."""
        return libvirt.open(self.host(host).uri)

    @contextlib.contextmanager
    def _conn(self, host: str | Host) -> Iterator[Any]:
        """The rig's private connection to a host, serialised (see libvirt 9.0 hang)."""
        name = self.host(host).name
        with self._conn_locks[name]:
            c = self._conns.get(name)
            if c is not None:
                try:
                    alive = c.isAlive()
                except libvirt.libvirtError:
                    alive = False
                if not alive:
                    with contextlib.suppress(libvirt.libvirtError):
                        c.close()
                    c = None
            if c is None:
                c = self._conns[name] = libvirt.open(self.host(name).uri)
            yield c

    def _drop_conn(self, name: str) -> None:
        with self._conn_locks[name]:
            c = self._conns.pop(name, None)
            if c is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    c.close()

    def _close_conns(self) -> None:
        for name in list(self._conns):
            self._drop_conn(name)

    # ------------------------------------------------------------------ raw migrations
    def start_migration(
        self,
        name: str,
        src: str | Host,
        dst: str | Host | None = None,
        *,
        flags: int = BASE_FLAGS,
        params: dict[str, Any] | None = None,
    ) -> Migration:
        """Start a raw libvirt migration of ``name`` in a thread; see ``Migration``.
        ``params`` are merged over ``{"migrate_uri": "tcp://<dst addr>"}`` (no URI when
        TUNNELLED: libvirt refuses one)."""
        s = self.host(src)
        d = self.host(dst) if dst is not None else self.other(s)
        p: dict[str, Any] = {} if flags & VIR_MIGRATE_TUNNELLED else {"migrate_uri": d.migrate_uri}
        p.update(params or {})
        m = Migration(s, d, name, flags, p)
        m.start()
        m.started.wait(30)
        return m

    def migrate(self, name: str, src: str | Host, dst: str | Host | None = None, *,
                flags: int = BASE_FLAGS, params: dict[str, Any] | None = None,
                timeout: float = 300.0) -> float:
        """Migrate and wait; returns the wall time of migrateToURI3, raises its error."""
        m = self.start_migration(name, src, dst, flags=flags, params=params).wait(timeout)
        if m.error is not None:
            raise m.error
        assert m.seconds is not None
        return m.seconds

    # ------------------------------------------------------------------ guests
    def guest_xml(
        self,
        name: str,
        *,
        mb: int = 32,
        rate: int = 0,
        delay: int = 0,
        tick_ms: int = 500,
        memory_mib: int = 128,
        disk_path: str | None = None,
    ) -> str:
        """Domain XML for a dirtyguest (TCG, no network, serial to a per-host file)."""
        cmdline = f"mb={mb} rate={rate} delay={delay} tick={tick_ms}"
        disk = ""
        if disk_path:
            cmdline += " disk=1"
            disk = (f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                    f"<source file='{disk_path}'/><target dev='hda' bus='ide'/></disk>")
        return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{self.kernel}</kernel>
    <cmdline>{cmdline}</cmdline>
  </os>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{QEMU}</emulator>
    {disk}
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path='{serial_inside(name)}' append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>"""

    def define_guest(
        self,
        host: str | Host,
        name: str,
        *,
        mb: int = 32,
        rate: int = 0,
        delay: int = 0,
        tick_ms: int = 500,
        memory_mib: int = 128,
        disk: int | None = None,
        disk_shared: bool = False,
        persistent: bool = True,
        start: bool = True,
    ) -> str:
        """Define (and start) a dirtyguest on ``host``; returns ``name``.

        ``mb`` MiB are rewritten at ``rate`` MiB/s (0 = flat out), ``delay`` slows each
        page write down further.  ``disk=<MiB>`` adds a qcow2 disk: by default in the host's
        own /var/lib/libvirt/images (so it exists on this host only and a migration must
        copy it, e.g. VIR_MIGRATE_NON_SHARED_DISK); with ``disk_shared`` in a directory both
        daemons see (then migrating needs VIR_MIGRATE_UNSAFE: not a cluster filesystem).
        With a disk the guest also writes its heartbeat line to sector 0 every tick.
        ``persistent=False`` creates a transient domain (``start`` is implied).
        """
        h = self.host(host)
        self._forget_files(name)
        disk_path = None
        if disk is not None:
            if disk_shared:
                disk_path = str(self.shared_dir / f"{name}.qcow2")
                local = Path(disk_path)
            else:
                disk_path = disk_inside(name)
                local = h.disk_path(name)
            self.create_disk(local, disk)
        xml = self.guest_xml(name, mb=mb, rate=rate, delay=delay, tick_ms=tick_ms,
                             memory_mib=memory_mib, disk_path=disk_path)
        with self._conn(h) as c:
            if not persistent:
                c.createXML(xml, 0)
            else:
                dom = c.defineXML(xml)
                if start:
                    dom.create()
        return name

    def precreate_disk(self, host: str | Host, name: str, size_mib: int | None = None) -> Path:
        """Create an empty disk for ``name`` on ``host`` (what a compute service does on the
        destination before a block migration; libvirt can only pre-create volumes that are in
        a storage pool).  The size defaults to the other host's copy."""
        h = self.host(host)
        if size_mib is None:
            src = self.other(h).disk_path(name)
            info = json.loads(_run(["qemu-img", "info", "-U", "--output=json", str(src)]).stdout)
            size_mib = int(info["virtual-size"]) // (1 << 20)
        self.create_disk(h.disk_path(name), size_mib)
        return h.disk_path(name)

    def define_images_pool(self, host: str | Host) -> None:
        """Define+start a dir storage pool over /var/lib/libvirt/images on ``host``, so the
        destination daemon pre-creates missing disks itself during a block migration."""
        xml = ("<pool type='dir'><name>images</name>"
               "<target><path>/var/lib/libvirt/images</path></target></pool>")
        with self._conn(host) as c:
            try:
                pool = c.storagePoolLookupByName("images")
            except libvirt.libvirtError:
                pool = c.storagePoolDefineXML(xml, 0)
            if not pool.isActive():
                pool.create(0)

    @staticmethod
    def create_disk(path: Path, size_mib: int) -> None:
        """qcow2 with preallocated metadata: guest writes land at fixed file offsets at once,
        so ``read_disk`` sees them while QEMU runs (no cached L2 updates)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        _run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata",
              str(path), f"{size_mib}M"])

    def _forget_files(self, name: str) -> None:
        for h in self.hosts.values():
            for p in (h.serial_path(name), h.disk_path(name)):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.shared_dir / f"{name}.qcow2").unlink()

    def _disk_file(self, host: str | Host, name: str) -> Path:
        local = self.host(host).disk_path(name)
        shared = self.shared_dir / f"{name}.qcow2"
        return local if local.exists() or not shared.exists() else shared

    def read_disk(self, host: str | Host, name: str, offset: int = 0, length: int = 512) -> bytes:
        """Bytes from the guest's disk as ``host`` has it (works while the guest runs)."""
        # -U: QEMU holds the image lock while the guest runs; -r: never write
        r = _run(["qemu-io", "-r", "-U", "-f", "qcow2", "-c", f"read -v {offset} {length}",
                  str(self._disk_file(host, name))])
        data = bytearray()
        for ln in r.stdout.splitlines():
            m = re.match(r"^[0-9a-f]{8}:\s((?:\s[0-9a-f]{2}){1,16})", ln)
            if m:
                data += bytes.fromhex(m.group(1).replace(" ", ""))
        if len(data) != length:
            raise RigError(f"qemu-io returned {len(data)} of {length} bytes: {r.stdout[-300:]}")
        return bytes(data)

    def write_disk(self, host: str | Host, name: str, data: bytes, offset: int = 0) -> None:
        """Write bytes into the guest's disk on ``host`` (only while the guest is not running:
        qemu-io takes the image lock)."""
        path = self._disk_file(host, name)
        with tempfile.NamedTemporaryFile(dir=self.base, suffix=".bin") as f:
            f.write(data)
            f.flush()
            _run(["qemu-io", "-f", "qcow2", "-c", f"write -s {f.name} {offset} {len(data)}",
                  str(path)])

    def disk_heartbeat(self, host: str | Host, name: str) -> int | None:
        """Tick the guest last wrote to sector 0 of its disk on ``host``."""
        m = HEARTBEAT_RE.search(self.read_disk(host, name, 0, 512).decode(errors="replace"))
        return int(m.group(1)) if m else None

    # ------------------------------------------------------------------ serial heartbeat
    def serial_log(self, host: str | Host, name: str, tail: int | None = None) -> str:
        p = self.host(host).serial_path(name)
        if tail:
            return _tail(p, tail)
        try:
            return p.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def guest_stats(self, host: str | Host, name: str) -> dict[str, int] | None:
        """The guest's last heartbeat on ``host`` as a dict: tick, pass, pages (written in
        the last tick), pps (pages/s), kibps, mb, rate.  None if it printed none there."""
        p = self.host(host).serial_path(name)
        if not p.exists():
            return None
        # only complete lines: the last one may still be being written
        complete = _tail(p, 2000).rpartition("\n")[0]
        matches = list(HEARTBEAT_RE.finditer(complete))
        if not matches:
            return None
        last = matches[-1]
        stats = {"tick": int(last.group(1))}
        stats.update({k: int(v) for k, v in KV_RE.findall(last.group(2))})
        return stats

    def heartbeat(self, host: str | Host, name: str) -> int | None:
        """Last heartbeat tick the guest printed on ``host``'s serial log (None: none yet)."""
        s = self.guest_stats(host, name)
        return s["tick"] if s else None

    def wait_heartbeat(self, host: str | Host, name: str, above: int = 0,
                       timeout: float = 30.0) -> int:
        """Wait until the guest on ``host`` printed a tick > ``above``; returns that tick."""
        deadline = time.monotonic() + timeout
        while True:
            t = self.heartbeat(host, name)
            if t is not None and t > above:
                return t
            if time.monotonic() > deadline:
                raise RigError(f"no heartbeat > {above} from {name} on {self.host(host).name} "
                               f"within {timeout}s (last {t}); serial:\n"
                               f"{self.serial_log(host, name, tail=500)}")
            time.sleep(0.1)

    # ------------------------------------------------------------------ inspection/cleanup
    def where(self, name: str) -> dict[str, tuple[int, int, bool] | None]:
        """{"a": (state, reason, persistent) | None, "b": ...} for domain ``name``."""
        out: dict[str, tuple[int, int, bool] | None] = {}
        for h in self.hosts:
            with self._conn(h) as c:
                try:
                    d = c.lookupByName(name)
                    state, reason = d.state()
                    out[h] = (state, reason, bool(d.isPersistent()))
                except libvirt.libvirtError as e:
                    if e.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                        raise
                    out[h] = None
        return out

    def domains(self, host: str | Host) -> list[str]:
        with self._conn(host) as c:
            return sorted(d.name() for d in c.listAllDomains())

    def cleanup_guests(self, timeout: float = 60.0) -> None:
        """Abort jobs, destroy and undefine every domain on both hosts; drop guest files."""
        self._cleanup_guests([h for h in self.hosts.values() if h.pid], timeout)
        for h in self.hosts.values():
            for p in list((h.root / "log" / "qemu").glob("*-serial.log")) + list(
                    (h.root / "lib" / "images").glob("*.qcow2")):
                p.unlink(missing_ok=True)
        for p in self.shared_dir.glob("*.qcow2"):
            p.unlink(missing_ok=True)

    def _cleanup_guests(self, hosts: list[Host], timeout: float) -> None:
        errors: list[str] = []

        # fresh connections: this also runs from stop() in a signal handler, possibly while
        # the interrupted code holds one of the rig's own connections
        def each(fn: Callable[[Host, Any], None], h: Host) -> None:
            try:
                with contextlib.closing(libvirt.open(h.uri)) as c:
                    for d in c.listAllDomains():
                        try:
                            fn(h, d)
                        except libvirt.libvirtError as e:
                            if e.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                                errors.append(f"{h.name}/{d.name()}: {e}")
            except libvirt.libvirtError as e:
                errors.append(f"{h.name}: {e}")

        def abort(h: Host, d: Any) -> None:
            # a client disconnect does not cancel a P2P migration: abort explicitly
            if not d.isActive():
                return
            try:
                job = d.jobInfo()[0]
            except libvirt.libvirtError:  # incoming side has no job stats: destroy does it
                return
            if job != libvirt.VIR_DOMAIN_JOB_NONE:
                with contextlib.suppress(libvirt.libvirtError):  # e.g. post-copy: destroy
                    d.abortJob()

        def destroy(h: Host, d: Any) -> None:
            if d.isActive():
                if tuple(d.state()) in POSTCOPY_STATES:
                    # vCPUs waiting on a dead post-copy peer ignore SIGTERM, and libvirt
                    # waits 10 s before it sends SIGKILL: send it ourselves
                    self._kill_qemu(h, d.name())
                try:
                    d.destroy()
                except libvirt.libvirtError as e:  # already gone after the kill
                    if e.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:
                        raise
            if d.isPersistent():
                d.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                                | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                                | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)

        def work() -> None:
            for fn in (abort, destroy):
                for h in hosts:
                    each(fn, h)

        t = threading.Thread(target=work, daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            raise RigError(f"guest cleanup still running after {timeout}s")
        if errors:
            raise RigError("guest cleanup: " + "; ".join(errors))

    def _kill_qemu(self, host: str | Host, name: str) -> None:
        try:
            pid = int(self.host(host).hostpath(f"/run/libvirt/qemu/{name}.pid").read_text())
        except (OSError, ValueError):
            return
        if _alive(pid) and (_comm(pid) or "").startswith("qemu-system"):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    # ------------------------------------------------------------------ network (netns mode)
    def _need_netns(self) -> tuple[Host, Host]:
        if self.mode != "netns":
            raise RigError("link control needs Rig(mode='netns')")
        return self.a, self.b

    def cut_link(self) -> None:
        """Take the veth pair down: packets between the hosts are dropped (no RST, no
        error), so TCP connections stall until a keepalive or timeout notices."""
        for h in self._need_netns():
            _run(["ip", "-n", str(h.netns), "link", "set", str(h.veth), "down"])

    def restore_link(self) -> None:
        for h in self._need_netns():
            _run(["ip", "-n", str(h.netns), "link", "set", str(h.veth), "up"])

    def shape_link(self, rate_kbit: int, burst_kb: int = 64) -> None:
        """Limit both directions to ``rate_kbit`` (tbf; this kernel has no netem)."""
        for h in self._need_netns():
            _run(["tc", "-n", str(h.netns), "qdisc", "replace", "dev", str(h.veth), "root",
                  "tbf", "rate", f"{rate_kbit}kbit", "burst", f"{burst_kb}kb",
                  "latency", "200ms"])

    @contextlib.contextmanager
    def tcp_patience(self, retries: int) -> Iterator[None]:
        """Let TCP in both namespaces give up on unacknowledged data after ``retries``
        retransmissions (``net.ipv4.tcp_retries2``; 4: ~6 s instead of ~15 min), restored to
        the default 15 on exit.  A link cut that long then breaks QEMU's migration stream too,
        as a long outage does on real hosts (not only libvirt's keepalive-watched connection)."""
        hosts = self._need_netns()
        try:
            for h in hosts:
                _run(["ip", "netns", "exec", str(h.netns), "sh", "-c",
                      f"echo {int(retries)} > /proc/sys/net/ipv4/tcp_retries2"])
            yield
        finally:
            for h in hosts:
                _run(["ip", "netns", "exec", str(h.netns), "sh", "-c",
                      "echo 15 > /proc/sys/net/ipv4/tcp_retries2"], check=False)

    def unshape_link(self) -> None:
        for h in self._need_netns():
            _run(["tc", "-n", str(h.netns), "qdisc", "del", "dev", str(h.veth), "root"],
                 check=False)

    # ------------------------------------------------------------------ misc
    def env(self) -> dict[str, str]:
        """Environment variables describing the rig, for scripts run next to it."""
        e = {"MIGRATOR_RIG_MODE": self.mode, "MIGRATOR_RIG_BASE": str(self.base),
             "MIGRATOR_RIG_KERNEL": str(self.kernel)}
        for h in self.hosts.values():
            u = h.name.upper()
            e.update({f"MIGRATOR_RIG_{u}_URI": h.uri, f"MIGRATOR_RIG_{u}_PEER_URI": h.peer_uri,
                      f"MIGRATOR_RIG_{u}_ADDR": h.addr})
        return e

    def diagnostics(self, nbytes: int = 3000) -> str:
        """Tails of the daemon logs and serial logs, for a failing test's report."""
        parts = []
        for h in self.hosts.values():
            alive = bool(h.pid and _alive(h.pid))
            parts.append(f"=== host {h.name} libvirtd pid={h.pid} alive={alive}: {h.log}\n"
                         + _tail(h.log, nbytes))
            for p in sorted((h.root / "log" / "qemu").glob("*.log")):
                parts.append(f"=== host {h.name}: {p.name}\n" + _tail(p, 800))
        return "\n".join(parts)
