"""AdaptivePolicy: steer pre-copy by what the job stats say, not by a clock.

Nova's ramp (:class:`~migrator.steps.StepsPolicy`) raises the max downtime on a
clock that stretches with the data size (75 s per GiB per step), and acts only
at the completion timeout.  QEMU's switchover rule (stop the guest once the
bytes left fit in ``bandwidth x max downtime``) means a guest whose dirty set
per pass is ``W`` on a link ``R`` converges as soon as the max downtime is
``W / R``; waiting for the clock only costs time, and a guest that can never
converge is known long before the timeout.  This policy therefore:

* judges only at **pass boundaries** (:mod:`migrator.passes`);
* sets the max downtime, as soon as ``dirty set / rate`` fits within
  ``live_migration_downtime``, to that plus a margin: never above the ceiling
  in pre-copy, and not while each pass still at least halves the dirty set
  (another pass then costs about the predicted downtime in transfer time and
  at least halves the downtime the guest will see);
* on a **stall** acts at once: post-copy at a local minimum when permitted,
  else gives QEMU's auto-converge time while its throttle rises, else gives up
  early with a reason that says what would help: an abort, or a suspend when
  ``live_migration_timeout_action`` is ``force_complete`` (what the timeout
  would do anyway), and nothing when the completion timeout is off;
* never forces a switchover it predicts cannot finish (link down, or the
  dirty set cannot be sent before the completion timeout), and never acts on
  a migration that is still making progress;
* given a prediction made before the start (its prior, from
  :func:`migrator.forecast.adaptive_tuning`), starts where the first boundary
  would have taken it: the ceiling when the passes will not halve the set and
  the first set fits or nothing fits, the measured rate as the floor of QEMU's
  when weighing post-copy, and a shorter stall window for a guest predicted
  not to converge.

Everything else (force-complete requests, the completion timeout and its
action, retries, nothing in post-copy) is Nova's behaviour, from the same
:class:`~migrator.jobcontrol.JobControl` :class:`StepsPolicy` uses, and the
max downtime's bookkeeping is the same :class:`~migrator.maxdowntime.MaxDowntime`.
"""

from __future__ import annotations

import dataclasses
import math

from migrator import constants, predict, switchover
from migrator.basepolicy import BasePolicy
from migrator.jobstats import JobSample
from migrator.passes import PassEstimate, PassObserver
from migrator.policy import (
    TIMEOUT_ACTION_FORCE_COMPLETE,
    Action,
    ActionKind,
    MonitorSettings,
    Tunables,
    downtime_steps,
)
from migrator.progress import SATURATED
from migrator.tuning import AdaptiveTuning
from migrator.units import mib_text, secs_text

# A failed post-copy switch on a stall is tried again at most once (later).
MAX_POST_COPY_ATTEMPTS = 2
# Why the guest is already suspended, for a later force-complete's note.
SUSPENDED_ON_STALL = "stall; the copy is finishing"
# Looks per pass at a sync predicted overdue (the link slowed, or the prediction
# was early): then the monitor's poll again, so a wrong rate costs a few samples.
OVERDUE_LOOKS = 3


def _busy(actions: list[Action], suspend_ok: bool = False) -> bool:
    """An abort or a post-copy switch (or a suspend) is among ``actions``."""
    kinds = {ActionKind.ABORT, ActionKind.START_POST_COPY}
    if not suspend_ok:
        kinds.add(ActionKind.SUSPEND)
    return any(a.kind in kinds for a in actions)


class AdaptivePolicy(BasePolicy):
    """Set the downtime the next switchover needs; act at once on a stall.

    Same interface and limits as :class:`~migrator.steps.StepsPolicy`; see the
    module docstring for the algorithm and :class:`AdaptiveTuning` for the knobs.
    """

    name = "adaptive"

    def __init__(self, settings: MonitorSettings, tuning: AdaptiveTuning | None = None) -> None:
        if settings.downtime_ms < 1:
            raise ValueError(f"live_migration_downtime must be >= 1 ms, got {settings.downtime_ms}")
        super().__init__(settings)
        self.tuning = t = tuning or AdaptiveTuning()
        self.ceiling_ms = min(int(settings.downtime_ms), constants.QEMU_MAX_DOWNTIME_MS)
        steps = max(int(settings.downtime_steps), 1)
        if t.initial_downtime_ms is None:
            self._initial = max(1, int(self.ceiling_ms / steps))
            self._initial_why = f"{self.ceiling_ms} ms / {steps} steps, as Nova's step 0"
        else:
            self._initial = max(1, min(int(t.initial_downtime_ms), self.ceiling_ms))
            self._initial_why = "from the prediction" if t.prior else "configured initial value"
        # Nova's clock ramp, used only when the job reports no pass counter.
        self._ramp = [
            (at, min(v, self.ceiling_ms))
            for at, v in downtime_steps(
                settings.data_gb, self.ceiling_ms, steps, settings.downtime_delay
            )
        ]
        if t.prior:
            self._note(0.0, f"{t.prior}: initial max downtime {self._initial} ms, a stall is "
                            f"called after {t.stall_window_passes} passes without progress")
        self._passes = PassObserver(
            self._notes,
            rate_alpha=t.rate_alpha,
            stall_margin=t.stall_margin,
            window_passes=t.stall_window_passes,
            window_seconds=t.stall_window_seconds,
        )
        # The max downtime wanted (the MaxDowntime applies it); it only rises.
        self._target = self._initial
        self._target_why = (
            f"initial max downtime {self._initial} ms ({self._initial_why}); raised at "
            f"pass boundaries to what the next switchover needs, never above "
            f"{self.ceiling_ms} ms"
        )
        self._ceiling_pass: int | None = None  # pass at which the target reached the ceiling
        self._shrink_noted = False
        self._holding = False  # the last boundary said: each pass still halves the dirty set
        self._pays_noted: set[str] = set()  # post-copy that pays but cannot be started
        # the stall episode and what this policy forced
        self._waited = 0  # boundaries waited for a local minimum
        self._episode_notes: set[str] = set()
        self._switch: Action | None = None  # our latest post-copy switch
        self._post_copy_attempts = 0
        self._suspend_tried = False
        self._stall_facts: str | None = None  # the latest stall, in words
        self._latest: tuple[JobSample, float] | None = None  # last pre-copy sample, its time
        self._overdue_looks = 0  # looks at an overdue sync since the last boundary

    # -- read-only views ----------------------------------------------------

    @property
    def last_estimate(self) -> PassEstimate | None:
        """The estimate made at the latest pass boundary (None before the first)."""
        return self._passes.last

    @property
    def stalled(self) -> bool:
        """Whether the latest boundary was judged a stall."""
        return self._passes.stalled

    # -- the Policy interface ----------------------------------------------

    def on_sample(self, sample: JobSample, now: float, tunables: Tunables) -> list[Action]:
        """Decide on one running sample: Nova's tasks first, then ours.

        The stall ladder runs only on a pass boundary and only when nothing
        else is under way; the downtime is never changed together with an
        abort or a post-copy switch, nor once the guest is suspended.
        """
        if not sample.is_running:
            return []
        if self.in_post_copy:
            return self._jobs.on_sample(now, tunables)
        record = self._passes.observe(sample, now, self._downtime.applied)
        self._latest = (sample, now)
        actions = self._jobs.on_sample(now, tunables)
        if record is not None:
            self._overdue_looks = 0
            self._plan_downtime(record)
        elif self._passes.last is not None:
            self._plan_between(sample, now)
        else:
            self._fallback_ramp(sample, now)
        if self.guest_suspended:
            return actions
        jobs = self._jobs
        if record is not None and not (actions or jobs.aborting or jobs.abort_by_timeout):
            actions += (self._post_copy_when_it_pays(record, sample, now, tunables)
                        or self._ladder(record, sample, now, tunables))
        if not (jobs.aborting or _busy(actions, suspend_ok=True)):
            actions += self._downtime.set(self._target, self._target_why, now)
        return actions

    def next_sample_in(self, now: float) -> float | None:
        """Until QEMU's next bitmap sync will have happened: this policy decides at pass
        boundaries, and a boundary seen up to a poll late costs that much time (most on
        short passes, where a 0.5 s poll can span several).  None in post-copy, once
        suspended, before RAM moves, or after :data:`OVERDUE_LOOKS` overdue looks."""
        rate = self._passes.rate
        if self._latest is None or not rate or self.in_post_copy or self.guest_suspended:
            return None
        sample, at = self._latest
        applied = self._downtime.applied or constants.QEMU_DEFAULT_DOWNTIME_MS
        due = switchover.sync_due_in(sample, rate, applied)
        if due is None:
            return None
        if due <= switchover.CHECK_SECONDS + (now - at):
            self._overdue_looks += 1
            if self._overdue_looks > OVERDUE_LOOKS:
                return None
        return max(due - (now - at), 0.0)

    def action_result(
        self, action: Action, ok: bool, error: str | None, now: float
    ) -> list[Action]:
        """As every policy; a failed post-copy switch of ours is noted (tried again later)."""
        follow = super().action_result(action, ok, error, now)
        if action == self._switch and not ok and not self.in_post_copy:
            again = self._post_copy_attempts < MAX_POST_COPY_ATTEMPTS
            self._note(
                now,
                f"post-copy switch failed ({error}); attempt {self._post_copy_attempts}/"
                f"{MAX_POST_COPY_ATTEMPTS}"
                + ("; tried again at a later stalled boundary" if again else "; not retried"),
            )
        return follow

    # -- downtime -------------------------------------------------------------

    def _raise_target(self, value: int, why: str, passes: int | None) -> None:
        value = min(value, self.ceiling_ms)
        if value <= self._target:
            return
        self._target = value
        self._target_why = why
        if value == self.ceiling_ms:
            self._ceiling_pass = passes

    def _downtime_for(self, need: float) -> tuple[int, str] | None:
        """The max downtime for a switchover that needs ``need`` ms, and why; None: none
        within the ceiling (nor within ``possible_factor`` of it)."""
        ceiling = self.ceiling_ms
        margin = self.tuning.downtime_margin
        if need * margin <= ceiling:
            value = max(self._initial, math.ceil(need * margin))
            return value, (f": max downtime {value} ms (+{round((margin - 1) * 100)} %), "
                           f"ceiling {ceiling} ms")
        if need <= self.tuning.possible_factor * ceiling:
            return ceiling, (f", within {self.tuning.possible_factor:g}x the {ceiling} ms "
                             f"ceiling: max downtime at the ceiling")
        return None

    def _plan_downtime(self, r: PassEstimate) -> None:
        """Raise the max downtime to what the next switchover needs, if it fits."""
        self._holding = self._shrinking_fast(r)
        need = r.need_ms
        if need is None:
            return
        what = (
            f"iteration {r.iteration}: the next switchover needs ~{need:.0f} ms "
            f"({mib_text(r.dirty_set)} MiB dirty at {mib_text(r.rate)} MiB/s)"
        )
        planned = self._downtime_for(need) or self._throttled_to_fit(r)
        if planned is None:
            return
        value, how = planned
        raising = min(value, self.ceiling_ms) > self._target
        if raising and self._holding:
            if not self._shrink_noted:  # once per migration: it may hold for many passes
                self._shrink_noted = True
                previous = r.previous_dirty_set or 0
                self._note(
                    r.at,
                    f"{what}; max downtime stays {self._target} ms while each pass at least "
                    f"halves the dirty set ({r.dirty_set / previous * 100:.0f} % of the "
                    f"{mib_text(previous)} MiB before): one more pass costs ~{need:.0f} ms of "
                    f"transfer and at least halves the downtime",
                )
            return
        self._raise_target(value, what + how, r.passes)

    def _throttled_to_fit(self, r: PassEstimate) -> tuple[int, str] | None:
        """Auto-converge throttles the guest: the ceiling once pre-copy at it is predicted
        to end with the throttled writes, or at once when it can end only throttled.

        The set of a full pass (low max downtime) shrinks only as fast as the
        throttle rises; at the ceiling QEMU syncs as soon as what is left fits,
        a throttled guest writes little between two syncs, and QEMU raises the
        throttle at a sync: the sooner the ceiling, the sooner the throttle.
        """
        if not self.settings.auto_converge_enabled or r.rate <= 0:
            return None
        seconds = predict.precopy_seconds(r.dirty_set, r.writes, r.rate, self.ceiling_ms / 1000.0)
        if r.throttle <= 0:
            if not math.isinf(seconds):
                return None  # ends unthrottled: the need decides (_downtime_for)
            return self.ceiling_ms, (
                f"; pre-copy cannot end unthrottled (guest writes {mib_text(r.writes)} MiB/s, "
                f"link {mib_text(r.rate)} MiB/s) and auto-converge is permitted: max downtime "
                f"at the ceiling, so QEMU syncs, and raises the throttle, sooner")
        if math.isinf(seconds):
            return None
        return self.ceiling_ms, (
            f"; auto-converge throttles the guest {r.throttle} % (writes "
            f"{mib_text(r.writes)} MiB/s): at the {self.ceiling_ms} ms ceiling pre-copy is "
            f"predicted to end in ~{secs_text(seconds)} s: max downtime at the ceiling")

    def _plan_between(self, s: JobSample, now: float) -> None:
        """Between boundaries: once a sync now would find a set that fits, set its max
        downtime now (QEMU syncs within 100 ms), not a pass or a poll later."""
        rate = self._passes.rate or 0.0
        last = self._passes.last
        if self._holding or last is None or rate <= 0 or self._target >= self.ceiling_ms:
            return
        found = switchover.set_at_sync_now(s, last, now)
        need = found / rate * 1000.0
        planned = self._downtime_for(need)
        if planned is not None:
            value, how = planned
            what = (f"{secs_text(now - last.synced_at)} s into a pass: a sync now would find "
                    f"~{mib_text(found)} MiB, ~{need:.0f} ms at {mib_text(rate)} MiB/s")
            self._raise_target(value, what + how, last.passes)

    def _shrinking_fast(self, r: PassEstimate) -> bool:
        """The last pass shrank the dirty set fast, and the guest's dirty rate (QEMU's, once
        it has one) says the next will too; a saturated working set shrinks once, not again."""
        fast = self.tuning.shrinking_fast
        predicted = r.dirty_rate / r.rate if r.dirty_rate > 0 and r.rate > 0 else 0.0
        previous = r.previous_dirty_set
        return bool(previous) and r.dirty_set <= fast * previous and predicted <= fast

    def _fallback_ramp(self, s: JobSample, now: float) -> None:
        """No pass counter while RAM moves (jobInfo fallback): follow Nova's clock ramp."""
        if self._passes.counting or s.memory_iteration > 0 or s.memory_processed <= 0:
            return
        index = 0  # step 0 is at 0 s: due from the first sample
        for i, (at, _) in enumerate(self._ramp):
            if now > at:
                index = i
        at, value = self._ramp[index]
        why = (
            f"no pass counter in the job stats: Nova's ramp, step {index}/{len(self._ramp) - 1}: "
            f"{value} ms after {at} s"
        )
        self._raise_target(value, why, None)

    # -- acting on a stall ------------------------------------------------------

    def _note_once(self, key: str, now: float, text: str) -> None:
        if key not in self._episode_notes:
            self._episode_notes.add(key)
            self._note(now, text)

    def _switch_blocker(
        self, r: PassEstimate, s: JobSample, now: float, tunables: Tunables
    ) -> tuple[str | None, str | None]:
        """Why a forced switchover now could not finish: (kind, text) or (None, None)."""
        rate = self._passes.rate or 0.0
        if s.memory_bps <= 0 or rate < self.tuning.min_link_rate:
            return "link", (
                f"the link looks down (rate {mib_text(rate)} MiB/s, last sample "
                f"{mib_text(s.memory_bps)} MiB/s)"
            )
        timeout = self.completion_timeout(tunables)
        send = r.dirty_set / rate
        if timeout and send > timeout - now:
            return "budget", (
                f"sending {mib_text(r.dirty_set)} MiB at {mib_text(rate)} MiB/s takes "
                f"~{secs_text(send)} s, more than the {secs_text(max(timeout - now, 0))} s left "
                f"before the completion timeout"
            )
        return None, None

    def _ladder(
        self, r: PassEstimate, s: JobSample, now: float, tunables: Tunables
    ) -> list[Action]:
        """On a stall: post-copy at a local minimum; else the ceiling, auto-converge, and
        the last resort."""
        if self._passes.stalled:
            facts = self._stall_facts = self._passes.stall_facts(r)
        else:
            facts = self._stuck_at_ceiling(r)
            if facts is None:  # progress: a later stall is a new episode
                self._waited = 0
                self._episode_notes.clear()
                return []
        if self.settings.post_copy_enabled and self._post_copy_attempts < MAX_POST_COPY_ATTEMPTS:
            kind, blocker = self._switch_blocker(r, s, now, tunables)
            if kind == "link":
                # Wait: the link may come back, and then post-copy is still the answer.
                self._note_once("link", now, f"{facts}; no switchover: {blocker}")
                return []
            if kind is None:
                return self._post_copy_at_local_minimum(r, now, facts)
            self._note_once("pc-budget", now, f"{facts}; no post-copy: {blocker}")
        # Without post-copy, pre-copy gets the ceiling (a larger threshold: QEMU syncs
        # sooner, and a set that fits is sent with the guest stopped) before the rest.
        ceiling = self.ceiling_ms
        if self._target < ceiling:
            self._raise_target(ceiling, f"{facts}: max downtime to the {ceiling} ms ceiling",
                               r.passes)
        if self.settings.auto_converge_enabled:
            left = self._passes.left_window
            before = left.throttle if left else 0
            if r.throttle > before:
                why = (
                    f"{facts}; auto-converge is still raising the throttle "
                    f"({before} % -> {r.throttle} % over the window): waiting"
                )
                self._note_once("ac", now, why)
                return []
            facts += (
                f"; auto-converge exhausted (throttle {r.throttle} %, not raised over the window)"
            )
        return self._last_resort(r, s, now, tunables, facts)

    def _stuck_at_ceiling(self, r: PassEstimate) -> str | None:
        """A stall the policy answered with the ceiling goes on while pre-copy at the
        ceiling is predicted never to end.

        The passes at the ceiling are not compared with those before it (QEMU
        syncs sooner at a larger threshold, so each finds fewer new pages: that
        looked like progress until the timeout); the model of pre-copy at the
        ceiling, from the writes the job shows, judges instead, with the link
        the stall margin slower: QEMU counts a page once per pass, so a guest
        that rewrites its working set within every pass reads about the link's
        rate, a little above or below it from one pass to the next (on the rig
        the same hopeless guest was called stuck at the first boundary at the
        ceiling in one run and never in the next).
        """
        if self._stall_facts is None or self._downtime.applied != self.ceiling_ms \
                or r.rate <= 0:
            return None
        link = r.rate * (1 - self.tuning.stall_margin)
        if not math.isinf(predict.precopy_seconds(r.dirty_set, r.writes, link,
                                                   self.ceiling_ms / 1000.0)):
            return None
        return (f"{self._stall_facts}; at the {self.ceiling_ms} ms ceiling since, pre-copy is "
                f"predicted never to end (guest writes {mib_text(r.writes)} MiB/s, link "
                f"{mib_text(r.rate)} MiB/s, dirty set {mib_text(r.dirty_set)} MiB)")

    def _post_copy_at_local_minimum(self, r: PassEstimate, now: float, facts: str) -> list[Action]:
        """Switch at a low point of the per-pass dirty sets, not at a peak of the saw-tooth."""
        best = self._passes.window_best()
        margin = self.tuning.local_min_margin * 2**self._waited
        if r.dirty_set > best * (1 + margin):
            self._waited += 1
            why = (
                f"{facts}; post-copy waits for a local minimum (dirty set "
                f"{mib_text(r.dirty_set)} MiB > best {mib_text(best)} MiB + {margin * 100:g} %)"
            )
            self._note_once("local-min", now, why)
            return []
        why = (
            f"{facts}; dirty set {mib_text(r.dirty_set)} MiB is within {margin * 100:g} % of the "
            f"window's best: switch to post-copy (~{secs_text(r.dirty_set / max(r.rate, 1.0))} s "
            f"to pull at {mib_text(r.rate)} MiB/s)"
        )
        return self._start_post_copy(why, now)

    def _start_post_copy(self, why: str, now: float) -> list[Action]:
        self._post_copy_attempts += 1
        self._switch = Action(ActionKind.START_POST_COPY, None, why, now)
        return [self._switch]

    def _post_copy_when_it_pays(
        self, r: PassEstimate, s: JobSample, now: float, tunables: Tunables
    ) -> list[Action]:
        """At a boundary: post-copy as soon as pre-copy at the ceiling is predicted to take
        longer than the post-copy push by a margin (no stall window to wait for)."""
        if not self.settings.post_copy_enabled \
                or self._post_copy_attempts >= MAX_POST_COPY_ATTEMPTS:
            return []
        case = switchover.post_copy_pays(self._with_prior(r), self.ceiling_ms,
                                         self.tuning.post_copy_margin,
                                         self.tuning.prior_working_set)
        if case is None or not case.pays:
            return []
        what = f"iteration {r.iteration}: {case.text(r, self.ceiling_ms)}"
        kind, blocker = self._switch_blocker(r, s, now, tunables)
        if kind is not None:
            if kind not in self._pays_noted:  # once per migration and reason
                self._pays_noted.add(kind)
                self._note(now, f"{what}; no post-copy: {blocker}")
            return []
        return self._start_post_copy(f"{what}: switch to post-copy", now)

    def _with_prior(self, r: PassEstimate) -> PassEstimate:
        """``r`` with the guest's rate measured before the start as the floor of the
        reported one: QEMU counts a page once per pass, so a guest that rewrites a hot
        working set within a pass reads slower than it writes."""
        prior = int(self.tuning.prior_dirty_rate or 0)
        return dataclasses.replace(r, dirty_rate=prior) if prior > r.writes else r

    def _last_resort(
        self, r: PassEstimate, s: JobSample, now: float, tunables: Tunables, facts: str
    ) -> list[Action]:
        """Abort early, or suspend when the operator's timeout action is force_complete."""
        ceiling = self.ceiling_ms
        if not self.completion_timeout(tunables):
            why = f"{facts}; not ended early: live_migration_completion_timeout is 0 (no deadline)"
            self._note_once("no-timeout", now, why)
            return []
        at_ceiling = self._downtime.applied == ceiling and (
            self._ceiling_pass is None or r.passes - self._ceiling_pass >= self.tuning.grace_passes
        )
        if not at_ceiling and not self._downtime.given_up(ceiling):
            why = (f"{facts}; QEMU gets {self.tuning.grace_passes} passes at the {ceiling} ms "
                   f"ceiling first")
            self._note_once("grace", now, why)
            return []
        if tunables.timeout_action == TIMEOUT_ACTION_FORCE_COMPLETE:
            return self._suspend_on_stall(r, s, now, tunables, facts)
        if self._jobs.abort_requested:
            return []  # a refused abort is retried once per monitor interval
        return self._jobs.abort(now, self._abort_text(r, facts))

    def _suspend_on_stall(
        self, r: PassEstimate, s: JobSample, now: float, tunables: Tunables, facts: str
    ) -> list[Action]:
        if self._suspend_tried:
            return []
        kind, blocker = self._switch_blocker(r, s, now, tunables)
        if kind is not None:
            self._note_once("suspend-blocked", now, f"{facts}; no suspend: {blocker}")
            return []
        self._suspend_tried = True
        no_post_copy = (
            "the post-copy switch failed"
            if self.settings.post_copy_enabled
            else "post-copy is not permitted"
        )
        why = (
            f"{facts}; live_migration_timeout_action is force_complete and {no_post_copy}: "
            f"suspend the guest so the copy can finish "
            f"(~{secs_text(r.dirty_set / max(r.rate, 1.0))} s for {mib_text(r.dirty_set)} MiB "
            f"at {mib_text(r.rate)} MiB/s)"
        )
        return self._jobs.suspend(now, why, SUSPENDED_ON_STALL)

    def _abort_text(self, r: PassEstimate, facts: str) -> str:
        ceiling = self.ceiling_ms
        best = self._passes.window_best()
        rate = r.rate
        parts = [f"{facts}; dirty rate {mib_text(r.dirty_rate)} MiB/s vs link "
                 f"{mib_text(rate)} MiB/s"]
        if r.dirty_rate >= SATURATED * rate:  # the measure is capped: say so (issue 13)
            parts[0] += (" (QEMU counts a page once per pass, so a guest that rewrites "
                         "everything every pass shows the link's rate: it may write more)")
        if rate > 0:
            parts.append(
                f"the best dirty set needs ~{best / rate * 1000:.0f} ms, ceiling {ceiling} ms"
            )
        helps = [f"needs >= {mib_text(best / (ceiling / 1000.0))} MiB/s to converge within "
                 f"{ceiling} ms"]
        if not self.settings.post_copy_enabled:
            helps.append("permit post-copy")
        if not self.settings.auto_converge_enabled:
            helps.append("permit auto-converge")
        if rate > 0:
            wanted = math.ceil(round(best / rate * 1000.0) * self.tuning.downtime_margin)
            if wanted <= constants.QEMU_MAX_DOWNTIME_MS:
                helps.append(f"raise live_migration_downtime to {wanted} ms")
        return "; ".join(parts) + "; abort early: " + ", or ".join(helps)
