"""The simulator's cost is counted in work, not in wall time (machines here are shared).

A two-hour migration must cost a bounded amount of stepping per poll of the monitor:
the physics jumps from event to event (a sync, a check that can change the outcome, a
rate change) instead of ticking through QEMU's 100 ms checks.  How fast that is in
seconds is a benchmark figure (``python -m benchmarks sim``), printed here for a look.
"""

from __future__ import annotations

import collections
import time

import pytest

from migrator import constants as C
from migrator.testing import fakelibvirt as fake
from migrator.testing.hypervisor import CHECK_SECONDS, Transfer
from migrator.testing.world import GiB, MiB, World

from .conftest import start_run


@pytest.fixture
def steps(monkeypatch) -> collections.Counter:
    """How often the physics stepped (pre-copy steps) and checked QEMU's rule."""
    counts: collections.Counter = collections.Counter()
    for name in ("_step_precopy", "_check"):
        real = getattr(Transfer, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            counts[_name] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(Transfer, name, counted)
    return counts


@pytest.mark.parametrize(
    "dirty_rate",
    [pytest.param(1 * MiB, id="constant"), pytest.param(lambda t: 1 * MiB, id="callable")],
)
def test_two_hour_migration_steps_per_poll_not_per_check(world: World, dirty_rate,
                                                         steps) -> None:
    # 70 GiB over 10 MiB/s: pass 0 alone is 7168 s.
    world.add_guest("src", "vm1", memory=70 * GiB, dirty_rate=dirty_rate)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 10})
    start = time.perf_counter()
    run.monitor(interval=0.5)
    elapsed = time.perf_counter() - start
    simulated = world.clock.now()
    polls = len(run.samples)
    print(
        f"\nsimulated {simulated / 3600:.2f} h with {polls} polls in {elapsed:.3f} s real, "
        f"{dict(steps)}"
    )
    assert run.error is None
    assert simulated > 2 * 3600
    # about one step and one check per poll; ticking through QEMU's 100 ms checks would
    # cost five per poll (polls are 0.5 s apart)
    ticking = simulated / CHECK_SECONDS
    assert 0 < max(steps.values()) <= 2 * polls < ticking / 2, dict(steps)


def test_per_call_work_does_not_grow_with_calls(world: World) -> None:
    """jobStats reads the job's state: 20,000 calls move no virtual time and step nothing."""
    world.add_guest("src", "vm1", memory=8 * GiB, dirty_rate=100 * MiB)
    run = start_run(world).start()
    while not world.jobs:
        time.sleep(0.001)
    world.clock.advance(3.0)
    before = world.clock.now(), run.mdom.jobStats()
    n = 20_000
    start = time.perf_counter()
    for _ in range(n):
        stats = run.mdom.jobStats()
    per_call = (time.perf_counter() - start) / n
    print(f"\njobStats: {per_call * 1e6:.1f} us per call")
    assert world.clock.now() == before[0] and stats == before[1]
    run.mdom.abortJob()
    run.monitor()
    assert isinstance(run.error, fake.libvirtError)
