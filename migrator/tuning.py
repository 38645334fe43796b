"""The adaptive policy's knobs, their defaults and why (:class:`AdaptiveTuning`).

What is known before a migration starts (a prediction from the guest's
measured dirty rate, say) enters the policy here, e.g. as the initial max
downtime; everything else the policy learns from the job as it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from migrator.passes import RATE_ALPHA, STALL_MARGIN, STALL_WINDOW_PASSES, STALL_WINDOW_SECONDS
from migrator.switchover import POST_COPY_MARGIN
from migrator.units import MiB

# The max downtime set is the predicted need times this: QEMU measures the
# bandwidth over 100 ms and the dirty set varies from pass to pass.
DOWNTIME_MARGIN = 1.25
# While each pass leaves at most this share of the one before and the guest's
# dirty rate is at most this share of the link rate, the max downtime is not
# raised: one more pass costs about the predicted need in transfer time and at
# least halves the downtime.
SHRINKING_FAST = 0.5
# A predicted need up to this factor above the ceiling still gets the ceiling
# (KubeVirt's precopyPossibleFactor): the estimate can be pessimistic, and the
# ceiling is where Nova's ramp ends anyway.
POSSIBLE_FACTOR = 1.5
# Post-copy starts at a boundary whose dirty set is within this margin of the
# best in the window, the margin doubling for each boundary waited (KubeVirt
# relaxes its target over time the same way), so a saw-tooth is caught low and
# a steadily growing dirty set is not waited on for long.
LOCAL_MIN_MARGIN = 0.04
# Boundaries QEMU gets at the ceiling before the policy gives up (abort or
# suspend): what Nova's ramp would eventually try, tried before the last resort.
GRACE_PASSES = 2
# Below this the link counts as down: no forced switchover.
MIN_LINK_RATE = 1.0 * MiB


@dataclass(frozen=True)
class AdaptiveTuning:
    """The adaptive policy's knobs (defaults: the constants above).

    What is known before the migration starts (a prediction from the guest's
    measured dirty rate, say) enters here, e.g. as ``initial_downtime_ms``.
    """

    initial_downtime_ms: int | None = None  # None: Nova's step 0 (downtime / steps)
    prior: str | None = None  # what a prediction made these knobs from (noted at the start)
    # The guest's dirty rate (bytes/s) and working set (bytes, None: unknown) measured
    # before the start: the post-copy decision's floor for the rate QEMU reports.
    prior_dirty_rate: float | None = None
    prior_working_set: float | None = None
    downtime_margin: float = DOWNTIME_MARGIN
    possible_factor: float = POSSIBLE_FACTOR
    shrinking_fast: float = SHRINKING_FAST
    rate_alpha: float = RATE_ALPHA
    stall_margin: float = STALL_MARGIN
    stall_window_passes: int = STALL_WINDOW_PASSES
    stall_window_seconds: float = STALL_WINDOW_SECONDS
    local_min_margin: float = LOCAL_MIN_MARGIN
    grace_passes: int = GRACE_PASSES
    min_link_rate: float = MIN_LINK_RATE
    post_copy_margin: float = POST_COPY_MARGIN  # inf: post-copy on a stall only

    def __post_init__(self) -> None:
        if not 0 < self.rate_alpha <= 1:
            raise ValueError(f"rate_alpha must be in (0, 1], got {self.rate_alpha}")
        if self.downtime_margin < 1 or self.possible_factor < 1:
            raise ValueError("downtime_margin and possible_factor must be >= 1")
        if not 0 <= self.shrinking_fast < 1:
            raise ValueError(f"shrinking_fast must be in [0, 1), got {self.shrinking_fast}")
        if not 0 <= self.stall_margin < 1 or self.local_min_margin < 0:
            raise ValueError("stall_margin must be in [0, 1) and local_min_margin >= 0")
        if self.stall_window_passes < 1 or self.stall_window_seconds < 0 or self.grace_passes < 0:
            raise ValueError("stall window and grace must be positive")
        if not self.post_copy_margin >= 1:
            raise ValueError(f"post_copy_margin must be >= 1, got {self.post_copy_margin}")
