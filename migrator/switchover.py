"""How a running pre-copy can end, predicted from what the job says now (pure).

The same physics as :mod:`migrator.predict` (QEMU's pass-by-pass pre-copy and
the post-copy push), asked from a pass boundary or from between two:

* :func:`post_copy_pays`: would pre-copy at the ceiling, to the end of its
  stop-and-copy, take longer than the post-copy push by a margin?  Then
  switching now is the faster end (the guest runs on the destination
  meanwhile, slower while its pages are pulled).
* :func:`set_at_sync_now`: what a bitmap sync right now would find, so a
  switchover that fits the ceiling is seen between boundaries, not a pass
  (or a 0.5 s poll) later.
* :func:`sync_due_in`: when QEMU's next bitmap sync will have happened, so the
  monitor looks at the boundary then, not up to a poll later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from migrator import predict
from migrator.jobstats import JobSample
from migrator.passes import PassEstimate
from migrator.precopy import CHECK_SECONDS, PreCopy
from migrator.units import mib_text, secs_text

# Post-copy is started when pre-copy at the ceiling (its passes and the final
# stop-and-copy) is predicted to take longer than this many times the
# post-copy push.  Chosen on the simulator suite (benchmarks/README.md, the
# margin sweep): lower margins switch workloads pre-copy finishes about as
# fast, in post-copy, for nothing; higher ones wait on workloads post-copy
# ends sooner.
POST_COPY_MARGIN = 1.5


@dataclass(frozen=True)
class PostCopyCase:
    """The two ends compared at one boundary (seconds from now; inf: never)."""

    precopy_s: float  # pre-copy at the ceiling: its passes and the stop-and-copy
    push_s: float  # the post-copy push of the dirty set
    margin: float

    @property
    def pays(self) -> bool:
        return self.precopy_s > self.margin * self.push_s

    def text(self, r: PassEstimate, ceiling_ms: int) -> str:
        pre = "never ends" if math.isinf(self.precopy_s) else \
            f"takes ~{secs_text(self.precopy_s)} s more"
        return (f"pre-copy at the {ceiling_ms} ms ceiling {pre} (guest writes "
                f"{mib_text(r.writes)} MiB/s, link {mib_text(r.rate)} MiB/s), the post-copy "
                f"push of {mib_text(r.dirty_set)} MiB ~{secs_text(self.push_s)} s "
                f"(margin {self.margin:g}x)")


def post_copy_pays(r: PassEstimate, ceiling_ms: int, margin: float = POST_COPY_MARGIN,
                   working_set: float | None = None) -> PostCopyCase | None:
    """Compare the ends from boundary ``r``; None while the link rate is unknown.

    Both sides end when the last page is on the destination: pre-copy after
    its stop-and-copy (up to the ceiling's worth of bytes, sent with the guest
    stopped), post-copy after the push.  Leaving the stop-and-copy out made a
    guest whose next set nearly fits look cheap to finish in pre-copy.
    """
    if r.rate <= 0:
        return None
    if r.dirty_set <= 0:
        return PostCopyCase(0.0, 0.0, margin)
    run = PreCopy(r.dirty_set, r.writes, r.rate, ceiling_ms / 1000.0, working_set).run()
    pre = run.seconds + run.final_set / r.rate if run.ended == "switch" else math.inf
    return PostCopyCase(pre, predict.postcopy_seconds(r.dirty_set, r.rate), margin)


def set_at_sync_now(s: JobSample, last: PassEstimate, now: float) -> float:
    """Bytes a bitmap sync now would find: what is left of the pass plus what the guest
    wrote since the last sync (at most all of memory).

    The writes count as :attr:`PassEstimate.writes` says (at least what the job
    reports now).
    """
    since = max(now - last.synced_at, 0.0)
    found = s.memory_remaining + max(s.dirty_rate_bytes, last.writes) * since
    return min(found, s.memory_total) if s.memory_total > 0 else found


def sync_due_in(s: JobSample, rate: float, max_downtime_ms: int) -> float | None:
    """Seconds from sample ``s`` until QEMU's next bitmap sync will have happened.

    QEMU syncs once what is left of the pass fits ``rate x max downtime``, at
    its next check (every :data:`~migrator.precopy.CHECK_SECONDS`); one check
    from now when that is overdue (the link slowed, or the sync is under way).
    None while nothing says (no rate, or RAM is not moving yet).
    """
    if rate <= 0 or s.memory_iteration <= 0:
        return None
    left = s.memory_remaining - rate * max_downtime_ms / 1000.0
    return max(left / rate, 0.0) + CHECK_SECONDS
