"""migrator's Nova driver with Nova's objects and callbacks, on the simulated hypervisor.

Nova's fake libvirt never reports a running job, so Nova's functional tests
prove the wiring but never the monitor.  Here the guest runs on migrator's
simulated hypervisor (virtual clock): downtime steps, the completion timeout,
force-complete and abort through the driver's Nova API, progress, post-copy
and its failure, a failing monitor, a guest that moved although the call
raised.  Nova's preparation (``_live_migration_operation``) is covered by
Nova's functional tests (``tox -e nova-functional``); here a stand-in makes the
same ``guest.migrate()`` call at its end.  ``tox -e nova`` runs this module
with native threads and again under eventlet.
"""

from __future__ import annotations

import threading
import time
from unittest import mock

import pytest

pytest.importorskip("nova", reason="Nova is not installed here: run tox -e nova")

import nova.conf  # noqa: E402
from nova import context as nova_context  # noqa: E402
from nova import exception as nova_exception  # noqa: E402
from nova import objects  # noqa: E402
from nova.virt.libvirt import guest as libvirt_guest  # noqa: E402
from nova.virt.libvirt import migration as nova_migration  # noqa: E402
from oslo_config import fixture as config_fixture  # noqa: E402

import migrator.conf  # noqa: E402
from migrator import constants as C  # noqa: E402
from migrator.driver import LiveMigrationDriver  # noqa: E402
from migrator.nova import connection  # noqa: E402
from migrator.nova import driver as nova_driver  # noqa: E402
from migrator.testing import GiB, MiB  # noqa: E402
from migrator.testing.fixture import fake_hosts  # noqa: E402

CONF = nova.conf.CONF
objects.register_all()
migrator.conf.register_opts(CONF)


class FakeNovaHost:
    """What the driver uses of Nova's ``Host``: its connection (re-opened when it
    died, as Nova's is) and ``get_guest``."""

    _uri = "qemu+tcp://src/system"

    def __init__(self, fake):
        self._fake = fake
        self._conn = fake.module.open(self._uri)

    def get_connection(self):
        if not self._conn.isAlive():
            self._conn = self._fake.module.open(self._uri)
        return self._conn

    def get_guest(self, instance):
        return libvirt_guest.Guest(self.get_connection().lookupByUUIDString(instance.uuid))


class Nova:
    """One instance being live-migrated by the adapter, seen as Nova sees it."""

    def __init__(self, fake, name="vm1", dest="dst", **guest):
        fake.world.add_guest("src", name, **guest)
        self.fake = fake
        self.dest = dest
        self.host = FakeNovaHost(fake)
        self.driver = object.__new__(nova_driver.LibvirtDriver)  # no Nova host behind it
        self.driver._host = self.host
        self.driver._runs = {}
        self.driver._live_migration_copy_disk_paths = lambda ctx, inst, guest: ([], [])
        self.driver._get_vpmems = lambda inst: []
        self.driver._live_migration_operation = self._operation
        live = LiveMigrationDriver(CONF, connection.HostConnection(self.host), clock=fake.clock,
                                   queue=False, open_connection=fake.module.open)
        live.init_host()
        self.driver._migrator = live
        self.context = nova_context.get_admin_context()
        uuid = self.host.get_connection().lookupByName(name).UUIDString()
        self.instance = objects.Instance(uuid=uuid, vm_state="active", progress=0,
                                         flavor=objects.Flavor(memory_mb=4096))
        self.migration = objects.Migration(status="running")
        self.migrate_data = objects.LibvirtLiveMigrateData(block_migration=False,
                                                           migration=self.migration)
        self.progress: list[int] = []
        self.migration_saves: list[dict] = []
        self.instance.save = mock.Mock(side_effect=lambda: self.progress.append(
            self.instance.progress))
        self.migration.save = mock.Mock(side_effect=self._migration_saved)
        self.calls: list[tuple] = []
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.finished = threading.Event()

    def _migration_saved(self):
        self.migration_saves.append({f: getattr(self.migration, f, None) for f in (
            "status", "memory_total", "memory_processed", "memory_remaining", "disk_total")})

    @staticmethod
    def _operation(context, instance, dest, block_migration, migrate_data, guest, device_names):
        # Nova's _live_migration_operation ends with this call, after its preparation
        guest.migrate(f"qemu+tcp://{dest}/system", migrate_uri=None, migrate_disks=device_names,
                      destination_xml=None, flags=0, bandwidth=0, parallel=1)

    # Nova's callbacks, with the compute manager's signatures
    def post_method(self, context, instance, dest, block_migration, migrate_data):
        self.calls.append(("post", threading.get_ident(), dest, block_migration, migrate_data))

    def recover_method(self, context, instance, dest, migrate_data, migration_status="failed"):
        self.calls.append(("recover", threading.get_ident(), dest, migration_status,
                           migrate_data))

    def start(self):
        """Nova's live-migration thread: blocks in _live_migration until it settled."""

        def run():
            try:
                self.driver._live_migration(self.context, self.instance, self.dest,
                                            self.post_method, self.recover_method, False,
                                            self.migrate_data)
            except BaseException as exc:  # noqa: BLE001 - Nova's manager would get it
                self.error = exc
            finally:
                self.finished.set()

        self.thread = threading.Thread(target=run, name="nova-live-migration")
        self.thread.start()
        return self

    def wait(self):
        assert self.finished.wait(60), "the adapter never returned to Nova"
        assert len(self.calls) <= 1
        if self.calls:  # the callback ran in Nova's thread
            assert self.calls[0][1] == self.thread.ident
        return self

    def later(self, when, fn):
        """Call ``fn`` at virtual time ``when`` from a thread of its own (Nova's API)."""
        box: dict = {}
        done = threading.Event()
        box["done"] = done

        def call():
            try:
                box["result"] = fn()
            except Exception as exc:  # noqa: BLE001 - inspected by the test
                box["error"] = exc
            finally:
                done.set()

        self.fake.world.at(when, lambda: threading.Thread(target=call).start())
        return box

    @staticmethod
    def answer(box):
        """What the call scheduled with later() returned or raised, once it has."""
        assert box["done"].wait(90), "the call never returned"
        return box.get("error", box.get("result"))

    @property
    def on(self):
        return [h for h in ("src", "dst") if (rec := self.fake.world.domain(h, "vm1"))
                is not None and rec.state == C.VIR_DOMAIN_RUNNING]

    def outcome_actions(self):
        return [c for c in self.fake.world.calls if c[0] in ("abortJob", "migrateStartPostCopy",
                                                              "suspend")]


@pytest.fixture
def fake():
    with fake_hosts(require_event_loop=False) as fx:
        yield fx


@pytest.fixture
def flags():
    fx = config_fixture.Config(CONF)
    fx.setUp()
    yield lambda **kw: [fx.config(group="libvirt", **{k: v}) for k, v in kw.items()]
    fx.cleanUp()


def slow(**extra):
    """A guest that dirties memory faster than the link carries it: never converges."""
    return dict(memory=4 * GiB, dirty_rate=2 * GiB, **extra)


def spy_calls(fake, monkeypatch, *names):
    """Record the order of selected libvirt calls on the simulated domains."""
    from migrator.testing import fakelibvirt as fl

    seen: list[str] = []
    for name in names:
        real = getattr(fl.virDomain, name)

        def spy(self, *a, _real=real, _name=name, **k):
            seen.append(_name)
            return _real(self, *a, **k)

        monkeypatch.setattr(fl.virDomain, name, spy)
    return seen


# -- outcomes and Nova's callbacks --------------------------------------------------------


def test_completed_calls_post_method_in_novas_thread(fake, flags):
    nova_run = Nova(fake, memory=4 * GiB, working_set=1 * GiB, dirty_rate=200 * MiB)
    nova_run.start().wait()
    assert nova_run.error is None
    (call,) = nova_run.calls
    assert call[0] == "post" and call[2] == "dst" and call[3] is False
    assert call[4] is nova_run.migrate_data
    assert nova_run.on == ["dst"]
    assert nova_run.driver._runs == {}


def test_downtime_steps_are_applied(fake, flags, monkeypatch):
    flags(live_migration_downtime=500, live_migration_downtime_steps=3,
          live_migration_downtime_delay=3, live_migration_completion_timeout=0)
    downtimes: list[int] = []
    from migrator.testing import fakelibvirt as fl

    real = fl.virDomain.migrateSetMaxDowntime
    monkeypatch.setattr(fl.virDomain, "migrateSetMaxDowntime",
                        lambda self, ms, flags=0: (downtimes.append(ms), real(self, ms, flags))[1])
    nova_run = Nova(fake, **slow())
    box = nova_run.later(60, lambda: nova_run.driver.live_migration_abort(nova_run.instance))
    nova_run.start().wait()
    # the ramp Nova's own monitor applies for this guest (4 GiB: data_gb 4)
    assert downtimes[:4] == [ms for _t, ms in nova_migration.downtime_steps(4.0)]
    assert downtimes[:4] == [166, 277, 388, 500]
    assert nova_run.answer(box) is None
    assert nova_run.calls[0][0] == "recover" and nova_run.calls[0][3] == "cancelled"


def test_timeout_abort_is_cancelled_and_rolled_back(fake, flags):
    flags(live_migration_completion_timeout=10)
    nova_run = Nova(fake, **slow())
    nova_run.start().wait()
    assert nova_run.error is None
    (call,) = nova_run.calls
    assert call[:2] == ("recover", nova_run.thread.ident) and call[3] == "cancelled"
    assert nova_run.on == ["src"]


FORCING = ("migrateStartPostCopy", "suspend")


def forced_by(seen, post_copy):
    """The one way completion was forced: the switch to post-copy, or pausing the guest."""
    return seen == (["migrateStartPostCopy"] if post_copy else ["suspend"])


@pytest.mark.parametrize("post_copy", [True, False], ids=["post-copy", "pause"])
def test_timeout_force_complete(fake, flags, monkeypatch, post_copy):
    flags(live_migration_completion_timeout=10, live_migration_timeout_action="force_complete",
          live_migration_permit_post_copy=post_copy)
    seen = spy_calls(fake, monkeypatch, *FORCING)
    nova_run = Nova(fake, **slow())
    nova_run.start().wait()
    assert nova_run.calls[0][0] == "post" and nova_run.on == ["dst"]
    assert forced_by(seen, post_copy), seen
    statuses = [s["status"] for s in nova_run.migration_saves]
    assert ("running (post-copy)" in statuses) == post_copy


@pytest.mark.parametrize("post_copy", [True, False], ids=["post-copy", "pause"])
def test_force_complete_through_novas_api(fake, flags, monkeypatch, post_copy):
    flags(live_migration_completion_timeout=0, live_migration_permit_post_copy=post_copy)
    seen = spy_calls(fake, monkeypatch, *FORCING)
    nova_run = Nova(fake, **slow())
    box = nova_run.later(20, lambda: nova_run.driver.live_migration_force_complete(
        nova_run.instance))
    nova_run.start().wait()
    assert nova_run.answer(box) is None
    assert nova_run.calls[0][0] == "post" and nova_run.on == ["dst"]
    assert forced_by(seen, post_copy), seen
    assert (nova_run.migration.status == "running (post-copy)") == post_copy


def test_force_complete_through_novas_api_in_post_copy_changes_nothing(fake, flags,
                                                                        monkeypatch):
    """Asked again once the job is in post-copy: nothing more to force, nothing raised."""
    flags(live_migration_completion_timeout=0, live_migration_permit_post_copy=True)
    seen = spy_calls(fake, monkeypatch, *FORCING)
    nova_run = Nova(fake, **slow())
    force = nova_run.driver.live_migration_force_complete
    first = nova_run.later(20, lambda: force(nova_run.instance))
    again = nova_run.later(21, lambda: force(nova_run.instance))
    nova_run.start().wait()
    assert nova_run.answer(first) is None and nova_run.answer(again) is None
    assert nova_run.calls[0][0] == "post" and nova_run.on == ["dst"]
    assert seen == ["migrateStartPostCopy"]


def test_abort_through_novas_api_in_pre_copy(fake, flags):
    flags(live_migration_completion_timeout=0)
    nova_run = Nova(fake, **slow())
    box = nova_run.later(20, lambda: nova_run.driver.live_migration_abort(nova_run.instance))
    nova_run.start().wait()
    assert nova_run.answer(box) is None
    assert nova_run.calls[0][0] == "recover" and nova_run.calls[0][3] == "cancelled"
    assert nova_run.on == ["src"]


def test_abort_through_novas_api_in_post_copy_is_refused(fake, flags):
    flags(live_migration_completion_timeout=0, live_migration_permit_post_copy=True)
    nova_run = Nova(fake, **slow())
    nova_run.later(20, lambda: nova_run.driver.live_migration_force_complete(nova_run.instance))
    box = nova_run.later(21, lambda: nova_run.driver.live_migration_abort(nova_run.instance))
    nova_run.start().wait()
    assert isinstance(nova_run.answer(box), (nova_exception.MigrationError,
                                         nova_exception.NoActiveMigrationForInstance))
    assert nova_run.calls[0][0] == "post" and nova_run.on == ["dst"]


def test_controls_without_a_migration_raise_novas_exception(fake):
    nova_run = Nova(fake, memory=1 * GiB)
    with pytest.raises(nova_exception.NoActiveMigrationForInstance):
        nova_run.driver.live_migration_force_complete(nova_run.instance)
    with pytest.raises(nova_exception.NoActiveMigrationForInstance):
        nova_run.driver.live_migration_abort(nova_run.instance)


def test_progress_fields_follow_the_job(fake, flags):
    flags(live_migration_monitor_interval=1)
    nova_run = Nova(fake, memory=4 * GiB, working_set=3 * GiB, dirty_rate=600 * MiB)
    nova_run.start().wait()
    assert nova_run.calls[0][0] == "post"
    running = [s for s in nova_run.migration_saves if s["memory_total"]]
    assert len(running) >= 3
    assert all(s["memory_total"] == 4 * GiB for s in running)
    assert any(0 < s["memory_remaining"] < 4 * GiB for s in running)
    assert nova_run.progress == sorted(nova_run.progress)  # never goes back
    assert nova_run.progress[-1] == 100 and max(nova_run.progress[:-1]) < 100


def test_block_migration_progress_has_the_disk_fields(fake, flags, tmp_path):
    """Nova's disk paths are stat'ed for the timeout; one that cannot be (gone from
    under Nova) stops nothing, as in Nova."""
    flags(live_migration_monitor_interval=1)
    nova_run = Nova(fake, memory=2 * GiB, working_set=1 * GiB, dirty_rate=100 * MiB,
                    disks={"vda": 8 * GiB, "vdb": 1 * GiB})
    nova_run.migrate_data.block_migration = True
    disk = tmp_path / "disk"
    disk.write_bytes(b"x" * 4096)
    paths = ([str(disk), str(tmp_path / "gone")], ["vda", "vdb"])
    nova_run.driver._live_migration_copy_disk_paths = lambda ctx, inst, guest: paths
    nova_run.start().wait()
    assert nova_run.error is None and nova_run.calls[0][0] == "post"
    running = [s for s in nova_run.migration_saves if s["disk_total"]]
    assert running and all(s["disk_total"] == 9 * GiB for s in running)
    assert nova_run.migration.disk_processed == nova_run.migration.disk_total
    assert nova_run.migration.disk_remaining == 0


def test_post_copy_failure_is_error_without_rollback(fake, flags):
    flags(live_migration_permit_post_copy=True, live_migration_completion_timeout=5,
          live_migration_timeout_action="force_complete",
          live_migration_postcopy_recovery_timeout=30)
    fake.world.faults.postcopy_link_failure(after=0.5)  # never restored
    nova_run = Nova(fake, **slow())
    nova_run.start().wait()
    assert nova_run.calls == []  # neither post nor rollback: the guest runs on the destination
    assert isinstance(nova_run.error, nova_exception.MigrationError)
    assert "postcopy_failed" in str(nova_run.error) and "nothing is rolled back" in str(
        nova_run.error)
    assert nova_run.migration.status == "running (post-copy)"


def test_unknown_is_error_without_rollback(fake, flags):
    """The service loses the source's libvirt for good while the job goes on and moves
    the guest: where it runs cannot be established, so Nova must not roll back."""
    flags(live_migration_establish_timeout=60)
    nova_run = Nova(fake, memory=4 * GiB, working_set=1 * GiB, dirty_rate=200 * MiB)
    fake.world.at(1, lambda: fake.world.faults.cut_client("src"))
    nova_run.start().wait()
    assert nova_run.calls == []  # neither post nor rollback
    assert isinstance(nova_run.error, nova_exception.MigrationError)
    assert "ended unknown" in str(nova_run.error)
    assert "nothing is rolled back" in str(nova_run.error)
    assert nova_run.on == ["dst"]  # a rollback would have destroyed the only copy


def test_monitor_exception_aborts_the_job_first(fake, flags, monkeypatch):
    flags(live_migration_completion_timeout=0)
    seen = spy_calls(fake, monkeypatch, "abortJob")
    nova_run = Nova(fake, **slow())
    fake.world.at(3, lambda: fake.world.faults.fail(
        "jobStats", code=C.VIR_ERR_INTERNAL_ERROR, domain=C.VIR_FROM_QEMU,
        message="internal error: qemu monitor broke", times=None))
    nova_run.start().wait()
    assert seen and seen[0] == "abortJob"
    assert nova_run.calls[0][0] == "recover" and nova_run.calls[0][3] == "failed"
    assert nova_run.on == ["src"]


def test_novas_side_failing_aborts_the_job_first(fake, flags, monkeypatch):
    """Nova's record cannot be written (its database is down): abort, then settle."""
    flags(live_migration_completion_timeout=0, live_migration_monitor_interval=1)
    seen = spy_calls(fake, monkeypatch, "abortJob")
    nova_run = Nova(fake, **slow())
    nova_run.migration.save = mock.Mock(side_effect=nova_exception.NovaException("db down"))
    nova_run.start().wait()
    assert seen == ["abortJob"]
    assert nova_run.calls[0][0] == "recover" and nova_run.on == ["src"]


def test_guest_moved_although_the_call_raised(fake, flags):
    """The connection blocked in migrateToURI3 drops; the P2P job goes on and completes."""
    nova_run = Nova(fake, memory=4 * GiB, working_set=1 * GiB, dirty_rate=200 * MiB)
    fake.world.at(1, lambda: fake.world.faults.drop_connection(nova_run.host._conn))
    nova_run.start().wait()
    assert nova_run.on == ["dst"]
    assert nova_run.calls[0][0] == "post"


def test_refused_plan_is_a_clean_rollback(fake, flags, caplog):
    """A tunnelled block migration of selected disks: migrator refuses before libvirt,
    Nova rolls back cleanly, and the log says why in an operator's words."""
    flags(live_migration_tunnelled=True)
    nova_run = Nova(fake, memory=1 * GiB, disks={"vda": 1 * GiB})
    nova_run.migrate_data.block_migration = True
    nova_run.driver._live_migration_copy_disk_paths = lambda ctx, inst, guest: (["/d"], ["vda"])
    started = []
    from migrator.testing import fakelibvirt as fl

    with mock.patch.object(fl.virDomain, "migrateToURI3", side_effect=started.append):
        nova_run.start().wait()
    assert nova_run.error is None and started == []
    assert nova_run.calls[0][0] == "recover" and nova_run.calls[0][3] == "failed"
    (why,) = [r.getMessage() for r in caplog.records if "did not start" in r.getMessage()]
    assert "refused by migrator" in why and "live_migration_tunnelled" in why, why


def test_callbacks_never_run_twice_under_many_migrations(fake, flags):
    nova_runs = [Nova(fake, name=f"vm{i}", memory=1 * GiB) for i in range(4)]
    for r in nova_runs:
        r.start()
    deadline = time.monotonic() + 60
    for r in nova_runs:
        r.wait()
        assert [c[0] for c in r.calls] == ["post"]
    assert time.monotonic() < deadline


def test_destination_xml_with_a_host_device_is_told_and_unparseable_xml_is_logged(caplog):
    """The flag rules learn of an assigned device from Nova's destination XML; XML that
    does not parse counts as none (libvirt refuses it at the start) and says so."""
    from migrator.nova import run

    assert run._has_hostdev("<domain><devices><hostdev mode='subsystem'/></devices></domain>")
    assert not run._has_hostdev("<domain><devices><disk/></devices></domain>")
    assert not run._has_hostdev(None)
    with caplog.at_level("WARNING"):
        assert not run._has_hostdev("<domain><devices>")
    assert "does not parse" in caplog.text
