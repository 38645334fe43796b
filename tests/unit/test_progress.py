"""ProgressTracker: reports due per interval, monotonic percent below 100 until completed."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrator import constants
from migrator.jobstats import JobSample
from migrator.predict import precopy_seconds
from migrator.progress import (
    PERCENT_CAP,
    Progress,
    ProgressTracker,
    outlook,
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
    d = tracker.update(mem(100, 50, memory_bps=20, memory_dirty_rate=0, memory_iteration=1),
                       1.0).to_dict()
    assert d["percent"] == 50.0
    assert d["memory_remaining"] == 50
    assert d["eta_seconds"] == 2.5
    assert d["converging"] is None and d["outlook"] == "first pass"
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
        "converging",
        "outlook",
    }


def test_eta_from_the_precopy_model_not_a_straight_line():
    # 600 MiB left at 100 MiB/s with 40 MiB/s dirtied, max downtime 500 ms: the model
    # (remaining falls at 60 MiB/s until it fits 100 MiB/s x 0.5 s), not 600 / 60.
    sample = mem(1000 * MiB, 600 * MiB, memory_bps=100 * MiB,
                 memory_dirty_rate=40 * MiB // 4096, memory_iteration=3)
    view = outlook(sample, 500)
    assert view.converging is True and view.text == "converging"
    assert view.eta_seconds == pytest.approx(precopy_seconds(600 * MiB, 40 * MiB, 100 * MiB, 0.5))
    assert view.eta_seconds < 600 / 60


def test_qemu_default_max_downtime_until_one_is_set():
    sample = mem(1000 * MiB, 600 * MiB, memory_bps=100 * MiB,
                 memory_dirty_rate=40 * MiB // 4096, memory_iteration=3)
    assert outlook(sample, None).eta_seconds == pytest.approx(
        precopy_seconds(600 * MiB, 40 * MiB, 100 * MiB, 0.3))


def test_not_converging_says_what_dirties_and_what_the_link_carries():
    sample = mem(1000 * MiB, 600 * MiB, memory_bps=20 * MiB,
                 memory_dirty_rate=96 * MiB // 4096, memory_iteration=4)
    view = outlook(sample, 500)
    assert view.converging is False and view.eta_seconds is None
    assert view.text.startswith("not converging: dirties 96.0 MiB/s or more, link carries "
                                "20.0 MiB/s")


def test_a_dirty_rate_at_the_link_rate_is_qemus_cap_and_explained():
    # QEMU counts each page once per pass: a guest that rewrites all its memory every pass
    # reports (memory / pass time) = the link's rate, whatever it really writes.
    sample = mem(4096 * MiB, 4000 * MiB, memory_bps=1192 * MiB,
                 memory_dirty_rate=1190 * MiB // 4096, memory_iteration=9)
    view = outlook(sample, 500)
    assert view.converging is False
    assert "QEMU counts a page once per pass" in view.text


def test_first_pass_has_no_judgement_only_the_end_of_the_pass():
    sample = mem(1000 * MiB, 600 * MiB, memory_bps=100 * MiB, memory_iteration=1)
    view = outlook(sample, 500)
    assert view.converging is None and view.text == "first pass"
    assert view.eta_seconds == pytest.approx(6.0)


def test_post_copy_pushes_the_rest_at_the_transfer_rate():
    sample = mem(1000 * MiB, 600 * MiB, memory_bps=100 * MiB,
                 memory_dirty_rate=400 * MiB // 4096, memory_iteration=5)
    view = outlook(sample, 500, post_copy=True)
    assert view.converging is True and view.eta_seconds == pytest.approx(6.0)


def test_an_end_after_the_completion_timeout_is_not_converging():
    sample = mem(1000 * MiB, 900 * MiB, memory_bps=100 * MiB,
                 memory_dirty_rate=95 * MiB // 4096, memory_iteration=3)
    assert outlook(sample, 500, elapsed=10, deadline=10_000).converging is True
    late = outlook(sample, 500, elapsed=10, deadline=60)
    assert late.converging is False and late.eta_seconds is None
    assert late.text.startswith("not converging before the completion timeout (in 50.0 s)")


def test_no_outlook_without_a_transfer_rate():
    assert outlook(mem(100, 50)).text == "starting"
    assert outlook(running()).text == "starting"
    disks = running(data_total=300, data_remaining=250, memory_total=100, memory_remaining=100,
                    disk_total=200, disk_remaining=150)
    assert outlook(disks) == outlook(disks, 500)
    assert outlook(disks).text == "copying disks" and outlook(disks).eta_seconds is None


def test_nothing_remaining_is_the_switchover():
    assert outlook(mem(100, 0)).eta_seconds == 0.0


def test_tracker_asks_the_policy_what_the_outlook_assumes():
    policy = {"downtime": None, "post_copy": False}
    tracker = ProgressTracker(0, max_downtime=lambda: policy["downtime"],
                              post_copy=lambda: policy["post_copy"], deadline=10_000)
    sample = mem(1000 * MiB, 600 * MiB, memory_bps=100 * MiB,
                 memory_dirty_rate=40 * MiB // 4096, memory_iteration=5)
    slow = tracker.update(sample, 1.0)
    policy["downtime"] = 2000
    fast = tracker.update(sample, 2.0)
    assert (slow.max_downtime_ms, fast.max_downtime_ms) == (None, 2000)
    assert fast.eta_seconds < slow.eta_seconds
    policy["post_copy"] = True
    report = tracker.update(sample, 3.0)
    assert report.converging is True and report.outlook.startswith("post-copy")


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
