"""How one migration is monitored, from the options: its policy and the monitor's settings.

Read at the start of each migration (``tunables`` on every pass, so an operator
can change them mid-job).  No libvirt call.
"""

from __future__ import annotations

from collections.abc import Callable

from oslo_config import cfg

from migrator import constants, forecast
from migrator.adaptive import AdaptivePolicy
from migrator.flags import Plan
from migrator.jobstats import data_gb
from migrator.monitor import LoopConfig
from migrator.policy import MonitorSettings, Policy, Tunables
from migrator.predict import Prediction
from migrator.request import MigrationRequest
from migrator.steps import StepsPolicy

PolicyFactory = Callable[[MonitorSettings, Plan], Policy]


def tunables(conf: cfg.ConfigOpts) -> Tunables:
    lv = conf.libvirt
    return Tunables(lv.live_migration_completion_timeout, lv.live_migration_timeout_action)


def loop_config(conf: cfg.ConfigOpts, settings: MonitorSettings, label: str,
                poll_interval: float, abort_timeout: float) -> LoopConfig:
    return LoopConfig(poll_interval, abort_timeout,
                      float(conf.libvirt.live_migration_establish_timeout),
                      settings.data_gb, label)


def settings(conf: cfg.ConfigOpts, memory: int, plan: Plan,
             request: MigrationRequest) -> MonitorSettings:
    """``memory``: the guest's in bytes (it scales the downtime ramp and the timeout)."""
    lv = conf.libvirt
    sizes = request.disk_sizes if plan.has(constants.VIR_MIGRATE_NON_SHARED_INC) else ()
    return MonitorSettings(
        data_gb=data_gb(memory, list(sizes)),
        downtime_ms=lv.live_migration_downtime,
        downtime_steps=lv.live_migration_downtime_steps,
        downtime_delay=lv.live_migration_downtime_delay,
        post_copy_enabled=plan.post_copy and not request.vpmem,
        auto_converge_enabled=plan.auto_converge,
        monitor_interval=lv.live_migration_monitor_interval,
    )


def make_policy(conf: cfg.ConfigOpts, settings: MonitorSettings, plan: Plan,
                factory: PolicyFactory | None, prior: Prediction | None = None) -> Policy:
    """``prior``: a prediction made before the start, the adaptive policy's starting point."""
    if factory is not None:
        return factory(settings, plan)
    if conf.libvirt.live_migration_convergence == "adaptive":
        return AdaptivePolicy(settings, forecast.adaptive_tuning(prior) if prior else None)
    return StepsPolicy(settings)
