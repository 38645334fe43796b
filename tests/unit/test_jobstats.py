"""JobSample parsing, stats-error classification and Nova's data size."""

from __future__ import annotations

import math

import pytest

from migrator import constants
from migrator.jobstats import JobSample, StatsError, classify_stats_error, data_gb

MiB = 1024**2
GiB = 1024**3

# Shaped like what libvirt 9.0 + QEMU 7.2 returned for a running RAM-only
# migration of a 128 MiB guest (real-libvirt/README.md section 3).
REAL_RUNNING = {
    "type": constants.VIR_DOMAIN_JOB_UNBOUNDED,
    "operation": constants.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT,
    "time_elapsed": 7012,
    "setup_time": 3,
    "downtime": 4790,
    "data_total": 134610944,
    "data_processed": 180355072,
    "data_remaining": 100663296,
    "memory_total": 134610944,
    "memory_processed": 180355072,
    "memory_remaining": 100663296,
    "memory_constant": 8153,
    "memory_normal": 43877,
    "memory_normal_bytes": 179720192,
    "memory_page_size": 4096,
    "memory_bps": 20971520,
    "memory_dirty_rate": 6144,
    "memory_iteration": 3,
    "memory_postcopy_requests": 0,
    "disk_total": 0,
    "disk_processed": 0,
    "disk_remaining": 0,
}


def test_from_stats_real_running_dict():
    s = JobSample.from_stats(REAL_RUNNING)
    assert s.type == constants.VIR_DOMAIN_JOB_UNBOUNDED
    assert s.is_running
    assert s.time_elapsed_ms == 7012
    assert s.downtime_ms == 4790
    assert (s.data_total, s.data_processed, s.data_remaining) == (
        134610944,
        180355072,
        100663296,
    )
    assert (s.memory_total, s.memory_processed, s.memory_remaining) == (
        134610944,
        180355072,
        100663296,
    )
    assert s.memory_bps == 20971520
    assert s.memory_dirty_rate == 6144
    assert s.memory_page_size == 4096
    assert s.memory_iteration == 3
    assert (s.disk_total, s.disk_processed, s.disk_remaining) == (0, 0, 0)
    assert s.auto_converge_throttle == 0  # absent without AUTO_CONVERGE
    assert s.dirty_rate_bytes == 6144 * 4096


def test_from_stats_auto_converge_and_postcopy_fields():
    s = JobSample.from_stats(
        dict(REAL_RUNNING, auto_converge_throttle=80, memory_postcopy_requests=17)
    )
    assert s.auto_converge_throttle == 80
    assert s.memory_postcopy_requests == 17


def test_from_stats_job_not_started_yet():
    # The first samples can be {type: 0}.
    s = JobSample.from_stats({"type": constants.VIR_DOMAIN_JOB_NONE})
    assert s == JobSample()
    assert not s.is_running
    assert s.memory_page_size == 4096


def test_from_stats_setup_sample_all_zero_without_bps():
    # type=2 with every counter 0 and no memory_bps in the very first sample.
    s = JobSample.from_stats(
        {
            "type": 2,
            "operation": 5,
            "time_elapsed": 0,
            "memory_total": 0,
            "memory_dirty_rate": 0,
        }
    )
    assert s.is_running
    assert s.memory_bps == 0
    assert s.dirty_rate_bytes == 0


def test_from_stats_completed_dict_downtime_is_actual():
    s = JobSample.from_stats(
        {
            "type": constants.VIR_DOMAIN_JOB_COMPLETED,
            "operation": constants.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN,
            "time_elapsed": 2300,
            "time_elapsed_net": 2290,
            "downtime": 47,
            "downtime_net": 45,
        }
    )
    assert s.type == constants.VIR_DOMAIN_JOB_COMPLETED
    assert s.downtime_ms == 47
    assert s.time_elapsed_ms == 2300


def test_from_stats_missing_page_size_defaults_to_4096():
    stats = dict(REAL_RUNNING)
    del stats["memory_page_size"]  # libvirt < 3.9
    s = JobSample.from_stats(stats)
    assert s.memory_page_size == 4096
    assert s.dirty_rate_bytes == 6144 * 4096


def test_from_stats_huge_pages_dirty_rate():
    s = JobSample.from_stats({"type": 2, "memory_dirty_rate": 10, "memory_page_size": 2 * MiB})
    assert s.dirty_rate_bytes == 20 * MiB


@pytest.mark.parametrize(
    "garbage",
    ["12", None, [1], {"a": 1}, float("nan"), float("inf"), -5, True, b"7", object()],
)
def test_from_stats_garbage_values_become_zero(garbage):
    stats = {key: garbage for key in REAL_RUNNING}
    s = JobSample.from_stats(stats)
    assert s == JobSample()


def test_from_stats_float_values_are_truncated():
    s = JobSample.from_stats({"type": 2.0, "memory_bps": 1234.9, "memory_total": -1.0})
    assert s.type == 2
    assert s.memory_bps == 1234
    assert s.memory_total == 0


def test_from_stats_zero_page_size_defaults():
    assert JobSample.from_stats({"memory_page_size": 0}).memory_page_size == 4096
    assert JobSample.from_stats({"memory_page_size": "x"}).memory_page_size == 4096


@pytest.mark.parametrize("weird", [None, [], "type", 42, {1: 2, None: "x"}])
def test_from_stats_never_raises_on_weird_input(weird):
    s = JobSample.from_stats(weird)
    assert s.type == constants.VIR_DOMAIN_JOB_NONE


def test_from_stats_ignores_unknown_keys():
    s = JobSample.from_stats({"type": 2, "vfio_data_transferred": 5, "errmsg": "x"})
    assert s == JobSample(type=2)


def test_from_job_info_maps_the_twelve_values():
    info = [2, 3500, 0, 1000, 400, 600, 700, 300, 400, 300, 100, 200]
    s = JobSample.from_job_info(info)
    assert s.type == 2
    assert s.time_elapsed_ms == 3500
    assert (s.data_total, s.data_processed, s.data_remaining) == (1000, 400, 600)
    assert (s.memory_total, s.memory_processed, s.memory_remaining) == (700, 300, 400)
    assert (s.disk_total, s.disk_processed, s.disk_remaining) == (300, 100, 200)
    # jobInfo has no rates or iteration.
    assert s.memory_bps == s.memory_dirty_rate == s.memory_iteration == s.downtime_ms == 0
    assert s.memory_page_size == 4096


def test_from_job_info_fake_nova_zeros():
    assert JobSample.from_job_info([0] * 12) == JobSample()


def test_from_job_info_short_and_garbage():
    s = JobSample.from_job_info([2, "x", None, 5])
    assert s.type == 2
    assert s.time_elapsed_ms == 0
    assert s.data_total == 5
    assert s.data_remaining == 0


@pytest.mark.parametrize("weird", [None, "abc", b"abc", 7, {"type": 2}, []])
def test_from_job_info_never_raises(weird):
    assert JobSample.from_job_info(weird) == JobSample()


def test_sample_is_frozen():
    s = JobSample()
    with pytest.raises(AttributeError):
        s.type = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (constants.VIR_ERR_NO_DOMAIN, "Domain not found: no matching uuid", "FINISHING"),
        (
            constants.VIR_ERR_OPERATION_INVALID,
            "Requested operation is not valid: domain is not running",
            "FINISHING",
        ),
        (constants.VIR_ERR_OPERATION_INVALID, "", "FINISHING"),
        (
            constants.VIR_ERR_INTERNAL_ERROR,
            "internal error: migration was active, but no RAM info was set",
            "NOT_STARTED",
        ),
        (constants.VIR_ERR_INTERNAL_ERROR, "internal error: something else", "FATAL"),
        (constants.VIR_ERR_INTERNAL_ERROR, None, "FATAL"),
        (constants.VIR_ERR_NO_SUPPORT, "this function is not supported", "NO_SUPPORT"),
        (constants.VIR_ERR_OPERATION_UNSUPPORTED, "Operation not supported", "FATAL"),
        (constants.VIR_ERR_RPC, "client socket is closed", "FATAL"),
        (constants.VIR_ERR_SYSTEM_ERROR, "Connection refused", "FATAL"),
        (
            constants.VIR_ERR_NO_SUPPORT,
            "migration was active, but no RAM info was set",
            "NO_SUPPORT",
        ),
    ],
)
def test_classify_stats_error(code, message, expected):
    assert classify_stats_error(code, message) is StatsError[expected]


def test_data_gb_small_ram_is_clamped_to_two():
    assert data_gb(512 * MiB, []) == 2.0


def test_data_gb_plain():
    assert data_gb(4 * GiB, []) == 4.0


def test_data_gb_block_each_disk_clamped():
    assert data_gb(4 * GiB, [10 * GiB, int(1.5 * GiB)]) == 16.0


def test_data_gb_nova_block_example():
    # test_live_migration_data_gb_block: RAM -> 2, 10 GiB root, 1.5 GiB -> 2.
    assert data_gb(1 * GiB, [10 * GiB, int(1.5 * GiB)]) == 14.0


def test_data_gb_block_device_reporting_zero_counts_two():
    assert data_gb(8 * GiB, [0]) == 10.0


def test_data_gb_is_float_arithmetic():
    result = data_gb(3 * GiB + 512 * MiB, [int(2.25 * GiB)])
    assert isinstance(result, float)
    assert math.isclose(result, 5.75)
