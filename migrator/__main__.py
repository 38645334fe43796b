"""``python -m migrator``: the ``migrator`` command."""

import sys

from migrator.cli.app import main

sys.exit(main())
