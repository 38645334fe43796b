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
