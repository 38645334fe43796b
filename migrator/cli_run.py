"""``migrator simulate`` and ``migrator migrate`` (added once the driver exists)."""

from __future__ import annotations

from typing import Any


def register(sub: Any, add_config_arg: Any, checked_text: Any) -> None:
    """Add the run subcommands to the ``migrator`` parser."""
