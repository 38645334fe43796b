"""Options of the ``[libvirt]`` group (and ``[DEFAULT]`` concurrency), Nova-compatible.

Names, types, defaults and bounds match Nova's, so an existing nova.conf keeps
its meaning; where Nova accepts values that break the migration (a monitor
interval of 0, a negative bandwidth) migrator sets a bound instead.  The
options migrator adds (tri-state tunnelling, vetted extra flags, the deprecated
flag lists that old nova.conf files still carry, the convergence policy) are
described in their help text.

A compute service calls :func:`register_opts` on its own ``ConfigOpts``;
``oslo-config-generator --namespace migrator`` uses :func:`list_opts`.
"""

from __future__ import annotations

from oslo_config import cfg, iniparser

from migrator import uri

libvirt_group = cfg.OptGroup(
    "libvirt",
    title="Libvirt options",
    help="Options for live migration of libvirt/KVM guests (Nova-compatible names).",
)

_FLAG_LIST_DEPRECATION = """
Nova replaced the flag lists with dedicated options in Newton.  migrator still
reads them so old configuration files keep working, and logs exactly what it
changed and what to write instead.
"""

libvirt_opts = [
    cfg.StrOpt(
        "virt_type",
        default="kvm",
        choices=("kvm", "qemu", "lxc", "parallels"),
        help="""
Libvirt domain type of the guests on this host.

migrator live-migrates ``kvm`` and ``qemu`` guests; ``lxc`` and ``parallels``
are accepted so that an existing nova.conf parses, but a live migration plan
for them is refused with an error.

Possible values:

* ``kvm``: QEMU with hardware acceleration (the usual case)
* ``qemu``: QEMU with software emulation (TCG)
* ``lxc``, ``parallels``: not live-migrated by migrator
""",
    ),
    cfg.StrOpt(
        "live_migration_scheme",
        help="""
URI scheme of the libvirt control connection to the destination.

The control URI is ``qemu+<scheme>://<destination>/system``.  When unset,
``tcp`` is used.  ``tls``, ``ssh``, ``libssh`` and ``libssh2`` encrypt the
control channel; with ``live_migration_tunnelled`` unset (auto), choosing one
of them also tunnels the migration data through libvirtd unless native TLS is
on, so the data does not travel in the clear beside an encrypted control
channel.

Possible values:

* unset: ``tcp``
* ``tcp``, ``tls``, ``ssh``, ``libssh`` or ``libssh2``; ``unix`` and ``ext``
  are refused: they cannot reach another host (libvirt refuses a unix socket
  with a remote host, and ``ext`` ignores the host)

Related options:

* ``live_migration_uri``: when set, it wins and this option is ignored
* ``live_migration_with_native_tls``: set the scheme to ``tls`` with it, or the
  control channel stays plain TCP (migrator warns)
* ``live_migration_tunnelled``
""",
    ),
    cfg.HostDomainOpt(
        "live_migration_inbound_addr",
        help="""
IP address or host name on which this host receives live migrations.

Read on the **destination**, which sends it to the source (Nova's
``migrate_data.target_connect_addr``).  It replaces the host name in the
control URI and, unless the migration is tunnelled, becomes the data URI
``tcp://<address>``, so migration traffic can use a separate network.  IPv6
addresses are bracketed in URIs automatically.

Possible values:

* unset: the destination's host name is used for the control URI and libvirt
  picks the data address
* an IPv4 or IPv6 address, or a host name

Related options:

* ``live_migration_tunnelled``: a tunnelled migration sends no data URI
* ``live_migration_with_native_tls``: the certificate is checked against the
  destination's host name (``tls.destination``), not this address
""",
    ),
    cfg.StrOpt(
        "live_migration_uri",
        secret=True,  # it may carry a password: never logged by log_opt_values
        deprecated_for_removal=True,
        deprecated_since="15.0.0",
        deprecated_reason="""
live_migration_uri is replaced by live_migration_scheme (the transport) and
live_migration_inbound_addr (the address).  A full URI template also hides
credentials in the configuration; use libvirt's own authentication instead.
""",
        help="""
Template of the control URI; ``%s`` is replaced by the destination address.

Example: ``qemu+ssh://%s/system``.  When set, it wins over
``live_migration_scheme``.  The template must contain exactly one ``%s``, in
the host part, use the ``qemu`` driver and the ``/system`` path.  Without a
``+transport`` (``qemu://%s/system``) libvirt uses TLS, and migrator treats the
control channel as encrypted.

The source libvirtd opens this URI for every migration, so migrator refuses,
at start-up, what libvirt refuses and what would weaken or redirect the
connection: the ``unix`` and ``ext`` transports and the query parameters
``name``, ``command``, ``netcat``, ``socket``, ``no_verify`` (non-zero) and
``known_hosts_verify`` (``auto``, ``ignore``).  It accepts, with a warning
saying what they do, ``keyfile``, ``known_hosts``, ``pkipath``, ``sshauth``,
``tls_priority``, ``auth``, ``authfile``, ``no_sanity``, ``mode``, ``proxy``,
any parameter libvirt does not know, and a password (libvirt takes none from
a URI: it reads ``user:password`` as the user name).  Credentials in the
template are never logged or printed: the value is secret, and the password
is masked wherever the URI is shown.

Related options:

* ``live_migration_scheme``, ``live_migration_inbound_addr``: use these instead
""",
    ),
    cfg.BoolOpt(
        "live_migration_tunnelled",
        default=None,
        help="""
Tunnel the migration data through the libvirt daemons (``VIR_MIGRATE_TUNNELLED``).

A tri-state option:

* unset (auto, the default): tunnel only when the control channel is encrypted
  (``live_migration_scheme`` or the URI template is tls/ssh) and native TLS is
  off.  Auto never tunnels with native TLS, for block migration, with
  parallel connections or with post-copy permitted.
* ``true``: always tunnel.  Tunnelled data is copied by libvirtd (slower, about
  2 Gbit/s), cannot carry block migration of disks, and cannot be combined
  with native TLS, post-copy or parallel connections: those combinations are
  refused at start-up.
* ``false``: never tunnel.

Related options:

* ``live_migration_with_native_tls``: the better way to encrypt the data
* ``live_migration_scheme``, ``live_migration_permit_post_copy``,
  ``live_migration_parallel_connections``
""",
    ),
    cfg.BoolOpt(
        "live_migration_with_native_tls",
        default=False,
        help="""
Encrypt the migration data with QEMU's native TLS (``VIR_MIGRATE_TLS``).

Covers memory, device state and the NBD disk copies of block migration.  Every
host needs a CA and host certificates in ``/etc/pki/qemu``.  When the data goes
to an inbound address, migrator passes ``tls.destination`` = the destination
host name so the certificate check matches.

Related options:

* ``live_migration_scheme``: set it to ``tls`` too, or the libvirt control
  channel stays plain TCP
* ``live_migration_tunnelled``: ``true`` together with this option is refused
""",
    ),
    cfg.IntOpt(
        "live_migration_bandwidth",
        default=0,
        min=0,
        max=8796093022207,  # libvirt's limit for QEMU (QEMU_DOMAIN_MIG_BANDWIDTH_MAX)
        help="""
Maximum bandwidth of a live migration, in MiB/s.

Always passed as the ``bandwidth`` parameter of ``migrateToURI3``.

Possible values:

* 0: the hypervisor decides (no limit with current QEMU)
* a positive integer: the limit in MiB/s
""",
    ),
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
    cfg.BoolOpt(
        "live_migration_permit_post_copy",
        default=False,
        help="""
Permit post-copy migration (``VIR_MIGRATE_POSTCOPY``).

The migration starts in pre-copy; a force-complete (on demand, by the timeout
action, or by the ``adaptive`` policy on a stall) then switches to post-copy:
the guest runs on the destination and pulls the remaining memory.  Post-copy
always completes in bounded time, but a network failure during it pauses the
guest on the destination (migrator then tries to resume the post-copy).

Dropped for one migration, with the reason in the plan, when the guest is
paused or has VFIO/mdev or vPMEM devices.  Wins over auto-converge.

Related options:

* ``live_migration_permit_auto_converge``: not used when post-copy is
* ``live_migration_parallel_connections``: needs QEMU 10.1 with post-copy
* ``live_migration_tunnelled``: ``true`` together with this option is refused
""",
    ),
    cfg.BoolOpt(
        "live_migration_permit_auto_converge",
        default=False,
        help="""
Permit auto-converge (``VIR_MIGRATE_AUTO_CONVERGE``): QEMU slows the guest's
vCPUs when the migration does not converge.

Not used when post-copy is used for the migration (the plan says so with a
warning); used instead of post-copy for a running guest whose devices forbid
post-copy.

Related options:

* ``live_migration_permit_post_copy``
""",
    ),
    cfg.IntOpt(
        "live_migration_parallel_connections",
        default=1,
        min=1,
        max=255,  # QEMU's multifd-channels is 8 bits wide
        help="""
Number of parallel connections (QEMU multifd) that carry the migration data.

A value above 1 adds ``VIR_MIGRATE_PARALLEL`` and the ``parallel.connections``
parameter.  Each connection can use a whole CPU core.

Possible values:

* 1: one connection (no ``PARALLEL`` flag)
* an integer above 1

Related options:

* ``live_migration_permit_post_copy``: together they need QEMU 10.1 or newer
* ``live_migration_tunnelled``: ``true`` together with this is refused
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
    cfg.ListOpt(
        "live_migration_extra_flags",
        default=[],
        help="""
Extra ``VIR_MIGRATE_*`` flags to add to every live migration.

Names may be given with or without the ``VIR_MIGRATE_`` prefix.  Each is
checked against the host's libvirt version and libvirt's rules at start-up.
Flags that migrator decides itself (LIVE, PEER2PEER, TUNNELLED, PERSIST_DEST,
UNDEFINE_SOURCE, PAUSED, NON_SHARED_DISK, NON_SHARED_INC, UNSAFE, OFFLINE,
POSTCOPY, POSTCOPY_RESUME, TLS, PARALLEL, AUTO_CONVERGE, CHANGE_PROTECTION)
are refused with the option to use instead.

Possible values:

* ``COMPRESSED``: compress memory pages (xbzrle); not with parallel connections
* ``ABORT_ON_ERROR``: cancel the migration on a soft I/O error
* ``ZEROCOPY``: zero-copy send; needs ``live_migration_parallel_connections`` > 1
* ``NON_SHARED_SYNCHRONOUS_WRITES``: block migration only (left out of other
  migrations)

Related options:

* ``live_migration_parallel_connections``
""",
    ),
    cfg.ListOpt(
        "live_migration_flag",
        deprecated_for_removal=True,
        deprecated_since="13.0.0",
        deprecated_reason=_FLAG_LIST_DEPRECATION,
        help="""
Old comma-separated list of ``VIR_MIGRATE_*`` flags for live migrations that
copy no disks (as in Nova before Newton; block migrations read
``block_migration_flag``).

Flags migrator decides itself or that are unsafe are dropped; ``TUNNELLED``
tunnels these migrations while ``live_migration_tunnelled`` is unset; the rest
are added to these migrations like ``live_migration_extra_flags``.

Related options:

* ``live_migration_tunnelled``, ``live_migration_extra_flags``: use these
""",
    ),
    cfg.ListOpt(
        "block_migration_flag",
        deprecated_for_removal=True,
        deprecated_since="13.0.0",
        deprecated_reason=_FLAG_LIST_DEPRECATION,
        help="""
Old comma-separated list of ``VIR_MIGRATE_*`` flags for block migrations.

Read like ``live_migration_flag``, for block migrations only.  ``TUNNELLED``
here (Nova's old default) refuses each block migration, with the reason,
while ``live_migration_tunnelled`` is unset: libvirt cannot tunnel the disk
copies.  Remove it; ``live_migration_with_native_tls`` encrypts block
migrations.

Related options:

* ``live_migration_tunnelled``, ``live_migration_extra_flags``: use these
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

ALL_LIBVIRT_OPTS = libvirt_opts


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register migrator's options on ``conf`` (a compute service's own CONF).

    Options the service has registered already under the same name are left
    alone and their values are read: Nova registers 16 of the ``[libvirt]``
    options and ``max_concurrent_live_migrations`` itself (same names and
    defaults, its own help text), and oslo.config refuses a second definition.
    Only what the service lacks is added.  Values read from the service's
    options are still checked against migrator's bounds by :func:`read_values`.

    oslo.config keeps option values and overrides on the ``OptGroup`` object, so
    each ``ConfigOpts`` gets its own group: two configurations in one process
    (a service and a test, or two tests) never share state.
    """
    group = cfg.OptGroup(libvirt_group.name, title=libvirt_group.title, help=libvirt_group.help)
    conf.register_group(group)  # a no-op when the service has the group already
    for group_name, opts in list_missing_opts(conf):
        conf.register_opts(opts, group=None if group_name == "DEFAULT" else group_name)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    """Options for ``oslo-config-generator --namespace migrator``."""
    return [("DEFAULT", list(default_opts)), (libvirt_group.name, list(ALL_LIBVIRT_OPTS))]


def list_missing_opts(conf: cfg.ConfigOpts) -> list[tuple[str, list[cfg.Opt]]]:
    """Like :func:`list_opts`, without the options ``conf`` already has.

    For a service that registers some of the same options itself: its sample
    configuration then lists each option once (see ``migrator.nova.opts``).
    """
    missing = []
    for group_name, opts in list_opts():
        have = conf if group_name == "DEFAULT" else (
            conf[group_name] if group_name in conf else {})
        missing.append((group_name, [o for o in opts if o.dest not in have]))
    return missing


def _fix_hint(opt: cfg.Opt) -> str:
    """How to write a valid value for ``opt``, for error messages."""
    typ = opt.type
    default = "" if opt.default is None else f" (default {opt.default})"
    choices = getattr(typ, "choices", None)
    if choices:
        return f"use one of: {', '.join(str(c) for c in choices)}{default}"
    if isinstance(typ, cfg.types.Boolean):
        return "use true or false, or remove the line for the default"
    if isinstance(typ, cfg.types.Integer):
        bounds = []
        if typ.min is not None:
            bounds.append(f"at least {typ.min}")
        if typ.max is not None:
            bounds.append(f"at most {typ.max}")
        return f"use a whole number{' ' + ' and '.join(bounds) if bounds else ''}{default}"
    if isinstance(typ, cfg.types.HostDomain):
        return "use a host name, an IPv4 or an IPv6 address"
    return "see the option's help in etc/migrator.conf.sample"


def _explain(group: str, opt: cfg.Opt, exc: Exception) -> str:
    """One line for a bad value, quoting it only when that is safe and short."""
    text = str(exc)
    where = ""
    if "detail='" in text:
        where = " in " + text.split("detail='", 1)[1].split("'", 1)[0]
    if opt.secret:  # its value may hold a password: not a character of it is shown
        reason = "the value is not valid (not shown: the option is secret)"
    else:
        reason = uri.mask_text(text.split("is not valid: ", 1)[-1])
        if len(reason) > 200:  # a huge bad value must not come back whole
            reason = reason[:150] + f"... ({len(reason)} characters)"
    return f"[{group}] {opt.dest}{where}: {reason}; {_fix_hint(opt)}"


def _explain_dollar(group: str, opt: cfg.Opt, exc: Exception) -> str:
    """oslo.config reads ``$name`` in a value as a reference to another option."""
    # oslo's message names the text after the '$': part of a password, for a secret option
    detail = "" if opt.secret else f" ({uri.mask_text(str(exc))[:120]})"
    return (
        f"[{group}] {opt.dest}: the value contains '$', which oslo.config reads as a "
        f"reference to another option{detail}; write '$$' for a literal '$'"
    )


def describe_parse_error(exc: cfg.ConfigFileParseError) -> str:
    """The file, line and reason of an ini syntax error, without the line itself.

    oslo.config quotes the offending line, which may be a credential (a
    ``live_migration_uri`` continued on an indented line, say); the line
    number is enough to find it.
    """
    cause = exc.__context__
    if isinstance(cause, iniparser.ParseError):
        return (f"config file {exc.config_file} near line {cause.lineno} is not valid ini: "
                f"{cause.msg}")
    return f"config file {exc.config_file} is not a valid ini file"


def read_values(conf: cfg.ConfigOpts) -> dict[str, object]:
    """Every ``[libvirt]`` value, or :class:`ConfigError` with one line per bad value.

    oslo.config only validates a value when it is read; reading them all here
    reports every problem at once instead of the first one mid-migration.
    """
    from migrator import exception

    values: dict[str, object] = {}
    problems: list[str] = []
    for group, opts in ((conf.libvirt, ALL_LIBVIRT_OPTS), (conf, default_opts)):
        name = "libvirt" if group is conf.libvirt else "DEFAULT"
        for opt in opts:
            try:
                values[opt.dest] = getattr(group, opt.dest)
                if name == "libvirt" and values[opt.dest] is not None:
                    # the service's own option (Nova's) may allow values that break a
                    # migration (a monitor interval of 0): migrator's bounds apply
                    opt.type(values[opt.dest])
            except (cfg.ConfigFileValueError, ValueError) as exc:
                problems.append(_explain(name, opt, exc))
            except (cfg.TemplateSubstitutionError, cfg.NoSuchOptError) as exc:
                problems.append(_explain_dollar(name, opt, exc))
    if problems:
        raise exception.ConfigError(problems)
    return values


def load(conf: cfg.ConfigOpts):
    """(flags.Options, virt_type, all values) from a registered, parsed ``conf``.

    Raises :class:`~migrator.exception.ConfigError` listing every bad value.
    """
    from migrator import flags

    values = read_values(conf)
    return flags.Options.from_values(values), str(values["virt_type"]), values
