"""migrator: safe, fast live migration of libvirt/KVM guests for compute services."""

__version__ = "0.1.0"
