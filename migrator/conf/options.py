"""The ``[libvirt]`` group and its options, in the order of the sample configuration."""

from __future__ import annotations

from oslo_config import cfg

from migrator.conf.monitor_opts import monitor_opts
from migrator.conf.plan_opts import plan_opts

libvirt_group = cfg.OptGroup(
    "libvirt",
    title="Libvirt options",
    help="Options for live migration of libvirt/KVM guests (Nova-compatible names).",
)

libvirt_opts = plan_opts + monitor_opts
ALL_LIBVIRT_OPTS = libvirt_opts
