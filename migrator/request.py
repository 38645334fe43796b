"""One migration's request, checked before anything starts.

``live_migration()`` refuses bad arguments with :class:`~migrator.exception.InvalidRequest`
(a ``ValueError`` too) saying what was wrong and how to write it, before a
plan is made or libvirt is called: a string where a list of disks belongs
(``disks="vda"`` would be read as three disks v, d, a), disk sizes that are
not byte counts, duplicate disks, or disks the guest does not have.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from migrator import exception


@dataclass
class MigrationRequest:
    """What the caller knows about one migration (Nova's migrate_data, flattened)."""

    dest: str
    inbound_addr: str | None = None  # from the destination (pre_live_migration)
    block_migration: bool = False
    disks: tuple[str, ...] = ()
    disk_sizes: tuple[int, ...] = ()  # bytes of each copied disk, for the time budget
    vfio: bool = False
    vpmem: bool = False
    destination_xml: str | None = None
    persistent_xml: str | None = None
    migrate_data: Any = None
    # A libvirt URI *this process* can open to look at the destination: whether it
    # runs the guest (the outcome is then established there) and the actual downtime.
    # None: no connection is made to the destination (it may be unreachable from here).
    dest_connect_uri: str | None = None
    # A prediction made before the start (LiveMigrationDriver.predict()): the adaptive
    # policy's prior (its initial max downtime); None: it learns from the first passes.
    prediction: Any = None


def build(dest: str | None, request: MigrationRequest | None,
          request_fields: dict[str, Any]) -> MigrationRequest:
    """The request from ``live_migration()``'s arguments, validated (not yet against a guest)."""
    if request is None:
        if dest is None:
            raise exception.InvalidRequest("live_migration() needs dest or request")
        known = {f.name for f in fields(MigrationRequest)}
        unknown = sorted(set(request_fields) - known)
        if unknown:
            raise exception.InvalidRequest(
                f"unknown live_migration() argument(s) {', '.join(unknown)}; "
                f"MigrationRequest fields are: {', '.join(sorted(known))}")
        request = MigrationRequest(dest=dest, **request_fields)
    elif request_fields or dest not in (None, request.dest):
        raise exception.InvalidRequest("give either request= or dest and its fields, not both")
    return validate(request)


def validate(request: MigrationRequest) -> MigrationRequest:
    """A copy with normalised fields; raises InvalidRequest on the first problem."""
    if not isinstance(request.dest, str) or not request.dest.strip():
        raise exception.InvalidRequest(f"dest must be a host name, got {request.dest!r}")
    for name in ("block_migration", "vfio", "vpmem"):
        if not isinstance(getattr(request, name), bool):
            raise exception.InvalidRequest(
                f"{name} must be True or False, got {getattr(request, name)!r}")
    for name in ("inbound_addr", "destination_xml", "persistent_xml", "dest_connect_uri"):
        value = getattr(request, name)
        if value is not None and not isinstance(value, str):
            raise exception.InvalidRequest(f"{name} must be a string or None, got {value!r}")
    disks = _disks(request.disks)
    sizes = _sizes(request.disk_sizes, disks)
    return replace(request, disks=disks, disk_sizes=sizes)


def _disks(value: Any) -> tuple[str, ...]:
    if isinstance(value, str | bytes):
        raise exception.InvalidRequest(
            f"disks must be a list of target names, e.g. [{value!r}], not the string {value!r} "
            "(a string would be read one character per disk)")
    if not isinstance(value, Sequence):
        raise exception.InvalidRequest(f"disks must be a list of target names, got {value!r}")
    names = tuple(value)
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise exception.InvalidRequest(f"disks: {name!r} is not a disk target name "
                                           "(like 'vda')")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise exception.InvalidRequest(f"disks: {', '.join(dupes)} listed more than once")
    return names


def _sizes(value: Any, disks: tuple[str, ...]) -> tuple[int, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise exception.InvalidRequest(f"disk_sizes must be a list of byte counts, got {value!r}")
    sizes = []
    for size in value:
        ok = isinstance(size, int | float) and not isinstance(size, bool)
        if not ok or not math.isfinite(size) or size < 0:
            raise exception.InvalidRequest(
                f"disk_sizes: {size!r} is not a size in bytes (a whole number >= 0)")
        sizes.append(int(size))
    if sizes and len(sizes) != len(disks):
        raise exception.InvalidRequest(
            f"disk_sizes has {len(sizes)} value(s) for {len(disks)} disk(s): give one size "
            "per disk, in the order of disks")
    return tuple(sizes)


def check_against_guest(request: MigrationRequest, domain_xml: str) -> None:
    """Every disk named must be one of the guest's disk targets."""
    if not request.disks:
        return
    try:
        root = ET.fromstring(domain_xml)
    except ET.ParseError:
        return  # libvirt itself will judge; nothing to compare with
    targets = {t.get("dev") for t in root.iterfind("./devices/disk/target")}
    unknown = [d for d in request.disks if d not in targets]
    if unknown:
        have = ", ".join(sorted(t for t in targets if t)) or "none"
        raise exception.InvalidRequest(
            f"disks: the guest has no disk {', '.join(unknown)} (its disks: {have})")
