"""libvirt's completed-job record on real daemons: what the 'libvirt-completed-record' rule
assumes of it, and that real migrations settle by the rules they settled by before.

The rule settles a migration from the record of our job while the source still runs
the guest, which only Nova's test fake shows.  On real libvirt a completed migration
stops the source in its Confirm phase, so the left-source and destination rules
settle it; and a record must be told ours from an earlier job's by comparing it
with the one read before the call, which needs libvirt to hand out the same record
on every read (KEEP_COMPLETED).
"""

from __future__ import annotations

import contextlib

import pytest

from migrator import constants as c
from migrator.driver import LiveMigrationDriver
from migrator.facts import read_record, record_of_our_job
from migrator.testing.config import make_conf
from tests.functional.helpers import wait_job_moving

libvirt = pytest.importorskip("libvirt")

# 96 MiB dirtied flat out through a 20 MiB/s cap never converges (test_driver_real)
NEVER = {"mb": 96, "rate": 0}


def migrate(rig, name, conf=None, dest_connect_uri=None, abort_when_running=False):
    """One migration a -> b through the driver; the outcome and the callbacks' count."""
    called: list = []
    conn = rig.connect("a")
    try:
        driver = LiveMigrationDriver(conf or make_conf(), conn)
        driver.init_host()
        handle = driver.live_migration(
            conn.lookupByName(name), rig.host("b").addr, dest_connect_uri=dest_connect_uri,
            post_method=called.append, recover_method=called.append)
        if abort_when_running:
            wait_job_moving(conn.lookupByName(name))
            assert handle.abort().result(60) is True
        outcome = handle.wait(180)
        assert outcome is not None and called == [outcome]
        return outcome
    finally:
        conn.close()


@pytest.mark.parametrize("ask_destination", [False, True], ids=["source-only", "dest-asked"])
def test_a_real_completed_migration_settles_by_the_rules_it_did_before(rig, ask_destination):
    rig.define_guest("a", "rec-done", mb=16)
    rig.wait_heartbeat("a", "rec-done", above=0, timeout=60)
    dest_uri = rig.host("b").uri if ask_destination else None
    outcome = migrate(rig, "rec-done", dest_connect_uri=dest_uri)
    assert outcome.status == "completed" and outcome.mode == "pre-copy"
    # the source undefined the guest (UNDEFINE_SOURCE): no record is left to read there
    assert outcome.rule == ("destination-runs" if ask_destination else "source-handed-over")
    assert rig.where("rec-done")["a"] is None


def test_a_cancelled_real_migration_leaves_no_record_the_rule_could_take_for_ours(rig):
    """libvirt 9 keeps no completed-job record of a cancelled outgoing migration
    (older and newer ones may keep a CANCELLED one): either way nothing the
    'libvirt-completed-record' rule reads says COMPLETED, and a record read twice
    (KEEP_COMPLETED) is the same record, so a stale one is never taken for ours."""
    rig.define_guest("a", "rec-cancel", **NEVER)
    rig.wait_heartbeat("a", "rec-cancel", above=0, timeout=60)
    with contextlib.closing(rig.connect("a")) as conn:
        dom = conn.lookupByName("rec-cancel")
        before = read_record(dom)
        assert before is not None
        for _ in range(2):
            outcome = migrate(rig, "rec-cancel", conf=make_conf(live_migration_bandwidth=20),
                              abort_when_running=True)
            assert outcome.status == "cancelled" and outcome.rule == "source-runs"
            record = read_record(dom)
            assert record is not None and record.kind in (None, c.VIR_DOMAIN_JOB_CANCELLED)
            if record_of_our_job(record, before):
                assert record.kind == c.VIR_DOMAIN_JOB_CANCELLED
                assert record.operation in (None, c.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT)
            again = read_record(dom)
            assert again == record and not record_of_our_job(again, record)
            before = record
