"""The checks libvirt 9.0 runs on ``migrateToURI3``, in its order, as pure functions.

Each check returns the :class:`~migrator.testing.errors.ErrorSpec` libvirt
would raise, or None.  The stages follow the code path of a peer-to-peer
migration: the client library (``libvirt-domain.c``), the QEMU driver's
parameter parsing (``qemu_migration_params.c``), the P2P perform step, then
the Begin phase on the source (``qemuMigrationSrcBeginPhase``), which runs
after the source daemon has connected to the destination.  A plan that
libvirt refuses is refused here with the same code, domain and message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from migrator import constants
from migrator.testing import errors as E
from migrator.testing.errors import ErrorSpec

Version = tuple[int, int, int]

# Parameters libvirt accepts that migrator.constants does not list (the
# library never sends them); "since" from libvirt's headers.
_EXTRA_PARAMS: dict[str, tuple[str, Version]] = {
    "compression.mt.level": ("int", (1, 3, 4)),
    "compression.mt.threads": ("int", (1, 3, 4)),
    "compression.mt.dthreads": ("int", (1, 3, 4)),
    "compression.xbzrle.cache": ("ullong", (1, 3, 4)),
    "compression.zlib.level": ("int", (9, 4, 0)),
    "compression.zstd.level": ("int", (9, 4, 0)),
    "migrate_disks_detect_zeroes": ("multi-string", (10, 9, 0)),
}

_STORAGE = constants.VIR_MIGRATE_NON_SHARED_DISK | constants.VIR_MIGRATE_NON_SHARED_INC
_COMPRESSION_METHODS: dict[str, Version] = {
    "xbzrle": (1, 3, 4),
    "mt": (1, 3, 4),
    "zlib": (9, 4, 0),
    "zstd": (9, 4, 0),
}


@dataclass(frozen=True)
class DomainFacts:
    """What the Begin phase looks at on the source domain."""

    name: str
    active: bool
    paused: bool
    disks: tuple[tuple[str, bool], ...]  # (target, shared) for each disk


def _param_type(key: str, version: Version) -> str | None:
    info = constants.MIGRATE_PARAMS.get(key)
    if info is not None:
        return info.type if info.since <= version else None
    extra = _EXTRA_PARAMS.get(key)
    if extra is not None and extra[1] <= version:
        return extra[0]
    return None


def _check_value(key: str, kind: str, value: Any) -> None:
    """libvirt-python refuses values of the wrong type before calling libvirt."""
    if kind in ("int", "ullong"):
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and kind == "ullong" and value < 0:
            raise OverflowError(f"migration parameter {key!r} must be >= 0, got {value}")
    elif kind == "string":
        ok = isinstance(value, str)
    else:  # multi-string
        ok = isinstance(value, str) or (
            isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        )
    if not ok:
        raise TypeError(f"migration parameter {key!r} must be {kind}, got {value!r}")


def multi(params: Mapping[str, Any], key: str) -> list[str]:
    """A multi-string parameter as a list (libvirt-python takes a str or a list)."""
    value = params.get(key)
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def check_client(flags: int, dconnuri: str | None) -> ErrorSpec | None:
    """virDomainMigrateToURI3 in the client library (domain VIR_FROM_DOMAIN)."""
    both = constants.VIR_MIGRATE_NON_SHARED_DISK | constants.VIR_MIGRATE_NON_SHARED_INC
    if flags & both == both:
        return E.spec(
            constants.VIR_ERR_INVALID_ARG,
            constants.VIR_FROM_DOMAIN,
            "Flags 'VIR_MIGRATE_NON_SHARED_DISK' and 'VIR_MIGRATE_NON_SHARED_INC' "
            "are mutually exclusive",
        )
    if not flags & constants.VIR_MIGRATE_PEER2PEER:
        return E.spec(
            constants.VIR_ERR_ARGUMENT_UNSUPPORTED,
            constants.VIR_FROM_DOMAIN,
            "direct migration is not supported by the source host",
        )
    server = urlsplit(dconnuri or "").hostname or ""
    if not server or server.startswith("localhost"):
        return E.spec(
            constants.VIR_ERR_INVALID_ARG,
            constants.VIR_FROM_DOMAIN,
            "Attempt to migrate guest to the same host",
        )
    return None


def check_driver(flags: int, params: Mapping[str, Any], version: Version) -> ErrorSpec | None:
    """qemuDomainMigratePerform3Params: flags, parameter names/types, params vs flags."""
    known = 0
    for info in constants.MIGRATE_FLAGS.values():
        if info.since <= version:
            known |= info.bit
    if flags & ~known:
        return E.spec(
            constants.VIR_ERR_INVALID_ARG,
            constants.VIR_FROM_QEMU,
            f"unsupported flags (0x{flags & ~known:x}) in function qemuDomainMigratePerform3Params",
        )
    for key, value in params.items():
        kind = _param_type(key, version)
        if kind is None:
            return E.spec(
                constants.VIR_ERR_ARGUMENT_UNSUPPORTED,
                constants.VIR_FROM_NONE,
                f"parameter '{key}' not supported",
            )
        _check_value(key, kind, value)
    if flags & constants.VIR_MIGRATE_TUNNELLED and flags & constants.VIR_MIGRATE_PARALLEL:
        return E.spec(
            constants.VIR_ERR_INVALID_ARG,
            constants.VIR_FROM_QEMU,
            "Flags 'VIR_MIGRATE_TUNNELLED' and 'VIR_MIGRATE_PARALLEL' are mutually exclusive",
        )
    return _check_params_from_flags(flags, params, version)


def _check_params_from_flags(
    flags: int, params: Mapping[str, Any], version: Version
) -> ErrorSpec | None:
    """qemuMigrationParamsFromFlags / qemuMigrationParamsSetCompression."""
    ac_keys = (
        constants.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL,
        constants.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT,
    )
    if any(k in params for k in ac_keys) and not flags & constants.VIR_MIGRATE_AUTO_CONVERGE:
        return E.spec(
            constants.VIR_ERR_INVALID_ARG,
            constants.VIR_FROM_QEMU,
            "Turn auto convergence on to tune it",
        )
    if (
        constants.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS in params
        and not flags & constants.VIR_MIGRATE_PARALLEL
    ):
        return E.spec(
            constants.VIR_ERR_INVALID_ARG,
            constants.VIR_FROM_QEMU,
            "Turn parallel migration on to tune it",
        )
    methods: list[str] = []
    for method in multi(params, constants.VIR_MIGRATE_PARAM_COMPRESSION):
        since = _COMPRESSION_METHODS.get(method)
        if since is None or since > version:
            return E.spec(
                constants.VIR_ERR_INVALID_ARG,
                constants.VIR_FROM_QEMU,
                f"Unsupported compression method '{method}'",
            )
        if method in methods:
            return E.spec(
                constants.VIR_ERR_INVALID_ARG,
                constants.VIR_FROM_QEMU,
                f"Compression method '{method}' is specified twice",
            )
        methods.append(method)
    if any(k.startswith("compression.mt.") for k in params) and "mt" not in methods:
        return E.spec(
            constants.VIR_ERR_INVALID_ARG,
            constants.VIR_FROM_QEMU,
            "Turn multithread compression on to tune it",
        )
    if "compression.xbzrle.cache" in params and "xbzrle" not in methods:
        return E.spec(
            constants.VIR_ERR_INVALID_ARG,
            constants.VIR_FROM_QEMU,
            "Turn xbzrle compression on to tune it",
        )
    return None


def check_p2p(flags: int, params: Mapping[str, Any]) -> ErrorSpec | None:
    """qemuMigrationSrcPerformPeer2Peer, before it connects to the destination."""
    if not flags & constants.VIR_MIGRATE_TUNNELLED:
        return None
    if params.get(constants.VIR_MIGRATE_PARAM_URI):
        return E.spec(
            constants.VIR_ERR_ARGUMENT_UNSUPPORTED,
            constants.VIR_FROM_QEMU,
            "migration URI is not supported by tunnelled migration",
        )
    if params.get(constants.VIR_MIGRATE_PARAM_LISTEN_ADDRESS):
        return E.spec(
            constants.VIR_ERR_ARGUMENT_UNSUPPORTED,
            constants.VIR_FROM_QEMU,
            "listen address is not supported by tunnelled migration",
        )
    if params.get(constants.VIR_MIGRATE_PARAM_DISKS_PORT):
        return E.spec(
            constants.VIR_ERR_ARGUMENT_UNSUPPORTED,
            constants.VIR_FROM_QEMU,
            "disk port address is not supported by tunnelled migration",
        )
    return None


def migrated_disks(
    flags: int, params: Mapping[str, Any], disks: Iterable[tuple[str, bool]]
) -> list[str]:
    """Targets libvirt copies: the listed ones, else every non-shared disk."""
    if not flags & (constants.VIR_MIGRATE_NON_SHARED_DISK | constants.VIR_MIGRATE_NON_SHARED_INC):
        return []
    listed = multi(params, constants.VIR_MIGRATE_PARAM_MIGRATE_DISKS)
    if listed:
        return listed
    return [target for target, shared in disks if not shared]


def check_tls_force(flags: int, forced: bool) -> ErrorSpec | None:
    """qemuMigrationSrcBegin: qemu.conf's migrate_tls_force demands VIR_MIGRATE_TLS."""
    if forced and not flags & (constants.VIR_MIGRATE_TUNNELLED | constants.VIR_MIGRATE_TLS):
        return E.spec(
            constants.VIR_ERR_OPERATION_INVALID,
            constants.VIR_FROM_QEMU,
            "this libvirtd instance allows migration only with VIR_MIGRATE_TLS flag",
        )
    return None


def _begin_state(flags: int, params: Mapping[str, Any], dom: DomainFacts) -> ErrorSpec | None:
    """The domain must run, unless the migration is offline."""
    if not flags & constants.VIR_MIGRATE_OFFLINE and not dom.active:
        return E.domain_not_running()
    return None


def _begin_unsafe(flags: int, params: Mapping[str, Any], dom: DomainFacts) -> ErrorSpec | None:
    """Every local disk must be copied (or UNSAFE / OFFLINE given)."""
    if flags & (constants.VIR_MIGRATE_UNSAFE | constants.VIR_MIGRATE_OFFLINE):
        return None
    copied = set(migrated_disks(flags, params, dom.disks))
    for target, shared in dom.disks:
        if not shared and target not in copied:
            return E.spec(
                E.VIR_ERR_MIGRATE_UNSAFE,
                constants.VIR_FROM_QEMU,
                "Migration without shared storage is unsafe",
            )
    return None


def _begin_post_copy(flags: int, params: Mapping[str, Any], dom: DomainFacts) -> ErrorSpec | None:
    """Post-copy needs a live, running, untunnelled migration."""
    if not flags & constants.VIR_MIGRATE_POSTCOPY:
        return None
    # P2P adds VIR_MIGRATE_PAUSED for a guest paused before the migration
    # (that is why a paused guest cannot use post-copy).
    paused = bool(flags & constants.VIR_MIGRATE_PAUSED) or dom.paused
    if not flags & constants.VIR_MIGRATE_LIVE or paused:
        return E.spec(
            constants.VIR_ERR_ARGUMENT_UNSUPPORTED,
            constants.VIR_FROM_QEMU,
            "post-copy migration is not supported with non-live or paused migration",
        )
    if flags & constants.VIR_MIGRATE_TUNNELLED:
        return E.spec(
            constants.VIR_ERR_ARGUMENT_UNSUPPORTED,
            constants.VIR_FROM_QEMU,
            "post-copy is not supported with tunnelled migration",
        )
    return None


def _begin_offline(flags: int, params: Mapping[str, Any], dom: DomainFacts) -> ErrorSpec | None:
    """An offline migration copies no storage, persists the domain and is not tunnelled."""
    if not flags & constants.VIR_MIGRATE_OFFLINE:
        return None
    if flags & _STORAGE:
        message = "offline migration cannot handle non-shared storage"
    elif not flags & constants.VIR_MIGRATE_PERSIST_DEST:
        message = "offline migration must be specified with the persistent flag set"
    elif flags & constants.VIR_MIGRATE_TUNNELLED:
        message = "tunnelled offline migration does not make sense"
    else:
        return None
    return E.spec(constants.VIR_ERR_OPERATION_INVALID, constants.VIR_FROM_QEMU, message)


def _begin_zerocopy(flags: int, params: Mapping[str, Any], dom: DomainFacts) -> ErrorSpec | None:
    if flags & constants.VIR_MIGRATE_ZEROCOPY and not flags & constants.VIR_MIGRATE_PARALLEL:
        return E.spec(
            constants.VIR_ERR_OPERATION_INVALID,
            constants.VIR_FROM_QEMU,
            "zero-copy is only available for parallel migration",
        )
    return None


def _begin_disks(flags: int, params: Mapping[str, Any], dom: DomainFacts) -> ErrorSpec | None:
    """migrate_disks: only with NON_SHARED_*, untunnelled, naming disks the domain has."""
    listed = multi(params, constants.VIR_MIGRATE_PARAM_MIGRATE_DISKS)
    if not flags & _STORAGE:
        if listed:
            return E.spec(
                constants.VIR_ERR_OPERATION_UNSUPPORTED,
                constants.VIR_FROM_QEMU,
                "use of 'VIR_MIGRATE_PARAM_MIGRATE_DISKS' requires use of "
                "'VIR_MIGRATE_NON_SHARED_DISK' or 'VIR_MIGRATE_NON_SHARED_INC' flag",
            )
        return None
    if flags & constants.VIR_MIGRATE_TUNNELLED:
        return E.spec(
            constants.VIR_ERR_OPERATION_UNSUPPORTED,
            constants.VIR_FROM_QEMU,
            "migration of non-shared storage is not supported with tunnelled migration "
            "and this QEMU",
        )
    targets = {t for t, _ in dom.disks}
    for target in listed:
        if target not in targets:
            return E.spec(
                constants.VIR_ERR_INVALID_ARG,
                constants.VIR_FROM_QEMU,
                f"disk target {target} not found",
            )
    return None


# qemuMigrationSrcBeginPhase's checks (and the state checks before it), in libvirt's order.
BEGIN_CHECKS = (
    _begin_state,
    _begin_unsafe,
    _begin_post_copy,
    _begin_offline,
    _begin_zerocopy,
    _begin_disks,
)


def check_begin(flags: int, params: Mapping[str, Any], dom: DomainFacts) -> ErrorSpec | None:
    """qemuMigrationSrcBeginPhase: the first of :data:`BEGIN_CHECKS` that refuses."""
    for check in BEGIN_CHECKS:
        spec = check(flags, params, dom)
        if spec is not None:
            return spec
    return None


def check_throttle_params(params: Mapping[str, Any]) -> ErrorSpec | None:
    """QEMU's range check on cpu-throttle-initial/-increment (1..99)."""
    for key, qemu_name in (
        (constants.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL, "cpu_throttle_initial"),
        (constants.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT, "cpu_throttle_increment"),
    ):
        value = params.get(key)
        if value is not None and not 1 <= value <= 99:
            # unverified wording (QEMU's QMP error, wrapped by libvirt)
            return E.spec(
                constants.VIR_ERR_INTERNAL_ERROR,
                constants.VIR_FROM_QEMU,
                "unable to execute QEMU command 'migrate-set-parameters': Parameter "
                f"'{qemu_name}' expects an integer in the range of 1 to 99",
            )
    return None


def check_resume(flags: int, name: str, in_postcopy: bool, failed: bool) -> ErrorSpec | None:
    """qemuMigrationAnyCanResume for VIR_MIGRATE_POSTCOPY_RESUME."""
    if not flags & constants.VIR_MIGRATE_POSTCOPY:
        return E.spec(
            constants.VIR_ERR_ARGUMENT_UNSUPPORTED,
            constants.VIR_FROM_QEMU,
            "resuming failed post-copy migration requires post-copy to be enabled",
        )
    if not in_postcopy:
        return E.spec(
            constants.VIR_ERR_OPERATION_INVALID,
            constants.VIR_FROM_QEMU,
            f"migration of domain {name} is not in post-copy phase",
        )
    if not failed:
        return E.spec(
            constants.VIR_ERR_OPERATION_INVALID,
            constants.VIR_FROM_QEMU,
            f"post-copy migration of domain {name} has not failed",
        )
    return None
