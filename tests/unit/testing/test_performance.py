"""A two-hour migration must simulate in well under a second (generous bound: 5 s)."""

from __future__ import annotations

import time

import pytest

from migrator import constants as C
from migrator.testing import fakelibvirt as fake
from migrator.testing.world import GiB, MiB, World

from .conftest import start_run


@pytest.mark.parametrize(
    "dirty_rate",
    [pytest.param(1 * MiB, id="constant"), pytest.param(lambda t: 1 * MiB, id="callable")],
)
def test_two_hour_migration_simulates_fast(world: World, dirty_rate) -> None:
    # 70 GiB over 10 MiB/s: pass 0 alone is 7168 s.
    world.add_guest("src", "vm1", memory=70 * GiB, dirty_rate=dirty_rate)
    run = start_run(world).start(params={C.VIR_MIGRATE_PARAM_BANDWIDTH: 10})
    start = time.perf_counter()
    run.monitor(interval=0.5)
    elapsed = time.perf_counter() - start
    simulated = world.clock.now()
    polls = len(run.samples)
    print(
        f"\nsimulated {simulated / 3600:.2f} h with {polls} polls in {elapsed:.3f} s real "
        f"({elapsed / polls * 1e6:.1f} us per poll+wait)"
    )
    assert run.error is None
    assert simulated > 2 * 3600
    assert elapsed < 5.0


def test_per_call_overhead(world: World) -> None:
    world.add_guest("src", "vm1", memory=8 * GiB, dirty_rate=100 * MiB)
    run = start_run(world).start()
    while not world.jobs:
        time.sleep(0.001)
    world.clock.advance(3.0)
    n = 20_000
    start = time.perf_counter()
    for _ in range(n):
        run.mdom.jobStats()
    per_call = (time.perf_counter() - start) / n
    print(f"\njobStats: {per_call * 1e6:.1f} us per call")
    run.mdom.abortJob()
    run.monitor()
    assert isinstance(run.error, fake.libvirtError)
    assert per_call < 1e-3
