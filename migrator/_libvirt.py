"""Late, swappable access to the ``libvirt`` module.

Only the code that talks to a hypervisor calls :func:`module`; options, flag
rules and ``migrator plan`` work without libvirt-python.  Tests (and users'
test suites, through :class:`migrator.testing.fixture.FakeLibvirtFixture`)
swap in the fake with :func:`use`.
"""

from __future__ import annotations

from types import ModuleType

from migrator import exception

_module: ModuleType | None = None


def module() -> ModuleType:
    """The libvirt module in use, importing libvirt-python on first use."""
    global _module
    if _module is None:
        try:
            import libvirt
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise exception.MigratorError(
                "libvirt-python is not installed; install migrator[libvirt] "
                "(it needs libvirt-dev, pkg-config and a C compiler to build)"
            ) from exc
        _module = libvirt
    return _module


def use(mod: ModuleType | None) -> ModuleType | None:
    """Make ``mod`` the libvirt module; returns the previous one (None: not loaded)."""
    global _module
    previous, _module = _module, mod
    return previous


def error_code(exc: BaseException) -> int | None:
    """libvirt's error code of ``exc`` (a libvirtError, real or fake); None for others."""
    get = getattr(exc, "get_error_code", None)
    return get() if callable(get) else None


def error_message(exc: BaseException) -> str:
    """libvirt's message of ``exc``, or its text."""
    get = getattr(exc, "get_error_message", None)
    return (get() if callable(get) else None) or str(exc)


def connection_lost(exc: BaseException) -> bool:
    """``exc`` says the connection to libvirtd is gone (reconnecting may help)."""
    from migrator import constants

    code = error_code(exc)
    text = error_message(exc).lower()
    return code in (constants.VIR_ERR_SYSTEM_ERROR, constants.VIR_ERR_RPC) or (
        code == constants.VIR_ERR_INTERNAL_ERROR
        and ("socket is closed" in text or "connection" in text)
    )


def shut_off_by_migration(state: int, reason: int) -> bool:
    """A source domain in this state has handed the guest over (kept defined or not)."""
    from migrator import constants

    return state == constants.VIR_DOMAIN_SHUTOFF and reason == constants.VIR_DOMAIN_SHUTOFF_MIGRATED
