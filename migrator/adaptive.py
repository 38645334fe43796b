"""AdaptivePolicy: steer pre-copy by what the job stats say, not by a clock.

Nova's ramp (:class:`~migrator.policy.StepsPolicy`) raises the max downtime on a
clock that stretches with the data size (75 s per GiB per step), and acts only
at the completion timeout.  QEMU's switchover rule (stop the guest once the
bytes left fit in ``bandwidth x max downtime``) means a guest whose dirty set
per pass is ``W`` on a link ``R`` converges as soon as the max downtime is
``W / R``; waiting for the clock only costs time, and a guest that can never
converge is known long before the timeout.  This policy therefore:

* judges only at **pass boundaries** (``memory_iteration`` went up): within a
  pass ``data_remaining`` is a saw-tooth, and Nova's old progress timeout and
  automatic post-copy gave false aborts by comparing it mid-pass;
* estimates the dirty set at each boundary (what the next switchover has to
  send) and the link rate (EWMA of ``memory_bps``), and as soon as
  ``dirty set / rate`` fits within ``live_migration_downtime`` sets the max
  downtime to that plus a margin: never above the ceiling in pre-copy, and
  not while each pass still at least halves the dirty set (another pass then
  costs about the predicted downtime in transfer time and at least halves
  the downtime the guest will see);
* calls a **stall** when the best dirty set of a window of passes *and*
  seconds is not a few per cent below the best before it (KubeVirt's stall
  detector), and then acts at once: post-copy at a local minimum when
  permitted, else gives QEMU's auto-converge time while its throttle rises,
  else gives up early with a reason that says what would help: an abort, or a
  suspend when ``live_migration_timeout_action`` is ``force_complete`` (what the
  timeout would do anyway), and nothing when the completion timeout is off;
* never forces a switchover it predicts cannot finish (link down, or the
  dirty set cannot be sent before the completion timeout), and never acts on
  a migration that is still making progress.

Everything else (force-complete requests, the completion timeout and its
action, retries, notes, nothing in post-copy) is Nova's behaviour as
:class:`StepsPolicy` implements it: an inner ``StepsPolicy`` with an empty
ramp does it, so both policies cannot drift apart.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass

from migrator import constants
from migrator.jobstats import JobSample
from migrator.policy import (
    MAX_DOWNTIME_ATTEMPTS,
    MAX_SUSPEND_ATTEMPTS,
    TIMEOUT_ACTION_FORCE_COMPLETE,
    Action,
    ActionKind,
    MonitorSettings,
    Note,
    StepsPolicy,
    Tunables,
    completion_timeout,
    downtime_steps,
)

MiB = 1024**2

# EWMA weight of the newest memory_bps sample (KubeVirt's stall detector): at a
# 0.5 s poll the estimate follows a changed link within ~2 s but one odd
# 100 ms bandwidth reading from QEMU moves it by less than half.
RATE_ALPHA = 0.4
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
# Stall: the best dirty set of the window is not this much below the best
# before the window (KubeVirt: 4 %).
STALL_MARGIN = 0.04
# The window covers at least this many passes *and* this many seconds.  The
# passes protect slow links (one pass of a 64 GiB guest at 1 Gbit/s takes
# ~9 min; 4 % over 6 passes is < 0.7 % per pass, which would need hundreds of
# passes to converge); the seconds protect fast links, where a pass takes a
# fraction of a second and a burst of guest writes must not look like a stall.
STALL_WINDOW_PASSES = 6
STALL_WINDOW_SECONDS = 40.0
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
# A failed post-copy switch on a stall is tried again at most once (later).
MAX_POST_COPY_ATTEMPTS = 2


@dataclass(frozen=True)
class PassEstimate:
    """What the policy concluded at one pass boundary (bytes, bytes/s, ms)."""

    at: float  # seconds since the monitor started
    passes: int  # boundaries since the baseline (libvirt's counter minus its first value)
    iteration: int  # libvirt's memory_iteration
    dirty_set: int  # bytes the next switchover would have to send
    rate: float  # EWMA of memory_bps
    need_ms: float | None  # dirty_set / rate; None while the rate is unknown
    dirty_rate: int  # guest dirty rate, bytes/s
    throttle: int  # auto-converge CPU throttle, %


class _State(enum.Enum):
    IDLE = "idle"
    PENDING = "pending"
    FAILED = "failed"
    DONE = "done"


def _mib(value: float) -> str:
    """MiB or MiB/s for a reason: '812', '0.5'."""
    mib = value / MiB
    return f"{mib:.0f}" if mib >= 10 else f"{mib:.2g}"


def _secs(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


class AdaptivePolicy:
    """Set the downtime the next switchover needs; act at once on a stall.

    Same interface and limits as :class:`StepsPolicy`; see the module
    docstring for the algorithm and the constants above for the defaults.
    """

    name = "adaptive"

    def __init__(
        self,
        settings: MonitorSettings,
        *,
        initial_downtime_ms: int | None = None,
        downtime_margin: float = DOWNTIME_MARGIN,
        possible_factor: float = POSSIBLE_FACTOR,
        shrinking_fast: float = SHRINKING_FAST,
        rate_alpha: float = RATE_ALPHA,
        stall_margin: float = STALL_MARGIN,
        stall_window_passes: int = STALL_WINDOW_PASSES,
        stall_window_seconds: float = STALL_WINDOW_SECONDS,
        local_min_margin: float = LOCAL_MIN_MARGIN,
        grace_passes: int = GRACE_PASSES,
        min_link_rate: float = MIN_LINK_RATE,
    ) -> None:
        """``initial_downtime_ms`` defaults to Nova's step 0 (downtime / steps)."""
        if settings.downtime_ms < 1:
            raise ValueError(f"live_migration_downtime must be >= 1 ms, got {settings.downtime_ms}")
        if not 0 < rate_alpha <= 1:
            raise ValueError(f"rate_alpha must be in (0, 1], got {rate_alpha}")
        if downtime_margin < 1 or possible_factor < 1:
            raise ValueError("downtime_margin and possible_factor must be >= 1")
        if not 0 <= shrinking_fast < 1:
            raise ValueError(f"shrinking_fast must be in [0, 1), got {shrinking_fast}")
        if not 0 <= stall_margin < 1 or local_min_margin < 0:
            raise ValueError("stall_margin must be in [0, 1) and local_min_margin >= 0")
        if stall_window_passes < 1 or stall_window_seconds < 0 or grace_passes < 0:
            raise ValueError("stall window and grace must be positive")
        self.settings = settings
        self.downtime_margin = downtime_margin
        self.possible_factor = possible_factor
        self.shrinking_fast = shrinking_fast
        self.rate_alpha = rate_alpha
        self.stall_margin = stall_margin
        self.stall_window_passes = stall_window_passes
        self.stall_window_seconds = stall_window_seconds
        self.local_min_margin = local_min_margin
        self.grace_passes = grace_passes
        self.min_link_rate = min_link_rate

        self._inner = StepsPolicy(settings, steps=[])
        self._ceiling = min(int(settings.downtime_ms), constants.QEMU_MAX_DOWNTIME_MS)
        steps = max(int(settings.downtime_steps), 1)
        if initial_downtime_ms is None:
            initial_downtime_ms = int(self._ceiling / steps)
            self._initial_why = f"{self._ceiling} ms / {steps} steps, as Nova's step 0"
        else:
            self._initial_why = "configured initial value"
        self._initial = max(1, min(int(initial_downtime_ms), self._ceiling))
        # Nova's clock ramp, used only when the job reports no pass counter.
        self._ramp = [
            (t, min(v, self._ceiling))
            for t, v in downtime_steps(
                settings.data_gb, self._ceiling, steps, settings.downtime_delay
            )
        ]

        # downtime
        self._target: int | None = None
        self._target_why = ""
        self._ceiling_pass: int | None = None  # pass at which the target reached the ceiling
        self._applied: int | None = None
        self._pending: int | None = None
        self._failures: dict[int, int] = {}
        # estimates
        self._prev: JobSample | None = None
        self._rate: float | None = None
        self._baseline: int | None = None
        self._iteration = 0
        self._last: PassEstimate | None = None
        self._shrink_from: int | None = None  # dirty set of the boundary before (or RAM)
        self._shrink_noted = False
        self._window: deque[PassEstimate] = deque()
        self._best_before: int | None = None
        self._left_window: PassEstimate | None = None  # newest record that left the window
        # stall episode
        self._stalled = False
        self._waited = 0
        self._episode_notes: set[str] = set()
        # our own forced actions
        self._own: list[Action] = []
        self._post_copy_attempts = 0
        self._suspend = _State.IDLE
        self._suspend_attempts = 0
        self._suspend_error: str | None = None
        self._suspended = False
        self._abort = _State.IDLE
        self._abort_failed_at = 0.0
        self._abort_reason = ""
        self._inner_aborting = False
        self._notes: list[Note] = []

    # -- read-only views ----------------------------------------------------

    @property
    def in_post_copy(self) -> bool:
        """True once the job is in post-copy (ours or a force-complete's): nothing more."""
        return self._inner.in_post_copy

    @property
    def guest_suspended(self) -> bool:
        """True once a suspend succeeded (ours or a force-complete's): resume on failure."""
        return self._suspended or self._inner.guest_suspended

    @property
    def applied_downtime_ms(self) -> int | None:
        return self._applied

    @property
    def last_estimate(self) -> PassEstimate | None:
        """The estimate made at the latest pass boundary (None before the first)."""
        return self._last

    @property
    def stalled(self) -> bool:
        """Whether the latest boundary was judged a stall."""
        return self._stalled

    def completion_timeout(self, tunables: Tunables) -> int:
        return completion_timeout(tunables.completion_timeout, self.settings.data_gb)

    def pop_notes(self) -> list[Note]:
        notes = self._inner.pop_notes() + self._notes
        self._notes = []
        return sorted(notes, key=lambda n: n.at)

    # -- the Policy interface ----------------------------------------------

    def on_sample(self, sample: JobSample, now: float, tunables: Tunables) -> list[Action]:
        """Decide on one running sample: Nova's tasks first, then ours.

        The inner StepsPolicy runs a queued force-complete and the completion
        timeout; the stall ladder runs only on a pass boundary and only when
        nothing else is under way; the downtime is never changed together
        with an abort or a post-copy switch.
        """
        if not sample.is_running:
            return []
        if self.in_post_copy:
            return self._inner.on_sample(sample, now, tunables)
        record = self._observe(sample, now)
        actions = self._filter_inner(self._inner.on_sample(sample, now, tunables), now)
        if self._target is None:
            self._target = self._initial
            self._target_why = (
                f"initial max downtime {self._initial} ms ({self._initial_why}); raised at "
                f"pass boundaries to what the next switchover needs, never above "
                f"{self._ceiling} ms"
            )
        if record is not None:
            self._judge_progress(record)
            self._plan_downtime(record)
        else:
            self._fallback_ramp(sample, now)
        if self.guest_suspended:
            return actions
        if self._acting_allowed(actions):
            actions += self._retry_own(now)
            if record is not None and not self._busy(actions):
                actions += self._ladder(record, sample, now, tunables)
        ending = self._abort in (_State.PENDING, _State.DONE)
        if not (ending or self._busy(actions, suspend_ok=True)):
            actions += self._downtime_action(now)
        return actions

    def request_force_complete(self, now: float) -> list[Action]:
        """As StepsPolicy, unless this policy already forced or is aborting the job."""
        if not self.in_post_copy:
            if self._abort in (_State.PENDING, _State.DONE):
                self._note(
                    now, f"force-complete ignored: the job is being aborted ({self._abort_reason})"
                )
                return []
            if self._suspended:
                self._note(
                    now,
                    "force-complete ignored: the guest is already suspended "
                    "(stall; the copy is finishing)",
                )
                return []
        return self._inner.request_force_complete(now)

    def action_result(
        self, action: Action, ok: bool, error: str | None, now: float
    ) -> list[Action]:
        """Route the result: downtime and our stall actions here, the rest to Nova's logic."""
        if action.kind is ActionKind.SET_MAX_DOWNTIME:
            self._downtime_result(action, ok, now)
            return []
        if action in self._own:
            self._own.remove(action)
            self._own_result(action, ok, error, now)
            return []
        return self._inner.action_result(action, ok, error, now)

    def post_copy_started(self, now: float) -> None:
        self._inner.post_copy_started(now)
        self._own = [a for a in self._own if a.kind is not ActionKind.START_POST_COPY]

    # -- observing ------------------------------------------------------------

    def _observe(self, s: JobSample, now: float) -> PassEstimate | None:
        """Update the rate; at a pass boundary return the estimate made there."""
        prev, self._prev = self._prev, s
        ram_started = s.memory_processed > 0 or s.memory_iteration > 0
        if s.memory_bps > 0 or ram_started:
            # A 0 once RAM is moving is a real reading (link down), not a gap.
            bps = float(s.memory_bps)
            a = self.rate_alpha
            self._rate = bps if self._rate is None else a * bps + (1 - a) * self._rate
        it = s.memory_iteration
        if it <= 0:
            return None
        if self._shrink_from is None and s.memory_total > 0:
            self._shrink_from = s.memory_total  # pass 0 sends all of RAM
        if self._baseline is None or it < self._iteration:
            # libvirt's counter can include a cancelled migration's passes: the
            # first value seen is the baseline, never a boundary.
            if self._baseline is not None:
                self._note(
                    now, f"pass counter went back from {self._iteration} to {it}; new baseline"
                )
                self._reset_progress()
            self._baseline = it
            self._iteration = it
            return None
        if it == self._iteration:
            return None
        crossed = it - self._iteration
        self._iteration = it
        dirty_set = self._dirty_set(s, prev, crossed)
        rate = self._rate or 0.0
        record = PassEstimate(
            at=now,
            passes=it - self._baseline,
            iteration=it,
            dirty_set=dirty_set,
            rate=rate,
            need_ms=dirty_set / rate * 1000.0 if rate > 0 else None,
            dirty_rate=s.dirty_rate_bytes,
            throttle=s.auto_converge_throttle,
        )
        self._last = record
        return record

    def _reset_progress(self) -> None:
        """Forget the passes seen: they cannot be compared with a new counter's."""
        self._window.clear()
        self._shrink_from = None
        self._best_before = None
        self._left_window = None
        self._stalled = False
        self._waited = 0
        self._episode_notes.clear()

    @staticmethod
    def _dirty_set(s: JobSample, prev: JobSample | None, crossed: int) -> int:
        """Bytes QEMU found dirty at the boundary (the pass's peak of the saw-tooth).

        The sample comes up to a poll interval after the boundary, so part of
        the pass is already sent; ``memory_processed`` says how much: since the
        previous sample the link sent the rest of that pass, ``crossed - 1``
        whole passes and the sent part of this one.  With several passes per
        poll this averages them (exact when they are alike, else on the high
        side: a higher, still capped, max downtime).  Zero pages and
        compression make processed bytes smaller than page bytes, so the
        remaining bytes are a floor.
        """
        remaining = s.memory_remaining
        if prev is None or s.memory_processed <= 0 or s.memory_processed < prev.memory_processed:
            return remaining
        sent = s.memory_processed - prev.memory_processed
        estimate = (sent - prev.memory_remaining + remaining) / crossed
        dirty_set = max(float(remaining), estimate)
        if s.memory_total > 0:
            dirty_set = min(dirty_set, float(max(s.memory_total, remaining)))
        return int(dirty_set)

    def _judge_progress(self, record: PassEstimate) -> None:
        """Slide the window; stalled = its best is not ``stall_margin`` below the best before."""
        window = self._window
        window.append(record)
        while window[0] is not record:
            old = window[0]
            recent_pass = record.passes - old.passes < self.stall_window_passes
            recent_time = record.at - old.at <= self.stall_window_seconds
            if recent_pass or recent_time:
                break
            window.popleft()
            self._left_window = old
            if self._best_before is None or old.dirty_set < self._best_before:
                self._best_before = old.dirty_set
        best = min(r.dirty_set for r in window)
        stalled = (
            self._best_before is not None
            and self._best_before > 0
            and best >= (1 - self.stall_margin) * self._best_before
        )
        if not stalled:
            self._waited = 0
            self._episode_notes.clear()
        self._stalled = stalled

    # -- downtime -------------------------------------------------------------

    def _raise_target(self, value: int, why: str, passes: int | None) -> None:
        value = min(value, self._ceiling)
        if self._target is not None and value <= self._target:
            return
        self._target = value
        self._target_why = why
        if value == self._ceiling:
            self._ceiling_pass = passes

    def _plan_downtime(self, r: PassEstimate) -> None:
        """Raise the max downtime to what the next switchover needs, if it fits."""
        previous, self._shrink_from = self._shrink_from, r.dirty_set
        need = r.need_ms
        if need is None:
            return
        c = self._ceiling
        what = (
            f"iteration {r.iteration}: the next switchover needs ~{need:.0f} ms "
            f"({_mib(r.dirty_set)} MiB dirty at {_mib(r.rate)} MiB/s)"
        )
        if need * self.downtime_margin <= c:
            value = max(self._initial, math.ceil(need * self.downtime_margin))
            pct = round((self.downtime_margin - 1) * 100)
            why = f"{what}: max downtime {value} ms (+{pct} %), ceiling {c} ms"
        elif need <= self.possible_factor * c:
            value = c
            why = (
                f"{what}, within {self.possible_factor:g}x the {c} ms ceiling: max downtime "
                f"at the ceiling"
            )
        else:
            return
        raising = self._target is None or min(value, c) > self._target
        # Shrinking fast: the last pass did, and the guest's dirty rate (QEMU's, once it
        # has one) says the next will too; a saturated working set shrinks once, not again.
        predicted = r.dirty_rate / r.rate if r.dirty_rate > 0 and r.rate > 0 else 0.0
        shrinking = (bool(previous) and r.dirty_set <= self.shrinking_fast * previous
                     and predicted <= self.shrinking_fast)
        if raising and shrinking:
            if not self._shrink_noted:  # once per migration: it may hold for many passes
                self._shrink_noted = True
                self._note(
                    r.at,
                    f"{what}; max downtime stays {self._target} ms while each pass at least "
                    f"halves the dirty set ({r.dirty_set / previous * 100:.0f} % of the "
                    f"{_mib(previous)} MiB before): one more pass costs ~{need:.0f} ms of "
                    f"transfer and at least halves the downtime",
                )
            return
        self._raise_target(value, why, r.passes)

    def _fallback_ramp(self, s: JobSample, now: float) -> None:
        """No pass counter while RAM moves (jobInfo fallback): follow Nova's clock ramp."""
        if self._baseline is not None or s.memory_iteration > 0 or s.memory_processed <= 0:
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

    def _downtime_action(self, now: float) -> list[Action]:
        value = self._target
        if value is None or value in (self._applied, self._pending):
            return []
        failures = self._failures.get(value, 0)
        if failures >= MAX_DOWNTIME_ATTEMPTS:
            return []
        reason = self._target_why
        if failures:
            reason += f"; attempt {failures + 1}/{MAX_DOWNTIME_ATTEMPTS} after a failure"
        self._pending = value
        return [Action(ActionKind.SET_MAX_DOWNTIME, value, reason, now)]

    def _downtime_result(self, action: Action, ok: bool, now: float) -> None:
        value = int(action.value or 0)
        if self._pending == value:
            self._pending = None
        if ok:
            self._applied = value
            self._failures.pop(value, None)
            return
        failures = self._failures.get(value, 0) + 1
        self._failures[value] = failures
        if failures >= MAX_DOWNTIME_ATTEMPTS:
            self._note(now, f"max downtime {value} ms failed {failures} times; not retried")

    # -- acting on a stall ------------------------------------------------------

    def _filter_inner(self, actions: list[Action], now: float) -> list[Action]:
        """Drop Nova's timeout actions that would repeat what this policy already did."""
        kept = []
        for a in actions:
            if a.kind is ActionKind.SUSPEND and self._suspended:
                self._inner.action_result(a, True, None, now)
                self._note(now, f"{a.reason}: the guest is already suspended (stall)")
                continue
            if a.kind is ActionKind.ABORT and self._abort in (_State.PENDING, _State.DONE):
                self._note(
                    now, f"{a.reason}: the job is already being aborted ({self._abort_reason})"
                )
                continue
            if a.kind is ActionKind.ABORT:
                self._inner_aborting = True
            kept.append(a)
        return kept

    def _acting_allowed(self, actions: list[Action]) -> bool:
        """Our stall actions only when Nova's logic is idle and we did not end it already."""
        return not (actions or self._inner_aborting or self._abort in (_State.PENDING, _State.DONE))

    @staticmethod
    def _busy(actions: list[Action], suspend_ok: bool = False) -> bool:
        kinds = {ActionKind.ABORT, ActionKind.START_POST_COPY}
        if not suspend_ok:
            kinds.add(ActionKind.SUSPEND)
        return any(a.kind in kinds for a in actions)

    def _retry_own(self, now: float) -> list[Action]:
        """Retry a failed suspend on the next pass, a failed abort every monitor interval."""
        if self._suspend is _State.FAILED and self._suspend_attempts < MAX_SUSPEND_ATTEMPTS:
            self._suspend_attempts += 1
            why = (
                f"suspend failed ({self._suspend_error}); "
                f"attempt {self._suspend_attempts}/{MAX_SUSPEND_ATTEMPTS}"
            )
            return [self._emit(ActionKind.SUSPEND, why, now)]
        if self._abort is _State.FAILED:
            if now < self._abort_failed_at + max(self.settings.monitor_interval, 1):
                return []
            why = f"{self._abort_reason}; retrying the abort after it failed"
            return [self._emit(ActionKind.ABORT, why, now)]
        return []

    def _emit(self, kind: ActionKind, reason: str, now: float) -> Action:
        action = Action(kind, None, reason, now)
        self._own.append(action)
        if kind is ActionKind.SUSPEND:
            self._suspend = _State.PENDING
        elif kind is ActionKind.ABORT:
            self._abort = _State.PENDING
        elif kind is ActionKind.START_POST_COPY:
            self._post_copy_attempts += 1
        return action

    def _own_result(self, action: Action, ok: bool, error: str | None, now: float) -> None:
        if action.kind is ActionKind.START_POST_COPY:
            if ok:
                self._inner.post_copy_started(now)
                return
            again = self._post_copy_attempts < MAX_POST_COPY_ATTEMPTS
            self._note(
                now,
                f"post-copy switch failed ({error}); attempt {self._post_copy_attempts}/"
                f"{MAX_POST_COPY_ATTEMPTS}"
                + ("; tried again at a later stalled boundary" if again else "; not retried"),
            )
        elif action.kind is ActionKind.SUSPEND:
            if ok:
                self._suspend = _State.DONE
                self._suspended = True
                return
            self._suspend_error = error
            self._suspend = _State.FAILED
            if self._suspend_attempts >= MAX_SUSPEND_ATTEMPTS:
                self._note(
                    now, f"suspend failed {self._suspend_attempts} times ({error}); given up"
                )
        elif action.kind is ActionKind.ABORT:
            if ok:
                self._abort = _State.DONE
            else:
                self._abort = _State.FAILED
                self._abort_failed_at = now

    def _note_once(self, key: str, now: float, text: str) -> None:
        if key not in self._episode_notes:
            self._episode_notes.add(key)
            self._note(now, text)

    def _stall_facts(self, r: PassEstimate) -> str:
        since = self._left_window
        passes = r.passes - since.passes if since else r.passes
        secs = r.at - since.at if since else r.at
        best = min(x.dirty_set for x in self._window)
        return (
            f"stalled for {passes} passes / {_secs(secs)} s: best dirty set {_mib(best)} MiB, "
            f"not {self.stall_margin * 100:g} % below the {_mib(self._best_before or 0)} MiB "
            f"before"
        )

    def _switch_blocker(
        self, r: PassEstimate, s: JobSample, now: float, tunables: Tunables
    ) -> tuple[str | None, str | None]:
        """Why a forced switchover now could not finish: (kind, text) or (None, None)."""
        rate = self._rate or 0.0
        if s.memory_bps <= 0 or rate < self.min_link_rate:
            return "link", (
                f"the link looks down (rate {_mib(rate)} MiB/s, last sample "
                f"{_mib(s.memory_bps)} MiB/s)"
            )
        timeout = self.completion_timeout(tunables)
        send = r.dirty_set / rate
        if timeout and send > timeout - now:
            return "budget", (
                f"sending {_mib(r.dirty_set)} MiB at {_mib(rate)} MiB/s takes ~{_secs(send)} s, "
                f"more than the {_secs(max(timeout - now, 0))} s left before the completion "
                f"timeout"
            )
        return None, None

    def _ladder(
        self, r: PassEstimate, s: JobSample, now: float, tunables: Tunables
    ) -> list[Action]:
        """On a stall: the ceiling, then post-copy, auto-converge, and the last resort."""
        if not self._stalled:
            return []
        facts = self._stall_facts(r)
        c = self._ceiling
        if self._target is not None and self._target < c:
            self._raise_target(c, f"{facts}: max downtime to the {c} ms ceiling", r.passes)
        if self.settings.post_copy_enabled and self._post_copy_attempts < MAX_POST_COPY_ATTEMPTS:
            kind, blocker = self._switch_blocker(r, s, now, tunables)
            if kind == "link":
                # Wait: the link may come back, and then post-copy is still the answer.
                self._note_once("link", now, f"{facts}; no switchover: {blocker}")
                return []
            if kind is None:
                return self._post_copy_at_local_minimum(r, now, facts)
            self._note_once("pc-budget", now, f"{facts}; no post-copy: {blocker}")
        if self.settings.auto_converge_enabled:
            before = self._left_window.throttle if self._left_window else 0
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

    def _post_copy_at_local_minimum(self, r: PassEstimate, now: float, facts: str) -> list[Action]:
        """Switch at a low point of the per-pass dirty sets, not at a peak of the saw-tooth."""
        best = min(x.dirty_set for x in self._window)
        margin = self.local_min_margin * 2**self._waited
        if r.dirty_set > best * (1 + margin):
            self._waited += 1
            why = (
                f"{facts}; post-copy waits for a local minimum (dirty set "
                f"{_mib(r.dirty_set)} MiB > best {_mib(best)} MiB + {margin * 100:g} %)"
            )
            self._note_once("local-min", now, why)
            return []
        why = (
            f"{facts}; dirty set {_mib(r.dirty_set)} MiB is within {margin * 100:g} % of the "
            f"window's best: switch to post-copy (~{_secs(r.dirty_set / max(r.rate, 1.0))} s "
            f"to pull at {_mib(r.rate)} MiB/s)"
        )
        return [self._emit(ActionKind.START_POST_COPY, why, now)]

    def _last_resort(
        self, r: PassEstimate, s: JobSample, now: float, tunables: Tunables, facts: str
    ) -> list[Action]:
        """Abort early, or suspend when the operator's timeout action is force_complete."""
        c = self._ceiling
        if not self.completion_timeout(tunables):
            why = f"{facts}; not ended early: live_migration_completion_timeout is 0 (no deadline)"
            self._note_once("no-timeout", now, why)
            return []
        at_ceiling = self._applied == c and (
            self._ceiling_pass is None or r.passes - self._ceiling_pass >= self.grace_passes
        )
        if not at_ceiling and self._failures.get(c, 0) < MAX_DOWNTIME_ATTEMPTS:
            why = f"{facts}; QEMU gets {self.grace_passes} passes at the {c} ms ceiling first"
            self._note_once("grace", now, why)
            return []
        if tunables.timeout_action == TIMEOUT_ACTION_FORCE_COMPLETE:
            if self._suspend is not _State.IDLE:
                return []
            kind, blocker = self._switch_blocker(r, s, now, tunables)
            if kind is not None:
                self._note_once("suspend-blocked", now, f"{facts}; no suspend: {blocker}")
                return []
            self._suspend_attempts = 1
            no_post_copy = (
                "the post-copy switch failed"
                if self.settings.post_copy_enabled
                else "post-copy is not permitted"
            )
            why = (
                f"{facts}; live_migration_timeout_action is force_complete and {no_post_copy}: "
                f"suspend the guest so the copy can finish "
                f"(~{_secs(r.dirty_set / max(r.rate, 1.0))} s for {_mib(r.dirty_set)} MiB "
                f"at {_mib(r.rate)} MiB/s)"
            )
            return [self._emit(ActionKind.SUSPEND, why, now)]
        if self._abort is not _State.IDLE:
            return []  # a failed abort is retried by _retry_own, once per monitor interval
        self._abort_reason = self._abort_text(r, facts)
        return [self._emit(ActionKind.ABORT, self._abort_reason, now)]

    def _abort_text(self, r: PassEstimate, facts: str) -> str:
        c = self._ceiling
        best = min(x.dirty_set for x in self._window)
        rate = r.rate
        parts = [f"{facts}; dirty rate {_mib(r.dirty_rate)} MiB/s vs link {_mib(rate)} MiB/s"]
        if rate > 0:
            parts.append(f"the best dirty set needs ~{best / rate * 1000:.0f} ms, ceiling {c} ms")
        helps = [f"needs >= {_mib(best / (c / 1000.0))} MiB/s to converge within {c} ms"]
        if not self.settings.post_copy_enabled:
            helps.append("permit post-copy")
        if not self.settings.auto_converge_enabled:
            helps.append("permit auto-converge")
        if rate > 0:
            wanted = math.ceil(round(best / rate * 1000.0) * self.downtime_margin)
            if wanted <= constants.QEMU_MAX_DOWNTIME_MS:
                helps.append(f"raise live_migration_downtime to {wanted} ms")
        return "; ".join(parts) + "; abort early: " + ", or ".join(helps)

    def _note(self, now: float, text: str) -> None:
        self._notes.append(Note(now, text))
