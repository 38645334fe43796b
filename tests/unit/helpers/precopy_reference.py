"""QEMU's pre-copy switchover rule stepped by brute force: the reference the simulator's
event-driven physics is checked against (tests/unit/testing)."""

from __future__ import annotations

from migrator.testing.hypervisor import CHECK_SECONDS


def reference(V: float, W: float, R: float, D: float, limit: float = 0.3, dt: float = 1e-4):
    """QEMU's rule stepped by brute force, ``dt`` at a time (no events, no shortcuts).

    Pass 0 sends everything; every ``CHECK_SECONDS`` (and when nothing is left)
    pending bytes are compared with R x limit; when they fit, the bitmap is
    synced (pending U dirtied, dirtied within the working set W) and the guest
    is stopped if the synced set fits too.  Returns (passes, total, downtime).
    """
    T = R * limit
    ticks = round(CHECK_SECONDS / dt)
    hot_fraction = W / V
    pending, dirty, sent, passes, step = V, 0.0, 0.0, [], 0
    while True:
        step += 1
        x = min(R * dt, pending)
        pending -= x
        sent += x
        dirty = min(W, dirty + D * dt)
        if (pending <= 0 or step % ticks == 0) and pending <= T:
            cold = pending * (1 - hot_fraction)
            hot = min(W, pending * hot_fraction + dirty)
            passes.append(sent)
            sent, dirty, pending = 0.0, 0.0, cold + hot
            if pending <= T:
                passes.append(pending)
                return passes, step * dt + pending / R, pending / R
            hot_fraction = hot / pending
