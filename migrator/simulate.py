"""Run one migration through the real driver and monitor against the simulated hypervisor.

Used by ``migrator simulate`` and the benchmarks: it builds a two-host world
(:mod:`migrator.testing`) on a virtual clock, runs
:class:`~migrator.driver.LiveMigrationDriver` exactly as a compute service
would, and returns the outcome plus a per-sample trace for plotting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from oslo_config import cfg

from migrator.driver import LiveMigrationDriver, MigrationOutcome
from migrator.jobstats import JobSample
from migrator.progress import Progress
from migrator.testing import fakelibvirt
from migrator.testing.world import World

SOURCE, DEST, GUEST = "source-host", "dest-host", "guest"


@dataclass
class TracePoint:
    """One job sample as the plot needs it (bytes, bytes/s, ms, %)."""

    t: float
    remaining: int
    iteration: int
    expected_downtime_ms: int
    throttle: int
    total: int = 0  # data_total: 0 while the job is setting up
    transfer_rate: int = 0
    dirty_rate: int = 0


@dataclass
class SimResult:
    outcome: MigrationOutcome
    trace: list[TracePoint] = field(default_factory=list)
    downtime_settings: list[tuple[float, int]] = field(default_factory=list)
    wall_seconds: float = 0.0


def run(
    conf: cfg.ConfigOpts,
    *,
    memory: int,
    dirty_rate: float | Callable[[float], float],
    bandwidth: float,
    working_set: int | None = None,
    block_disk: int | None = None,
    paused: bool = False,
    force_complete_at: float | None = None,
    abort_at: float | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_sample: Callable[[float, JobSample], None] | None = None,
    on_action: Callable[[Any], None] | None = None,
    poll_interval: float = 0.5,
    policy_factory: Any = None,
    libvirt_version: tuple[int, int, int] = (9, 0, 0),
    qemu_version: tuple[int, int, int] = (7, 2, 0),
    timeout: float = 600.0,
    predict_first: bool = False,
) -> SimResult:
    """Simulate one migration of a guest to a second host; ``bandwidth`` is the link (B/s).

    The hooks are the driver's (``on_sample`` also gets every sample, after the
    trace has it).  ``timeout`` bounds the *real* time the simulation may take.
    ``predict_first``: measure the guest and predict the migration first
    (``LiveMigrationDriver.predict``, a few virtual seconds before the start, at
    the link's rate) and give the prediction to the migration, as a caller that
    measures before it migrates does: the adaptive policy's prior.
    """
    world = World(make_current=False, require_event_loop=False)
    previous = fakelibvirt.set_world(world)
    try:
        _populate(world, memory=memory, working_set=working_set, dirty_rate=dirty_rate,
                  bandwidth=bandwidth, block_disk=block_disk, paused=paused,
                  versions=(libvirt_version, qemu_version))
        conn = fakelibvirt.open(f"qemu+tcp://{SOURCE}/system")
        driver = LiveMigrationDriver(conf, conn, clock=world.clock, poll_interval=poll_interval,
                                     policy_factory=policy_factory,
                                     open_connection=fakelibvirt.open)
        driver.init_host()
        result = SimResult(outcome=None)  # type: ignore[arg-type]
        start_wall = time.perf_counter()
        hooks = {"on_progress": on_progress, "on_action": on_action}
        if predict_first:
            hooks["prediction"] = driver.predict(conn.lookupByName(GUEST), link_rate=bandwidth)
        handle = _start(driver, conn, block_disk, result, on_sample, hooks)
        if force_complete_at is not None:
            world.after(force_complete_at, handle.force_complete)
        if abort_at is not None:
            world.after(abort_at, handle.abort)
        result.outcome = _wait(world, handle, timeout)
        result.wall_seconds = time.perf_counter() - start_wall
        result.downtime_settings = [
            (a.at, int(a.value)) for a in result.outcome.actions
            if a.action == "set_max_downtime" and a.ok and a.value is not None
        ]
        conn.close()
        return result
    finally:
        world.shutdown()
        fakelibvirt.set_world(previous)


def _populate(world: World, *, memory: int, working_set: int | None,
              dirty_rate: float | Callable[[float], float], bandwidth: float,
              block_disk: int | None, paused: bool,
              versions: tuple[tuple[int, int, int], tuple[int, int, int]]) -> None:
    """Two hosts on a link of ``bandwidth`` B/s, and the guest on the source."""
    gbps = bandwidth * 8 / 1e9
    for host in (SOURCE, DEST):
        world.add_host(host, link_gbps=gbps, libvirt_version=versions[0],
                       qemu_version=versions[1])
    world.add_guest(SOURCE, GUEST, memory=memory, working_set=working_set,
                    dirty_rate=dirty_rate, disks={"vda": block_disk} if block_disk else {},
                    state="paused" if paused else "running")


def _start(driver: LiveMigrationDriver, conn: Any, block_disk: int | None, result: SimResult,
           on_sample: Callable[[float, JobSample], None] | None, hooks: dict[str, Any]) -> Any:
    """Start the migration as a compute service would; every sample goes to the trace."""

    def sample(t: float, s: JobSample) -> None:
        result.trace.append(TracePoint(t, s.data_remaining, s.memory_iteration, s.downtime_ms,
                                       s.auto_converge_throttle, s.data_total, s.memory_bps,
                                       s.dirty_rate_bytes))
        if on_sample is not None:
            on_sample(t, s)

    return driver.live_migration(
        conn.lookupByName(GUEST), DEST,
        block_migration=bool(block_disk), disks=("vda",) if block_disk else (),
        disk_sizes=(block_disk,) if block_disk else (),
        dest_connect_uri=f"qemu+tcp://{DEST}/system",
        post_method=lambda o: None, recover_method=lambda o: None,
        on_sample=sample, **hooks,
    )


def _wait(world: World, handle: Any, timeout: float) -> MigrationOutcome:
    outcome = handle.wait(timeout)
    if outcome is None:
        handle.abort()
        world.shutdown()
        handle.wait(10)
        raise RuntimeError(f"the simulation did not finish within {timeout} s of real time")
    return outcome


MANY_PASSES = 40  # above this, the saw-tooth is drawn faintly under its per-pass envelope
MAX_LABELS = 12  # action labels drawn on the plot; the rest are only marked


def title(outcome: MigrationOutcome) -> str:
    """What the plot says at the top: how it ended, how long, how many passes, the downtime."""
    if outcome.downtime_ms is not None:
        downtime = f"downtime {outcome.downtime_ms} ms"
    elif outcome.mode == "post-copy":
        downtime = "no downtime figure after post-copy"
    else:
        downtime = "no switchover"
    passes = f"{outcome.passes} pass{'' if outcome.passes == 1 else 'es'}"
    return (f"{outcome.status} ({outcome.mode or 'not migrated'}) after "
            f"{outcome.total_seconds:.1f} s, {passes}, {downtime}")


def figure(result: SimResult) -> Any:
    """The figure ``plot`` saves: remaining bytes and max downtime above, rates below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trace = [p for p in result.trace if p.total > 0]  # setup samples report all zeros
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    _remaining_panel(top, trace)
    downtime = top.twinx()
    _downtime_line(downtime, result, trace)
    _rates_panel(bottom, trace)
    _mark_actions([top, bottom], result.outcome.actions)
    fig.suptitle(title(result.outcome))
    handles = [h for ax in (top, downtime, bottom) for h in ax.get_legend_handles_labels()[0]]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5) or 1,
               frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def _remaining_panel(ax: Any, trace: list[TracePoint]) -> None:
    ts, gib = [p.t for p in trace], [p.remaining / 2**30 for p in trace]
    passes = len({p.iteration for p in trace})
    many = passes > MANY_PASSES
    ax.plot(ts, gib, color="tab:blue", linewidth=0.5 if many else 1.2, alpha=0.35 if many else 1,
            label="remaining (GiB)")
    if many:  # thousands of passes: the dirty set at each pass boundary tells the story
        starts = {}
        for p in trace:
            starts.setdefault(p.iteration, p)
        ax.plot([p.t for p in starts.values()], [p.remaining / 2**30 for p in starts.values()],
                color="tab:blue", linewidth=1.5, label="dirty set at each pass (GiB)")
    ax.set_ylabel("remaining (GiB)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)


def _downtime_line(ax: Any, result: SimResult, trace: list[TracePoint]) -> None:
    if result.downtime_settings:
        xs, ys = zip(*result.downtime_settings, strict=True)
        end = max(trace[-1].t if trace else 0, xs[-1], result.outcome.total_seconds)
        ax.step(list(xs) + [end], list(ys) + [ys[-1]], where="post", color="tab:orange",
                label="max downtime (ms)")
        ax.set_ylim(0, max(ys) * 1.25)  # from 0: a flat line stays a flat line
    ax.set_ylabel("max downtime (ms)")


def _rates_panel(ax: Any, trace: list[TracePoint]) -> None:
    ts = [p.t for p in trace]
    ax.plot(ts, [p.transfer_rate / 2**20 for p in trace], color="tab:green",
            label="transfer rate (MiB/s)")
    ax.plot(ts, [p.dirty_rate / 2**20 for p in trace], color="tab:purple",
            label="dirty rate (MiB/s)")
    ax.set_ylabel("MiB/s")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("time (s, simulated)")
    ax.grid(alpha=0.3)


def _mark_actions(axes: list[Any], actions: list[Any]) -> None:
    """A dashed line per action (downtime steps have their own line); labels for the first few,
    inside the top panel so they never sit under the legend."""
    shown = [a for a in actions if a.action != "set_max_downtime"]
    for i, a in enumerate(shown):
        for ax in axes:
            ax.axvline(a.at, color="tab:red", linestyle="--", linewidth=0.8, alpha=0.7)
        if i < MAX_LABELS:
            axes[0].annotate(a.action + ("" if a.ok else " (failed)"), (a.at, 0.98),
                             xycoords=("data", "axes fraction"), rotation=90, va="top",
                             ha="right", fontsize=8, color="tab:red")


def plot(result: SimResult, path: str) -> None:
    """PNG of remaining bytes, the max downtime, the rates and the actions over time."""
    import matplotlib.pyplot as plt

    fig = figure(result)
    fig.savefig(path, dpi=100)
    plt.close(fig)
