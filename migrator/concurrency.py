"""Threads that work the same with native threading and under eventlet; the queue.

Under eventlet monkey-patching, ``threading.Thread`` makes green threads, and a
blocking call into libvirt's C library from a green thread would stall every
other green thread of the process.  :func:`blocking` therefore routes calls on
real libvirt objects through eventlet's OS-thread pool (``tpool``) when
eventlet is patched in; pure-Python objects (the fake libvirt) cooperate with
the hub by themselves and are called directly.
"""

from __future__ import annotations

import collections
import sys
import threading
from collections.abc import Callable
from typing import Any


def eventlet_patched() -> bool:
    """True when eventlet has monkey-patched the thread module."""
    patcher = sys.modules.get("eventlet.patcher")
    return bool(patcher and patcher.is_monkey_patched("thread"))


def _is_real_libvirt(obj: Any) -> bool:
    return type(obj).__module__ == "libvirt"


def blocking(obj: Any) -> Any:
    """``obj`` itself, or a proxy whose calls run in an OS thread under eventlet."""
    if eventlet_patched() and _is_real_libvirt(obj):
        from eventlet import tpool

        return tpool.Proxy(obj, autowrap_names=("lookupByUUIDString", "lookupByName"))
    return obj


def spawn(target: Callable[[], None], name: str) -> threading.Thread:
    """Start ``target`` in a daemon thread (a green thread under eventlet)."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def call_with_timeout(fn: Callable[[], Any], timeout: float, name: str) -> tuple[bool, Any]:
    """Run ``fn`` in its own thread; (finished, result-or-exception) after ``timeout`` s.

    A libvirt call can hang when QEMU's monitor is stuck (KubeVirt wraps its
    abortJob in a 30 s watchdog for that reason).  The thread is left to finish
    on its own: a C call cannot be interrupted, but the caller can go on.
    """
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            box["error"] = exc
        finally:
            done.set()

    spawn(run, name)
    if not done.wait(timeout):
        return False, None
    return True, box.get("error", box.get("result"))


class Worker:
    """Runs one blocking call (``migrateToURI3``) in its own thread and keeps its result."""

    def __init__(self, call: Callable[[], Any], name: str):
        self._call = call
        self._name = name
        self.done = threading.Event()
        self.started = False
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._cancelled = False
        self.on_done: Callable[[], None] | None = None

    def start(self) -> bool:
        """Start the call unless it was cancelled first (VDSM's pre-start guard).

        Raises what starting a thread raises (the call is then never made).
        """
        with self._lock:
            if self._cancelled:
                self.done.set()
                return False
            self.started = True
        try:
            spawn(self._run, self._name)
        except BaseException:
            with self._lock:
                self.started = False
            raise
        return True

    def forget(self) -> None:
        """Drop the call (and the libvirt objects it holds) once the job has settled."""
        self._call = lambda: None
        self.on_done = None
        if self.error is not None:
            # Its traceback holds the call's frames, and with them the virDomain and its
            # connection: a settled handle would keep a libvirtd client slot open.
            self.error.__traceback__ = None
            self.error.__context__ = None

    def cancel_before_start(self) -> bool:
        """Prevent the call if it has not started; True if it was prevented."""
        with self._lock:
            if self.started:
                return False
            self._cancelled = True
            return True

    def _run(self) -> None:
        try:
            self._call()
        except BaseException as exc:  # noqa: BLE001 - the monitor settles it
            self.error = exc
        finally:
            self.done.set()
            on_done = self.on_done
            if on_done is not None:
                on_done()


class SlotQueue:
    """At most ``size`` migrations at once (None: no limit); the others wait in order.

    A waiting migration is an item in a deque: it holds no thread.  ``start(item)``
    must not raise (it settles its migration itself when it cannot run), and each
    started migration calls :meth:`release` exactly once when it ends.
    """

    def __init__(self, size: int | None, start: Callable[[Any], None]):
        self.size = size if size is None or size > 0 else None
        self._start = start
        self._busy = 0
        self._waiting: collections.deque[tuple[object, Any]] = collections.deque()
        self._lock = threading.Lock()

    def submit(self, key: object, item: Any) -> None:
        """Start ``item`` now if a slot is free, else queue it (call order is queue order)."""
        with self._lock:
            run = self.size is None or (self._busy < self.size and not self._waiting)
            if run:
                self._busy += 1
            else:
                self._waiting.append((key, item))
        if run:
            self._start(item)

    def occupy(self) -> None:
        """Count a migration that runs already (re-attached) without queueing it."""
        with self._lock:
            self._busy += 1

    def cancel(self, key: object) -> Any | None:
        """Take ``key``'s item out of the queue; None if it is not waiting."""
        with self._lock:
            for entry in self._waiting:
                if entry[0] is key:
                    self._waiting.remove(entry)
                    return entry[1]
        return None

    def release(self) -> None:
        """A migration ended: its slot goes to the first one waiting."""
        with self._lock:
            if self._waiting and (self.size is None or self._busy <= self.size):
                _, item = self._waiting.popleft()
            else:
                self._busy -= 1
                return
        self._start(item)

    def drain(self) -> list[Any]:
        """Empty the queue (shutdown); the items that were waiting, in order."""
        with self._lock:
            items = [item for _, item in self._waiting]
            self._waiting.clear()
        return items

    @property
    def queued(self) -> int:
        return len(self._waiting)

    @property
    def busy(self) -> int:
        return self._busy
