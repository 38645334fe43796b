"""The ``migrator`` command line: one module per subcommand, the shared parts in ``common``.

``app`` builds the parser from the subcommand modules (each has
``register(subparsers)`` and ``run(args)``); they import ``common`` and
``report``, never each other, and none of them imports libvirt at import time.
"""

from migrator.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
