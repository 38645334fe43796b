"""StepsPolicy: Nova's monitor (linear downtime ramp on a clock), quirks fixed.

The ramp raises the max downtime in ``live_migration_downtime_steps`` steps to
``live_migration_downtime``, one every ``live_migration_downtime_delay`` s per
GiB of data; force-complete, the completion timeout and its action are
Nova's (:mod:`migrator.jobcontrol`), the max downtime's bookkeeping is shared
(:mod:`migrator.maxdowntime`).
"""

from __future__ import annotations

from collections.abc import Sequence

from migrator import constants
from migrator.basepolicy import BasePolicy
from migrator.jobstats import JobSample
from migrator.policy import Action, ActionKind, MonitorSettings, Tunables, downtime_steps
from migrator.units import gib_text


class StepsPolicy(BasePolicy):
    """Nova's monitor policy, quirks fixed.

    Differences from Nova in the ramp, each a fix of a known problem (those
    of force-complete and the timeout are listed in :mod:`migrator.jobcontrol`):

    * step 0 of the ramp applies on the first running sample even at ``now == 0``;
      the last step is exactly the configured downtime;
    * a failed downtime change is retried on the next pass (Nova kept the new
      value as if applied), at most
      :data:`~migrator.maxdowntime.MAX_DOWNTIME_ATTEMPTS` times per value;
    * no downtime change while a post-copy switch is pending or together with
      an abort.

    A decision not to act (force-complete in post-copy or repeated, retries
    given up, timeout reached in post-copy) is recorded as a :class:`Note`;
    the loop drains them with :meth:`pop_notes` and logs each once.
    """

    name = "steps"

    def __init__(
        self,
        settings: MonitorSettings,
        *,
        steps: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        """``steps`` overrides the ramp computed from ``settings`` (an empty ramp
        never touches the downtime); values are capped at QEMU's maximum."""
        super().__init__(settings)
        self._custom_ramp = steps is not None
        if steps is None:
            steps = list(
                downtime_steps(
                    settings.data_gb,
                    settings.downtime_ms,
                    settings.downtime_steps,
                    settings.downtime_delay,
                )
            )
        self._steps = [(int(t), min(int(v), constants.QEMU_MAX_DOWNTIME_MS)) for t, v in steps]

    @property
    def steps(self) -> list[tuple[int, int]]:
        """The downtime ramp as ``(seconds, ms)`` pairs."""
        return list(self._steps)

    # -- the Policy interface ----------------------------------------------

    def on_sample(self, sample: JobSample, now: float, tunables: Tunables) -> list[Action]:
        """Decide on one sample; only UNBOUNDED (running) samples lead to actions.

        Order as in Nova: pending force-complete first, then the timeout, then
        the downtime ramp.
        """
        if not sample.is_running:
            return []
        actions = self._jobs.on_sample(now, tunables)
        if self.in_post_copy:
            return actions
        aborting = any(a.kind is ActionKind.ABORT for a in actions)
        if not (self._jobs.switching_to_post_copy or aborting):
            actions += self._update_downtime(now)
        return actions

    # -- downtime ramp ----------------------------------------------------

    def _update_downtime(self, now: float) -> list[Action]:
        # The last step whose time has strictly passed; a step at 0 s is due
        # from the first running sample (Nova's elapsed > 0 held on the first
        # pass only because time had passed since the monitor started).
        index = None
        for i, (at, _) in enumerate(self._steps):
            if now > at or at <= 0:
                index = i
        if index is None:
            return []
        at, value = self._steps[index]
        if not self._downtime.wanted(value):
            return []
        if self._custom_ramp:
            why = "custom ramp"
        else:
            s = self.settings
            why = f"delay {s.downtime_delay} s/GiB x {gib_text(s.data_gb)} GiB"
        reason = f"downtime step {index}/{len(self._steps) - 1}: {value} ms after {at} s ({why})"
        return self._downtime.set(value, reason, now)
