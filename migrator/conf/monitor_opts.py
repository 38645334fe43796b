"""The options that steer a running migration (the monitor and its policies read them).

The downtime ramp, the completion timeout and its action, the convergence policy,
post-copy recovery, how long facts are waited for, the progress interval, and how
many migrations run at once.
"""

from __future__ import annotations

from oslo_config import cfg

monitor_opts = [
    cfg.IntOpt(
        "live_migration_downtime",
        default=500,
        min=100,
        max=2000000,  # QEMU refuses a larger downtime limit
        help="""
Maximum downtime of the guest at switchover, in milliseconds.

The last value of the downtime ramp (``steps`` policy) and the ceiling the
``adaptive`` policy never exceeds in pre-copy.

Possible values:

* an integer of at least 100

Related options:

* ``live_migration_downtime_steps``, ``live_migration_downtime_delay``
""",
    ),
    cfg.IntOpt(
        "live_migration_downtime_steps",
        default=10,
        min=3,
        max=1000,
        help="""
Number of increments of the downtime ramp up to ``live_migration_downtime``.

The ramp has steps+1 values: step 0 is ``downtime / steps`` and is applied as
soon as the migration runs; the last is exactly ``live_migration_downtime``.

Possible values:

* an integer of at least 3

Related options:

* ``live_migration_downtime``, ``live_migration_downtime_delay``
""",
    ),
    cfg.IntOpt(
        "live_migration_downtime_delay",
        default=75,
        min=3,
        help="""
Time between two steps of the downtime ramp, in seconds per GiB of data.

The data size is the guest RAM plus, for block migration, each copied disk,
each counted as at least 2 GiB.  A 4 GiB guest with the default waits 300 s
between steps.

Possible values:

* an integer of at least 3

Related options:

* ``live_migration_downtime``, ``live_migration_downtime_steps``
""",
    ),
    cfg.IntOpt(
        "live_migration_completion_timeout",
        default=800,
        min=0,
        mutable=True,
        help="""
Time a live migration may take, in seconds per GiB of data, before
``live_migration_timeout_action`` is taken.

Scaled like the downtime delay (RAM plus copied disks, each at least 2 GiB):
the default gives a 4 GiB guest 3200 s.  Read again on every monitor pass, so
a configuration reload applies to running migrations.  Never applied once a
migration is in post-copy.

Possible values:

* 0: no timeout
* a positive integer: seconds per GiB

Related options:

* ``live_migration_timeout_action``
""",
    ),
    cfg.StrOpt(
        "live_migration_timeout_action",
        default="abort",
        choices=(
            ("abort", "Cancel the migration; the guest keeps running on the source."),
            (
                "force_complete",
                "Switch to post-copy when it is permitted, otherwise pause the guest "
                "so the copy can finish.",
            ),
        ),
        mutable=True,
        help="""
What to do when ``live_migration_completion_timeout`` is reached.

Read again on every monitor pass.

Related options:

* ``live_migration_completion_timeout``, ``live_migration_permit_post_copy``
""",
    ),
    cfg.IntOpt(
        "live_migration_postcopy_recovery_timeout",
        default=600,
        min=0,
        help="""
Seconds to keep trying to resume a post-copy migration whose network failed.

After the switch to post-copy the guest runs on the destination while its
remaining memory is pulled from the source, so a broken link pauses the
guest instead of rolling it back.  With libvirt 8.5 or newer migrator resumes
the post-copy (``VIR_MIGRATE_POSTCOPY_RESUME``) as soon as the hosts can reach
each other again, retrying for this long.  If it cannot, the outcome is
``postcopy_failed`` and the operator must repair the link and resume it (for
example ``virsh migrate --postcopy --postcopy-resume``).

Possible values:

* 0: never resume automatically
* a positive integer: seconds

Related options:

* ``live_migration_permit_post_copy``
""",
    ),
    cfg.IntOpt(
        "live_migration_establish_timeout",
        default=600,
        min=0,
        help="""
Seconds the monitor keeps trying to establish where a guest runs when libvirt
cannot tell yet.

A peer-to-peer migration goes on inside the source libvirt when this service
loses its connection to it, and a job may go on after the monitor gave up on
it.  Until the source shows the job over (or the destination, when the caller
gave a way to reach it, shows the guest running) nothing is settled: the
monitor looks again with backoff, follows the job again when it can be read,
and settles when the facts are clear.  When this many seconds pass without
them, the outcome is ``unknown``: the caller must not roll back (the guest may
run on either host) and the outcome says what to check.

Possible values:

* 0: settle ``unknown`` as soon as the facts cannot be had
* a positive integer: seconds

Related options:

* ``live_migration_completion_timeout``
""",
    ),
    cfg.IntOpt(
        "live_migration_monitor_interval",
        default=5,
        min=1,
        help="""
Seconds between two progress reports of a running migration.

Possible values:

* an integer of at least 1
""",
    ),
    cfg.StrOpt(
        "live_migration_convergence",
        default="steps",
        choices=(
            (
                "steps",
                "Nova's policy: raise the max downtime on a fixed clock "
                "(live_migration_downtime_delay per GiB) and act at the completion timeout.",
            ),
            (
                "adaptive",
                "Judge progress at pass boundaries from the job stats: set the downtime the "
                "next switchover needs, and act at once on a stall (post-copy, auto-converge "
                "or an early abort that says what would help).",
            ),
        ),
        help="""
How the monitor steers a running migration to convergence.

Both policies honour the same limits: ``live_migration_downtime`` is the
ceiling, the completion timeout and its action still apply, and post-copy and
auto-converge are used only when permitted.

Related options:

* ``live_migration_downtime``, ``live_migration_completion_timeout``,
  ``live_migration_permit_post_copy``, ``live_migration_permit_auto_converge``
""",
    ),
    cfg.BoolOpt(
        "live_migration_refuse_predicted_failure",
        default=False,
        help="""
Refuse to start a live migration that its prediction says cannot complete.

The prediction is the one the caller passes with the migration (the
``prediction`` argument, e.g. from ``LiveMigrationDriver.predict()``, which
measures the guest's dirty rate for a few seconds): under these options, with
this policy, link and timeout.  A refused migration starts nothing and says
why and which options would make it complete.  Without a prediction the
migration starts as usual.

Related options:

* ``live_migration_permit_post_copy``, ``live_migration_permit_auto_converge``,
  ``live_migration_downtime``, ``live_migration_bandwidth``
""",
    ),
]

default_opts = [
    cfg.IntOpt(
        "max_concurrent_live_migrations",
        default=1,
        min=1,
        help="""
Number of live migrations this host runs at the same time as a source.

Further migrations wait in a queue (first come, first served) and can be
cancelled while they wait without touching libvirt.

Possible values:

* an integer of at least 1
""",
    ),
]
