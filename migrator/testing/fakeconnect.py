"""The fake ``virConnect``: one connection to one simulated host's libvirtd.

Connection facts, domain look-ups and listings, defining and creating guests,
event registration and delivery.  Domain calls live in
:mod:`migrator.testing.fakedomain`; the module-level functions that open a
connection in :mod:`migrator.testing.fakelibvirt`.
"""

from __future__ import annotations

import itertools
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from migrator import constants
from migrator.testing import dirtyrate
from migrator.testing import errors as E
from migrator.testing.call import Call
from migrator.testing.fakedomain import virDomain
from migrator.testing.libvirt_values import (
    VIR_CONNECT_CLOSE_REASON_EOF,
    VIR_CONNECT_LIST_DOMAINS_ACTIVE,
    VIR_CONNECT_LIST_DOMAINS_INACTIVE,
    VIR_CONNECT_LIST_DOMAINS_OTHER,
    VIR_CONNECT_LIST_DOMAINS_PAUSED,
    VIR_CONNECT_LIST_DOMAINS_PERSISTENT,
    VIR_CONNECT_LIST_DOMAINS_RUNNING,
    VIR_CONNECT_LIST_DOMAINS_SHUTOFF,
    VIR_CONNECT_LIST_DOMAINS_TRANSIENT,
    VIR_DOMAIN_EVENT_DEFINED_ADDED,
    VIR_DOMAIN_EVENT_DEFINED_UPDATED,
    VIR_DOMAIN_EVENT_STARTED_BOOTED,
    VIR_ERR_OPERATION_DENIED,
)
from migrator.testing.model import DomainRecord, Event, Guest, Host, version_int

if TYPE_CHECKING:
    from migrator.testing.world import World


class virConnect:  # noqa: N801 - libvirt's name
    """A connection to one host's libvirtd.  Two opens give two independent connections."""

    _callback_ids = itertools.count(0)

    def __init__(self, world: World, host: Host, uri: str, readonly: bool = False):
        self._world = world
        self.host = host
        self._uri = uri
        self._readonly = readonly
        self.alive = True
        self._closed = False
        self._callbacks: dict[int, tuple[str | None, int, Callable[..., Any], Any]] = {}
        self._close_callbacks: list[tuple[Callable[..., Any], Any]] = []
        # threads blocked in migrateToURI3 on this connection
        self._blocked_in_migration: set[int] = set()
        world.add_connection(self)

    def _call(self, method: str, guest: str | None = None) -> Call:
        return Call(self, method, guest)

    def _domain(self, rec: DomainRecord) -> virDomain:
        return virDomain(self, rec.uuid, rec.name)

    # connection facts

    def getURI(self) -> str:  # noqa: N802
        with self._call("getURI"):
            return self._uri

    def getHostname(self) -> str:  # noqa: N802
        with self._call("getHostname"):
            return self.host.hostname

    def getLibVersion(self) -> int:  # noqa: N802
        with self._call("getLibVersion"):
            return version_int(self.host.libvirt_version)

    def getVersion(self) -> int:  # noqa: N802
        """QEMU's version as libvirt encodes it (7.2.22 -> 7002022)."""
        with self._call("getVersion"):
            return version_int(self.host.qemu_version)

    def getType(self) -> str:  # noqa: N802
        with self._call("getType"):
            return "QEMU"

    def isAlive(self) -> int:  # noqa: N802
        return int(self.alive and not self._closed)

    def isSecure(self) -> int:  # noqa: N802
        return 1 if self._uri.startswith(("qemu+tls", "qemu+ssh", "qemu:")) else 0

    def setKeepAlive(self, interval: int, count: int) -> int:  # noqa: N802
        with self._call("setKeepAlive"):
            return 0

    def close(self) -> int:
        if not self._closed:
            self._closed = True
            self._world.remove_connection(self)
        return 0

    # domains

    def lookupByName(self, name: str) -> virDomain:  # noqa: N802
        with self._call("lookupByName", name):
            rec = self.host.by_name(name)
            if rec is None:
                raise E.no_domain_name(name).exc()
            return self._domain(rec)

    def lookupByUUIDString(self, uuidstr: str) -> virDomain:  # noqa: N802
        with self._call("lookupByUUIDString"):
            rec = self.host.domains.get(str(uuidstr).lower())
            if rec is None:
                raise E.spec(
                    constants.VIR_ERR_NO_DOMAIN,
                    constants.VIR_FROM_QEMU,
                    f"no domain with matching uuid '{uuidstr}'",
                ).exc()
            return self._domain(rec)

    def lookupByUUID(self, uuid: bytes) -> virDomain:  # noqa: N802
        return self.lookupByUUIDString(str(uuidlib.UUID(bytes=bytes(uuid))))

    def lookupByID(self, id: int) -> virDomain:  # noqa: N802, A002
        with self._call("lookupByID"):
            for rec in self.host.domains.values():
                if rec.active and rec.id == id:
                    return self._domain(rec)
            raise E.spec(
                constants.VIR_ERR_NO_DOMAIN, constants.VIR_FROM_QEMU,
                f"no domain with matching id {id}"
            ).exc()

    def listAllDomains(self, flags: int = 0) -> list[virDomain]:  # noqa: N802
        with self._call("listAllDomains"):
            return [self._domain(r) for r in self.host.domains.values() if _matches(r, flags)]

    def listDomainsID(self) -> list[int]:  # noqa: N802
        with self._call("listDomainsID"):
            return [r.id for r in self.host.domains.values() if r.active]

    def domainListGetStats(  # noqa: N802
        self, doms: list[virDomain], stats: int = 0, flags: int = 0
    ) -> list[tuple[virDomain, dict[str, Any]]]:
        """The state and dirty-rate groups (:mod:`migrator.testing.dirtyrate`)."""
        with self._call("domainListGetStats") as world:
            recs = [(d, d._rec()) for d in doms]
            return [(d, dirtyrate.domain_stats(self.host, r, stats, flags, world.now))
                    for d, r in recs]

    def getAllDomainStats(  # noqa: N802
        self, stats: int = 0, flags: int = 0
    ) -> list[tuple[virDomain, dict[str, Any]]]:
        """Every domain's :meth:`domainListGetStats` entry; the list flags filter them."""
        with self._call("getAllDomainStats"):
            doms = [self._domain(r) for r in self.host.domains.values()
                    if _matches(r, flags & 0xFF)]
        return self.domainListGetStats(doms, stats, flags & ~0xFF)

    def numOfDomains(self) -> int:  # noqa: N802
        with self._call("numOfDomains"):
            return sum(1 for r in self.host.domains.values() if r.active)

    def defineXML(self, xml: str) -> virDomain:  # noqa: N802
        """Define a persistent, shut-off guest from ``<name>``, ``<uuid>``, ``<memory>``."""
        with self._call("defineXML") as world:
            self._writable("virDomainDefineXML")
            rec = _record_from_xml(xml, persistent=True)
            existing = self.host.domains.get(rec.uuid)
            if existing is not None:
                existing.guest = rec.guest
                world.lifecycle(
                    self.host,
                    existing,
                    constants.VIR_DOMAIN_EVENT_DEFINED,
                    VIR_DOMAIN_EVENT_DEFINED_UPDATED,
                )
                existing.persistent = True
                return self._domain(existing)
            if self.host.by_name(rec.name) is not None:
                raise E.spec(
                    constants.VIR_ERR_OPERATION_FAILED,
                    constants.VIR_FROM_DOMAIN,
                    f"domain '{rec.name}' already exists with uuid "
                    f"{self.host.by_name(rec.name).uuid}",  # type: ignore[union-attr]
                ).exc()
            self.host.domains[rec.uuid] = rec
            world.lifecycle(
                self.host, rec, constants.VIR_DOMAIN_EVENT_DEFINED, VIR_DOMAIN_EVENT_DEFINED_ADDED
            )
            return self._domain(rec)

    def createXML(self, xml: str, flags: int = 0) -> virDomain:  # noqa: N802
        """Start a transient guest from XML."""
        with self._call("createXML") as world:
            self._writable("virDomainCreateXML")
            rec = _record_from_xml(xml, persistent=False)
            if self.host.by_name(rec.name) is not None or rec.uuid in self.host.domains:
                raise E.spec(
                    constants.VIR_ERR_OPERATION_FAILED,
                    constants.VIR_FROM_DOMAIN,
                    f"domain '{rec.name}' already exists",
                ).exc()
            rec.id = self.host.next_id()
            self.host.domains[rec.uuid] = rec
            world.transition(self.host, rec, constants.VIR_DOMAIN_RUNNING,
                             constants.VIR_DOMAIN_RUNNING_BOOTED,
                             constants.VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_BOOTED)
            return self._domain(rec)

    def _writable(self, api: str) -> None:
        if self._readonly:
            raise E.spec(
                VIR_ERR_OPERATION_DENIED,
                constants.VIR_FROM_NONE,
                f"read only access prevents {api}",
            ).exc()

    # events

    def domainEventRegisterAny(  # noqa: N802
        self,
        dom: virDomain | None,
        eventID: int,  # noqa: N803
        cb: Callable[..., Any],
        opaque: Any = None,
    ) -> int:
        """LIFECYCLE, MIGRATION_ITERATION and JOB_COMPLETED are emitted; others never fire."""
        with self._call("domainEventRegisterAny") as world:
            if world.require_event_loop and not world.event_loop_registered:
                raise E.event_loop_missing().exc()
            cid = next(self._callback_ids)
            uuid = dom._uuid if dom is not None else None
            self._callbacks[cid] = (uuid, eventID, cb, opaque)
            world.listen(self, eventID, uuid)
            return cid

    def domainEventDeregisterAny(self, callbackID: int) -> int:  # noqa: N802, N803
        with self._call("domainEventDeregisterAny") as world:
            found = self._callbacks.pop(callbackID, None)
            if found is None:
                raise E.spec(
                    constants.VIR_ERR_INVALID_ARG,
                    constants.VIR_FROM_NONE,
                    f"could not find event callback {callbackID} for deletion",
                ).exc()
            world.unlisten(self, found[1], found[0])
            return 0

    def registerCloseCallback(self, cb: Callable[..., Any], opaque: Any = None) -> int:  # noqa: N802
        self._close_callbacks.append((cb, opaque))
        return 0

    def unregisterCloseCallback(self) -> int:  # noqa: N802
        self._close_callbacks.clear()
        return 0

    def _deliver(self, ev: Event) -> None:
        for dom_uuid, event_id, cb, opaque in list(self._callbacks.values()):
            if event_id != ev.event_id or (dom_uuid is not None and dom_uuid != ev.uuid):
                continue
            cb(self, virDomain(self, ev.uuid, ev.name), *ev.payload, opaque)

    def _closed_by_peer(self) -> None:
        self.alive = False

    def _fire_close_callbacks(self) -> None:
        for cb, opaque in list(self._close_callbacks):
            cb(self, VIR_CONNECT_CLOSE_REASON_EOF, opaque)

    def __repr__(self) -> str:
        return f"<fake virConnect {self._uri} host={self.host.name}>"


def _matches(rec: DomainRecord, flags: int) -> bool:
    if not flags:
        return True
    checks = (
        (
            VIR_CONNECT_LIST_DOMAINS_ACTIVE | VIR_CONNECT_LIST_DOMAINS_INACTIVE,
            {
                VIR_CONNECT_LIST_DOMAINS_ACTIVE: rec.active,
                VIR_CONNECT_LIST_DOMAINS_INACTIVE: not rec.active,
            },
        ),
        (
            VIR_CONNECT_LIST_DOMAINS_PERSISTENT | VIR_CONNECT_LIST_DOMAINS_TRANSIENT,
            {
                VIR_CONNECT_LIST_DOMAINS_PERSISTENT: rec.persistent,
                VIR_CONNECT_LIST_DOMAINS_TRANSIENT: not rec.persistent,
            },
        ),
        (
            VIR_CONNECT_LIST_DOMAINS_RUNNING
            | VIR_CONNECT_LIST_DOMAINS_PAUSED
            | VIR_CONNECT_LIST_DOMAINS_SHUTOFF
            | VIR_CONNECT_LIST_DOMAINS_OTHER,
            {
                VIR_CONNECT_LIST_DOMAINS_RUNNING: rec.state == constants.VIR_DOMAIN_RUNNING,
                VIR_CONNECT_LIST_DOMAINS_PAUSED: rec.state == constants.VIR_DOMAIN_PAUSED,
                VIR_CONNECT_LIST_DOMAINS_SHUTOFF: rec.state == constants.VIR_DOMAIN_SHUTOFF,
                VIR_CONNECT_LIST_DOMAINS_OTHER: rec.state
                not in (constants.VIR_DOMAIN_RUNNING, constants.VIR_DOMAIN_PAUSED,
                        constants.VIR_DOMAIN_SHUTOFF),
            },
        ),
    )
    for group, values in checks:
        if flags & group and not any(ok for bit, ok in values.items() if flags & bit):
            return False
    return True


def _record_from_xml(xml: str, persistent: bool) -> DomainRecord:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise E.spec(
            constants.VIR_ERR_INTERNAL_ERROR, constants.VIR_FROM_DOMAIN,
            f"(domain_definition):{exc}"
        ).exc() from None
    name = (root.findtext("name") or "").strip()
    if not name:
        raise E.spec(
            constants.VIR_ERR_NO_SUPPORT, constants.VIR_FROM_DOMAIN,
            "missing domain name information"
        ).exc()
    uuid = (root.findtext("uuid") or "").strip().lower() or str(
        uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"migrator-guest-{name}")
    )
    mem = root.find("memory")
    units = {
        "b": 1,
        "bytes": 1,
        "k": 1024,
        "kib": 1024,
        "m": 1024**2,
        "mib": 1024**2,
        "g": 1024**3,
        "gib": 1024**3,
    }
    memory = 1024**3
    if mem is not None and mem.text:
        memory = int(mem.text) * units.get(mem.get("unit", "KiB").lower(), 1024)
    vcpus = int(root.findtext("vcpu") or 1)
    return DomainRecord(
        name=name,
        uuid=uuid,
        guest=Guest(memory=memory, working_set=memory, vcpus=vcpus),
        state=constants.VIR_DOMAIN_SHUTOFF,
        reason=constants.VIR_DOMAIN_SHUTOFF_UNKNOWN,
        persistent=persistent,
    )
