"""``migrator simulate --plot``: what the figure says in the cases that used to go wrong."""

from __future__ import annotations

import pytest

from migrator import simulate
from migrator.testing import GiB, MiB
from migrator.testing.config import make_conf

pytest.importorskip("matplotlib")

LINK = 10e9 / 8


def _run(memory=2 * GiB, dirty=400 * MiB, **opts):
    kw = {k: opts.pop(k) for k in ("working_set",) if k in opts}
    return simulate.run(make_conf(**opts), memory=memory, dirty_rate=dirty, bandwidth=LINK, **kw)


def _close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_a_converging_run(tmp_path):
    result = _run()
    fig = simulate.figure(result)
    top, bottom = fig.axes[0], fig.axes[1]
    try:
        assert fig._suptitle.get_text().startswith("completed (pre-copy) after ")
        assert fig._suptitle.get_text().endswith(f"downtime {result.outcome.downtime_ms} ms")
        remaining = top.get_lines()[0].get_ydata()
        assert remaining[0] > 0  # the setup samples (all zeros) are left out
        downtime_axis = fig.axes[2]
        assert downtime_axis.get_ylim()[0] == 0  # a flat max downtime is not zoomed into
        labels = {line.get_label() for line in bottom.get_lines()}
        assert labels == {"transfer rate (MiB/s)", "dirty rate (MiB/s)"}
        assert fig.legends and all(ax.get_legend() is None for ax in fig.axes)  # below, apart
    finally:
        _close(fig)
    simulate.plot(result, str(tmp_path / "x.png"))
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_post_copy_has_no_downtime_figure_and_says_why():
    result = _run(memory=4 * GiB, dirty=2 * GiB, live_migration_permit_post_copy=True,
                  live_migration_convergence="adaptive")
    assert result.outcome.mode == "post-copy" and result.outcome.downtime_ms is None
    fig = simulate.figure(result)
    try:
        text = fig._suptitle.get_text()
        assert "None" not in text and text.endswith("no downtime figure after post-copy")
        marks = [t.get_text() for t in fig.axes[0].texts]
        assert marks == ["start_post_copy"]
    finally:
        _close(fig)


def test_a_stalled_run_says_no_switchover():
    result = _run(memory=4 * GiB, dirty=2 * GiB, live_migration_convergence="adaptive")
    fig = simulate.figure(result)
    try:
        assert fig._suptitle.get_text().startswith("stalled (not migrated) after ")
        assert fig._suptitle.get_text().endswith("no switchover")
    finally:
        _close(fig)


def test_thousands_of_passes_draw_the_dirty_set_per_pass_over_a_faint_saw_tooth():
    result = _run(memory=8 * GiB, working_set=256 * MiB, dirty=2 * GiB,
                  live_migration_completion_timeout=60)
    assert result.outcome.passes > 1000
    fig = simulate.figure(result)
    try:
        raw, envelope = fig.axes[0].get_lines()[:2]
        assert raw.get_alpha() < 0.5 and raw.get_linewidth() < 1
        assert envelope.get_label() == "dirty set at each pass (GiB)"
        assert len(envelope.get_xdata()) == len({p.iteration for p in result.trace if p.total})
    finally:
        _close(fig)
