"""The options that decide the ``migrateToURI3`` call (:func:`migrator.flags.plan` reads them).

Transport, encryption, bandwidth, post-copy and auto-converge permission, parallel
connections and extra flags, and the deprecated flag lists old nova.conf files carry.
"""

from __future__ import annotations

from oslo_config import cfg

_FLAG_LIST_DEPRECATION = """
Nova replaced the flag lists with dedicated options in Newton.  migrator still
reads them so old configuration files keep working, and logs exactly what it
changed and what to write instead.
"""

plan_opts = [
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
