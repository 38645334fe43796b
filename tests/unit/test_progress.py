"""ProgressTracker: reports due per interval, monotonic percent below 100 until completed."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrator import constants
from migrator.jobstats import JobSample
from migrator.progress import (
    PERCENT_CAP,
    Progress,
    ProgressTracker,
    estimate_eta,
    raw_percent,
)

MiB = 1024**2
UNBOUNDED = constants.VIR_DOMAIN_JOB_UNBOUNDED


def running(**fields) -> JobSample:
    return JobSample(type=UNBOUNDED, **fields)


def mem(total: int, remaining: int, **fields) -> JobSample:
    return running(
        memory_total=total,
        memory_remaining=remaining,
        memory_processed=total - remaining,
        **fields,
    )


def test_setup_samples_are_not_reported_the_first_real_one_is():
    # libvirt's first running samples have every counter at 0 (setup): a report
    # would claim "0 B remaining", so the first report waits for real figures.
    tracker = ProgressTracker(5)
    assert tracker.update(running(), 0.0) is None
    report = tracker.update(running(data_total=100, data_remaining=100, memory_total=100,
                                    memory_remaining=100), 0.5)
    assert isinstance(report, Progress)
    assert report.percent == 0.0
    assert report.eta_seconds is None
    assert report.final is False


def test_samples_of_a_job_not_running_are_ignored():
    tracker = ProgressTracker(5)
    for job_type in (
        constants.VIR_DOMAIN_JOB_NONE,
        constants.VIR_DOMAIN_JOB_COMPLETED,
        constants.VIR_DOMAIN_JOB_FAILED,
    ):
        assert tracker.update(JobSample(type=job_type, memory_total=10), 1.0) is None
    assert tracker.update(mem(100, 40), 2.0).percent == 60.0


def test_reports_due_every_monitor_interval():
    tracker = ProgressTracker(5)
    due = [t / 2 for t in range(0, 25) if tracker.update(mem(100, 50), t / 2) is not None]
    assert due == [0.0, 5.0, 10.0]


def test_monitor_interval_zero_reports_every_sample():
    tracker = ProgressTracker(0)
    assert all(tracker.update(mem(100, 50), t / 2) for t in range(5))


def test_percent_from_memory_like_nova_save_stats():
    # Nova: 75 % remaining gives progress 25.
    tracker = ProgressTracker(5)
    assert tracker.update(mem(400, 300), 0.0).percent == 25.0


def test_percent_prefers_data_fields_when_known():
    sample = running(
        data_total=1000,
        data_remaining=900,
        memory_total=200,
        memory_remaining=100,
        disk_total=800,
        disk_remaining=800,
    )
    assert raw_percent(sample) == pytest.approx(10.0)  # memory alone would say 50


def test_percent_uses_remaining_not_processed():
    # memory_processed exceeds memory_total once pages are re-sent.
    sample = running(memory_total=100, memory_processed=350, memory_remaining=30)
    assert raw_percent(sample) == pytest.approx(70.0)


def test_percent_capped_below_100_while_running():
    tracker = ProgressTracker(5)
    report = tracker.update(mem(100, 0), 0.0)
    assert report.percent == PERCENT_CAP
    assert report.percent < 100


def test_remaining_above_total_gives_zero_not_negative():
    assert raw_percent(running(memory_total=100, memory_remaining=150)) == 0.0


def test_percent_never_goes_backwards_on_saw_tooth():
    tracker = ProgressTracker(0)
    remaining = [100, 60, 30, 70, 20, 45, 10]  # each pass re-dirties pages
    percents = [tracker.update(mem(100, r), float(i)).percent for i, r in enumerate(remaining)]
    assert percents == [0.0, 40.0, 70.0, 70.0, 80.0, 80.0, 90.0]


def test_unreported_peak_is_kept():
    tracker = ProgressTracker(5)
    tracker.update(mem(100, 90), 0.0)
    assert tracker.update(mem(100, 20), 1.0) is None  # not due, but seen
    assert tracker.update(mem(100, 60), 5.0).percent == 80.0
    assert tracker.percent == 80.0


def test_final_completed_gives_100_and_nothing_remaining():
    tracker = ProgressTracker(5, max_downtime=lambda: 500)
    tracker.update(mem(100, 5, memory_bps=10, memory_iteration=7), 0.0)
    report = tracker.final(12.5, completed=True)
    assert report.percent == 100.0
    assert report.final is True
    assert report.elapsed == 12.5
    assert (report.memory_remaining, report.data_remaining, report.disk_remaining) == (0, 0, 0)
    assert report.memory_total == 100
    assert report.iteration == 7
    assert report.eta_seconds == 0.0
    assert report.max_downtime_ms == 500


def test_final_not_completed_keeps_the_watermark_below_100():
    tracker = ProgressTracker(5)
    tracker.update(mem(100, 10), 0.0)
    report = tracker.final(3.0, completed=False)
    assert report.percent == 90.0
    assert report.final is True
    assert report.memory_remaining == 10
    assert report.eta_seconds is None


def test_final_with_completed_stats_reports_actual_downtime():
    tracker = ProgressTracker(5)
    tracker.update(mem(100, 10, downtime_ms=4790), 0.0)
    done = JobSample(
        type=constants.VIR_DOMAIN_JOB_COMPLETED,
        memory_total=100,
        memory_processed=180,
        downtime_ms=47,
    )
    report = tracker.final(9.2, completed=True, sample=done)
    assert report.expected_downtime_ms == 47
    assert report.memory_processed == 180
    assert report.percent == 100.0


def test_final_without_any_sample():
    tracker = ProgressTracker(5)
    assert tracker.final(0.5, completed=False).percent == 0.0
    assert tracker.final(0.5, completed=True).percent == 100.0


def test_report_carries_the_sample_figures():
    tracker = ProgressTracker(5, max_downtime=lambda: 95)
    sample = running(
        data_total=3000,
        data_processed=1200,
        data_remaining=2000,
        memory_total=1000,
        memory_processed=1200,
        memory_remaining=0,
        disk_total=2000,
        disk_processed=0,
        disk_remaining=2000,
        memory_bps=100 * MiB,
        memory_dirty_rate=256,
        memory_page_size=4096,
        memory_iteration=3,
        downtime_ms=4790,
        auto_converge_throttle=60,
    )
    report = tracker.update(sample, 7.0)
    assert report.elapsed == 7.0
    assert report.percent == pytest.approx(100 / 3)
    assert (report.data_total, report.data_processed, report.data_remaining) == (3000, 1200, 2000)
    assert (report.memory_total, report.memory_processed, report.memory_remaining) == (
        1000,
        1200,
        0,
    )
    assert (report.disk_total, report.disk_processed, report.disk_remaining) == (2000, 0, 2000)
    assert report.iteration == 3
    assert report.dirty_rate_bytes == 1 * MiB
    assert report.transfer_rate_bytes == 100 * MiB
    assert report.expected_downtime_ms == 4790
    assert report.max_downtime_ms == 95
    assert report.throttle == 60


def test_to_dict():
    tracker = ProgressTracker(5)
    d = tracker.update(mem(100, 50, memory_bps=20, memory_dirty_rate=0), 1.0).to_dict()
    assert d["percent"] == 50.0
    assert d["memory_remaining"] == 50
    assert d["eta_seconds"] == 2.5
    assert d["final"] is False
    assert set(d) >= {
        "elapsed",
        "percent",
        "memory_total",
        "memory_processed",
        "memory_remaining",
        "disk_total",
        "disk_processed",
        "disk_remaining",
        "data_remaining",
        "iteration",
        "dirty_rate_bytes",
        "transfer_rate_bytes",
        "expected_downtime_ms",
        "max_downtime_ms",
        "eta_seconds",
        "throttle",
    }


def test_eta_net_of_dirty_rate():
    # 600 MiB left at 100 MiB/s with 40 MiB/s being dirtied: 10 s.
    sample = mem(
        1000 * MiB,
        600 * MiB,
        memory_bps=100 * MiB,
        memory_dirty_rate=40 * MiB // 4096,
    )
    assert estimate_eta(sample) == pytest.approx(10.0)


def test_eta_none_when_not_converging():
    sample = mem(1000 * MiB, 600 * MiB, memory_bps=20 * MiB, memory_dirty_rate=96 * MiB // 4096)
    assert estimate_eta(sample) is None
    equal = mem(1000 * MiB, 600 * MiB, memory_bps=4096 * 10, memory_dirty_rate=10)
    assert estimate_eta(equal) is None


def test_eta_none_without_rate_or_totals():
    assert estimate_eta(mem(100, 50)) is None  # no memory_bps yet
    assert estimate_eta(running()) is None  # setup: nothing known


def test_eta_zero_when_nothing_remains():
    assert estimate_eta(mem(100, 0)) == 0.0


def test_eta_uses_data_remaining_when_known():
    sample = running(data_total=3000, data_remaining=2000, memory_total=1000, memory_bps=100)
    assert estimate_eta(sample) == pytest.approx(20.0)


samples = st.builds(
    lambda total, frac, use_data, bps, dirty: running(
        data_total=total if use_data else 0,
        data_remaining=int(total * frac) if use_data else 0,
        memory_total=total,
        memory_remaining=int(total * frac),
        memory_bps=bps,
        memory_dirty_rate=dirty,
    ),
    total=st.integers(0, 10**12),
    frac=st.floats(0, 1.2, allow_nan=False),
    use_data=st.booleans(),
    bps=st.integers(0, 10**10),
    dirty=st.integers(0, 10**6),
)


@settings(max_examples=200, deadline=None)
@given(seq=st.lists(samples, min_size=1, max_size=30), interval=st.integers(0, 10))
def test_percent_property_monotonic_and_below_100(seq, interval):
    tracker = ProgressTracker(interval)
    last = 0.0
    for i, sample in enumerate(seq):
        report = tracker.update(sample, float(i))
        if report is not None:
            assert last <= report.percent < 100
            last = report.percent
            eta = report.eta_seconds
            assert eta is None or (eta >= 0 and math.isfinite(eta))
    assert tracker.final(len(seq), completed=False).percent < 100
    assert tracker.final(len(seq), completed=True).percent == 100.0


def test_setup_sample_with_zero_counters_is_not_reported():
    tracker = ProgressTracker(5)
    assert tracker.update(JobSample(type=constants.VIR_DOMAIN_JOB_UNBOUNDED), 0.0) is None
    running = JobSample(type=constants.VIR_DOMAIN_JOB_UNBOUNDED, data_total=100, data_remaining=60,
                        memory_total=100, memory_remaining=60)
    report = tracker.update(running, 0.5)
    assert report is not None and report.percent == 40
