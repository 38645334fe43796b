"""The Nova adapter's tests need Nova 34.0.0 (``tox -e nova`` installs it).

Nova's own choice of native threads or eventlet (``OS_NOVA_DISABLE_EVENTLET_PATCHING``)
is applied first, as Nova's test packages do; ``tox -e nova`` runs the tests
once each way.  Without Nova the tests are skipped with that reason, unless
``MIGRATOR_REQUIRE_NOVA`` is set (CI): then a missing Nova is an error.
"""

from __future__ import annotations

import os

try:
    from nova import monkey_patch
except ImportError:
    if os.environ.get("MIGRATOR_REQUIRE_NOVA"):
        raise
else:
    monkey_patch.patch(backend="threading")
