"""How a migration ended: the statuses, the record of actions, the outcome a caller gets.

Plain data, no I/O.  The status is decided by :func:`migrator.classify.classify`
from facts the monitor established; a caller reads ``outcome.status``,
``outcome.succeeded`` and ``outcome.rollback_safe`` and never re-derives them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from migrator import uri

if TYPE_CHECKING:
    from migrator.flags import Plan
    from migrator.progress import Progress

COMPLETED = "completed"  # the destination runs the guest; the source has let it go
CANCELLED = "cancelled"  # by the user (abort())
TIMED_OUT = "timed_out"  # the completion timeout's abort
STALLED = "stalled"  # the policy gave up early on a migration that cannot converge
FAILED = "failed"
# The link failed after the switch to post-copy: the guest runs on the destination
# but part of its memory is still on the source.  Never rolled back; resumable.
POSTCOPY_FAILED = "postcopy_failed"
# Where the guest runs could not be established before the monitor's bound ran out
# (a daemon unreachable, a job that never ended): the caller must not roll back.
UNKNOWN = "unknown"
STATUSES = (COMPLETED, CANCELLED, TIMED_OUT, STALLED, FAILED, POSTCOPY_FAILED, UNKNOWN)
# The only outcomes after which the guest is known to run on the source with no job
# left: a caller may clean up the destination (Nova's rollback) after these alone.
ROLLBACK_SAFE = frozenset({FAILED, CANCELLED, TIMED_OUT, STALLED})

MODE_PRE_COPY = "pre-copy"
MODE_POST_COPY = "post-copy"
MODE_PAUSED = "paused"


@dataclass(frozen=True)
class ActionRecord:
    """An action the loop executed, and how it went."""

    at: float
    action: str
    value: int | float | None
    reason: str
    ok: bool = True
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Outcome:
    """How one migration ended, as the caller's callbacks and the CLI see it.

    ``rule`` and ``reason`` name the classification rule that settled the
    status and the facts behind it (:mod:`migrator.classify`).
    """

    status: str  # one of STATUSES
    mode: str | None  # pre-copy | post-copy | paused | None (no switchover)
    total_seconds: float
    downtime_ms: int | None
    passes: int
    actions: list[ActionRecord] = field(default_factory=list)
    error: str | None = None
    error_code: int | None = None
    monitor_error: str | None = None
    notes: list[str] = field(default_factory=list)
    progress: Progress | None = None
    rule: str | None = None
    reason: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == COMPLETED

    @property
    def rollback_safe(self) -> bool:
        """True when the guest runs on the source and no job is left: cleaning up the
        destination cannot destroy it.  False for ``completed``, ``postcopy_failed``
        and ``unknown`` (the guest may run only on the destination)."""
        return self.status in ROLLBACK_SAFE

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.status,
            "mode": self.mode,
            "total_seconds": round(self.total_seconds, 3),
            "downtime_ms": self.downtime_ms,
            "passes": self.passes,
            "actions": [a.to_dict() for a in self.actions],
            "error": self.error,
            "error_code": self.error_code,
            "monitor_error": self.monitor_error,
            "notes": list(self.notes),
            "rule": self.rule,
            "reason": self.reason,
        }


@dataclass
class MigrationOutcome(Outcome):
    """The :class:`Outcome` plus what the caller passed in."""

    domain: str = ""
    uuid: str = ""
    dest: str = ""
    migrate_data: Any = None
    plan: Plan | None = None
    callback_error: str | None = None

    @classmethod
    def of(cls, outcome: Outcome, **extra: Any) -> MigrationOutcome:
        """``outcome``'s fields plus ``extra`` (domain, uuid, dest, plan, ...)."""
        fields = {f: getattr(outcome, f) for f in Outcome.__dataclass_fields__}
        return cls(**fields, **extra)

    def redact(self) -> None:
        """Remove the live_migration_uri password from everything the outcome carries.

        libvirt echoes the URI in some errors ("Unable to parse URI ..."), and the
        outcome is logged and stored by callers.
        """
        secret = uri.password(self.plan.uri) if self.plan is not None else None
        if not secret:
            return
        hide = lambda text: uri.redact(text, secret) if text else text  # noqa: E731
        self.error = hide(self.error)
        self.monitor_error = hide(self.monitor_error)
        self.notes = [hide(n) for n in self.notes]
        self.actions = [
            replace(a, reason=hide(a.reason), error=hide(a.error)) for a in self.actions
        ]

    def to_dict(self) -> dict[str, Any]:
        doc = super().to_dict()
        doc.update(domain=self.domain, dest=self.dest, callback_error=self.callback_error)
        if self.plan is not None:
            doc["flags"] = self.plan.flags
            doc["flag_names"] = self.plan.flag_names
        return doc
