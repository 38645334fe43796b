"""Threads that work the same with native threading and under eventlet.

Under eventlet monkey-patching, ``threading.Thread`` makes green threads, and a
blocking call into libvirt's C library from a green thread would stall every
other green thread of the process.  :func:`blocking` therefore routes calls on
real libvirt objects through eventlet's OS-thread pool (``tpool``) when
eventlet is patched in; pure-Python objects (the fake libvirt) cooperate with
the hub by themselves and are called directly.
"""

from __future__ import annotations

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
