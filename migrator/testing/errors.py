"""``libvirtError`` and the errors real libvirt 9.0 raises, word for word.

Every message here is what ``get_error_message()`` returns on a real host:
libvirt prefixes the detail with the text of the error code ("Requested
operation is not valid: ...").  The sources are
``/work/shared/real-libvirt/README.md`` §3/§5 (observed) and libvirt's
``qemu_migration.c`` / ``qemu_migration_params.c`` (read); the few that are
neither are marked *unverified*.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from migrator import constants

VIR_ERR_WARNING = 1
VIR_ERR_ERROR = 2
# Not in migrator.constants (the library never reacts to them); values from
# libvirt-python 9.0.
VIR_ERR_INVALID_CONN = 6
VIR_ERR_MIGRATE_UNSAFE = 81

_PREFIX = {
    constants.VIR_ERR_INTERNAL_ERROR: "internal error: ",
    constants.VIR_ERR_NO_SUPPORT: "this function is not supported by the connection driver: ",
    VIR_ERR_INVALID_CONN: "invalid connection pointer in ",
    constants.VIR_ERR_INVALID_ARG: "invalid argument: ",
    constants.VIR_ERR_OPERATION_FAILED: "operation failed: ",
    constants.VIR_ERR_SYSTEM_ERROR: "",
    constants.VIR_ERR_NO_DOMAIN: "Domain not found: ",
    constants.VIR_ERR_OPERATION_INVALID: "Requested operation is not valid: ",
    constants.VIR_ERR_CONFIG_UNSUPPORTED: "unsupported configuration: ",
    constants.VIR_ERR_OPERATION_TIMEOUT: "Timed out during operation: ",
    constants.VIR_ERR_ARGUMENT_UNSUPPORTED: "argument unsupported: ",
    constants.VIR_ERR_OPERATION_ABORTED: "operation aborted: ",
    VIR_ERR_MIGRATE_UNSAFE: "Unsafe migration: ",
    constants.VIR_ERR_OPERATION_UNSUPPORTED: "Operation not supported: ",
}


class libvirtError(Exception):  # noqa: N801 - libvirt's name
    """Same surface as libvirt-python's ``libvirtError``.

    ``libvirtError("msg")`` alone (as user code and mocks build it) has no
    code, like the real class when libvirt has no last error.
    """

    def __init__(
        self,
        defmsg: str,
        code: int | None = None,
        domain: int | None = None,
        level: int = VIR_ERR_ERROR,
    ):
        super().__init__(defmsg)
        self.err: tuple | None = None
        if code is not None:
            self.err = (code, domain, defmsg, level, "", None, None, -1, -1)

    def get_error_code(self) -> int | None:
        return None if self.err is None else self.err[0]

    def get_error_domain(self) -> int | None:
        return None if self.err is None else self.err[1]

    def get_error_message(self) -> str | None:
        return None if self.err is None else self.err[2]

    def get_error_level(self) -> int | None:
        return None if self.err is None else self.err[3]

    def get_str1(self) -> str | None:
        return None if self.err is None else self.err[4]

    def get_str2(self) -> str | None:
        return None if self.err is None else self.err[5]

    def get_str3(self) -> str | None:
        return None if self.err is None else self.err[6]

    def get_int1(self) -> int | None:
        return None if self.err is None else self.err[7]

    def get_int2(self) -> int | None:
        return None if self.err is None else self.err[8]


# registerErrorHandler(f, ctx): libvirt calls f(ctx, err) for every error it reports.
_handler: tuple[Callable[[Any, tuple], object] | None, Any] = (None, None)


def set_handler(f: Callable[[Any, tuple], object] | None, ctx: Any) -> None:
    global _handler
    _handler = (f, ctx)


def get_handler() -> tuple[Callable[[Any, tuple], object] | None, Any]:
    return _handler


@dataclass(frozen=True)
class ErrorSpec:
    """A recipe for a libvirtError; faults keep specs so every raise is a fresh exception."""

    code: int
    domain: int
    message: str  # the full message, prefix included

    def exc(self) -> libvirtError:
        """The exception to raise; the registered error handler sees it first, as in libvirt.

        (Real libvirt prints errors to stderr when no handler is registered;
        the fake stays quiet.)
        """
        err = libvirtError(self.message, self.code, self.domain)
        f, ctx = _handler
        if f is not None:
            try:
                f(ctx, err.err)
            except Exception:  # noqa: BLE001 - libvirt-python ignores a failing handler too
                pass
        return err


def spec(code: int, domain: int, detail: str) -> ErrorSpec:
    """An error with libvirt's prefix for ``code`` put in front of ``detail``."""
    return ErrorSpec(code, domain, _PREFIX.get(code, "") + detail)


def error(code: int, domain: int, detail: str) -> libvirtError:
    return spec(code, domain, detail).exc()


# -- the catalogue --------------------------------------------------------

_MIG_OUT = "migration out"


def domain_not_running() -> ErrorSpec:
    return spec(constants.VIR_ERR_OPERATION_INVALID, constants.VIR_FROM_DOMAIN,
                "domain is not running")


def no_domain_uuid(uuid: str, name: str) -> ErrorSpec:
    return spec(
        constants.VIR_ERR_NO_DOMAIN,
        constants.VIR_FROM_QEMU,
        f"no domain with matching uuid '{uuid}' ({name})",
    )


def no_domain_name(name: str) -> ErrorSpec:
    return spec(constants.VIR_ERR_NO_DOMAIN, constants.VIR_FROM_QEMU,
                f"no domain with matching name '{name}'")


def socket_closed() -> ErrorSpec:
    return spec(constants.VIR_ERR_INTERNAL_ERROR, constants.VIR_FROM_RPC, "client socket is closed")


def connection_refused(host: str, port: int) -> ErrorSpec:
    return spec(
        constants.VIR_ERR_SYSTEM_ERROR,
        constants.VIR_FROM_RPC,
        f"unable to connect to server at '{host}:{port}': Connection refused",
    )


def invalid_connection(function: str) -> ErrorSpec:
    return spec(VIR_ERR_INVALID_CONN, constants.VIR_FROM_NONE, function)


def no_job() -> ErrorSpec:
    return spec(constants.VIR_ERR_OPERATION_INVALID, constants.VIR_FROM_QEMU,
                "no job is active on the domain")


def abort_in_postcopy() -> ErrorSpec:
    return spec(
        constants.VIR_ERR_OPERATION_INVALID,
        constants.VIR_FROM_QEMU,
        "cannot abort migration in post-copy mode",
    )


def abort_incoming() -> ErrorSpec:
    # unverified wording (libvirt's qemuDomainAbortJobFlags)
    return spec(
        constants.VIR_ERR_OPERATION_INVALID,
        constants.VIR_FROM_QEMU,
        "cannot abort incoming migration; use virDomainDestroy instead",
    )


def abort_postcopy_not_in_postcopy() -> ErrorSpec:
    # unverified wording (VIR_DOMAIN_ABORT_JOB_POSTCOPY outside post-copy)
    return spec(
        constants.VIR_ERR_OPERATION_INVALID,
        constants.VIR_FROM_QEMU,
        "current job is not outgoing migration in post-copy mode",
    )


def postcopy_no_job() -> ErrorSpec:
    return spec(
        constants.VIR_ERR_OPERATION_INVALID,
        constants.VIR_FROM_QEMU,
        "post-copy can only be started while outgoing migration is in progress",
    )


def postcopy_not_enabled() -> ErrorSpec:
    # unverified wording
    return spec(
        constants.VIR_ERR_OPERATION_INVALID,
        constants.VIR_FROM_QEMU,
        "switching to post-copy requires migration to be started with VIR_MIGRATE_POSTCOPY flag",
    )


def postcopy_already_started() -> ErrorSpec:
    # unverified wording
    return spec(constants.VIR_ERR_OPERATION_INVALID, constants.VIR_FROM_QEMU,
                "post-copy already started")


def stats_only_on_source() -> ErrorSpec:
    return spec(
        constants.VIR_ERR_OPERATION_UNSUPPORTED,
        constants.VIR_FROM_QEMU,
        "migration statistics are available only on the source host",
    )


def job_canceled() -> ErrorSpec:
    return spec(
        constants.VIR_ERR_OPERATION_ABORTED, constants.VIR_FROM_QEMU,
        f"job '{_MIG_OUT}' canceled by client"
    )


def canceled_before_start() -> ErrorSpec:
    # the wording of the checks before QEMU's migration runs (NBD copy, start)
    return spec(constants.VIR_ERR_OPERATION_ABORTED, constants.VIR_FROM_QEMU,
                f"{_MIG_OUT}: canceled by client")


def failed_in_postcopy() -> ErrorSpec:
    return spec(
        constants.VIR_ERR_OPERATION_FAILED,
        constants.VIR_FROM_QEMU,
        f"job '{_MIG_OUT}' failed in post-copy phase",
    )


def job_failed(reason: str) -> ErrorSpec:
    return spec(constants.VIR_ERR_OPERATION_FAILED, constants.VIR_FROM_QEMU,
                f"job '{_MIG_OUT}' failed: {reason}")


def state_lock_timeout() -> ErrorSpec:
    return spec(
        constants.VIR_ERR_OPERATION_TIMEOUT,
        constants.VIR_FROM_QEMU,
        "cannot acquire state change lock (held by "
        "monitor=remoteDispatchDomainMigratePerform3Params)",
    )


def downtime_out_of_range() -> ErrorSpec:
    # QEMU's QMP error as libvirt wraps it (unverified wording)
    return spec(
        constants.VIR_ERR_INTERNAL_ERROR,
        constants.VIR_FROM_QEMU,
        "unable to execute QEMU command 'migrate-set-parameters': Parameter "
        "'downtime_limit' expects an integer in the range of 0 to 2000 seconds",
    )


def event_loop_missing() -> ErrorSpec:
    return spec(
        constants.VIR_ERR_INTERNAL_ERROR, constants.VIR_FROM_NONE,
        "could not initialize domain event timer"
    )


def tls_credentials_missing() -> ErrorSpec:
    # README §7 reports code 1 and this text; the error domain is unverified
    return spec(
        constants.VIR_ERR_INTERNAL_ERROR,
        constants.VIR_FROM_QEMU,
        "Unable to access credentials /etc/pki/qemu/ca-cert.pem",
    )
