"""What the clusterset zone answers: a pure function of the records and the question.

This is the *resolver* of dnslib's split (transport / codec / policy / hooks): it
decides the records of an answer as dnslib RRs and knows nothing of sockets or
caching. It runs with the store lock held, once per (name, type) and records
generation; ``answers.py`` packs its result into wire templates.

Names (``<zone>`` is ``clusterset.local`` unless configured), as upstream Lighthouse
and the Kubernetes DNS spec define them:

* ``<svc>.<ns>.svc.<zone>`` A: a ClusterIP service's global IP, from the local
  cluster when it exports the service with ready backends, else one variant per
  healthy cluster with ready backends (the transport rotates through them: round
  robin); a headless service's ready endpoints in every healthy cluster. A
  *balanced* service (every export says so: the oldest export's choice, which the
  exporters copy onto their slices) rotates over every healthy cluster with ready
  backends, the local one included, each as often as its ready backends (reduced
  by their common divisor, at most :data:`MAX_BALANCED_VARIANTS` variants). A
  ClusterSetIP service whose exports say DNS answers its VIP gets the VIP instead
  (while some cluster could take the client): the VIP table on every node spreads
  new connections by the same choice (``chosen_clusters``).
* ``<cluster>.<svc>.<ns>.svc.<zone>`` A: that cluster's global IP (or ready
  endpoints), whatever its health, as upstream: the client asked for it by name.
* ``<hostname>.<cluster>.<svc>.<ns>.svc.<zone>`` A: a headless endpoint.
* SRV at ``[_<port>._<proto>.][<cluster>.]<svc>.<ns>.svc.<zone>``: priority 0,
  weight 50 (as upstream), target the service name (ClusterIP) or each ready
  endpoint's name (headless), with the targets' A records as additional data.
* ``<zone>`` SOA: the SOA. Every other type at an existing name: NODATA.
* Names that do not exist: NXDOMAIN. Empty non-terminals (``svc.<zone>``,
  ``<ns>.svc.<zone>``, ``_<proto>.<svc>...``) exist while something lives below
  them, so they get NODATA, never an NXDOMAIN that would deny the names below
  (RFC 8020). Negative answers carry the SOA (RFC 2308), TTL = the zone TTL.

A service is headless when every cluster exports it headless; in a mixed one the
ClusterIP exports win. Global IPs are IPv4, so AAAA is always NODATA.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dnslib import RR, SOA, SRV, A, DNSLabel

from lighthouse.dns.records import ClusterExport, ClusterID, DepKey, ServicePort, ServiceRecords
from lighthouse.dns.wire import QType, Rcode

Labels = tuple[bytes, ...]

SRV_PRIORITY = 0
SRV_WEIGHT = 50  # upstream Lighthouse's value
# A balanced answer's rotation length: weights beyond it are scaled down (each
# cluster keeps at least one turn), so a 1000-pod cluster costs no 1000 variants.
MAX_BALANCED_VARIANTS = 64

_STATIC: DepKey = ("static",)
_ZONE: DepKey = ("zone",)


@dataclass(frozen=True)
class Zone:
    """The zone we are authoritative for, its TTL and its SOA (serial = start time)."""

    name: str = "clusterset.local"
    ttl: int = 5
    serial: int = field(default_factory=lambda: int(time.time()) & 0xFFFFFFFF)

    def __post_init__(self) -> None:
        if not 0 <= self.ttl < 2**31:
            raise ValueError("ttl out of range")
        labels = self.labels
        if not labels or any(not 0 < len(x) < 64 for x in labels):
            raise ValueError(f"bad zone name {self.name!r}")

    @property
    def labels(self) -> Labels:
        return tuple(x.encode("ascii").lower() for x in self.name.strip(".").split("."))

    def soa(self) -> RR:
        labels = self.labels
        # refresh / retry / expire matter to secondaries only; minimum is the
        # negative-caching TTL, kept equal to the record TTL.
        rdata = SOA(
            mname=DNSLabel((b"ns", b"dns", *labels)),
            rname=DNSLabel((b"hostmaster", *labels)),
            times=(self.serial, 7200, 1800, 86400, self.ttl),
        )
        return RR(DNSLabel(labels), QType.SOA, rdata=rdata, ttl=self.ttl)


@dataclass
class Section:
    """The records of one answer variant."""

    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)


@dataclass
class Resolution:
    """An answer: its rcode, what it depends on, and one or more variants.

    Several variants mean round robin: each is served in turn.
    """

    rcode: Rcode
    dep: DepKey
    variants: list[Section]


def in_zone(labels: Labels, zone: Zone) -> bool:
    zl = zone.labels
    return len(labels) >= len(zl) and labels[len(labels) - len(zl) :] == zl


def resolve(records: ServiceRecords, zone: Zone, labels: Labels, qtype: int) -> Resolution:
    """Answer ``labels`` (lowercased, in ``zone``) for ``qtype``; hold ``records.lock``."""
    return _Resolver(records, zone, labels, qtype).run()


class _Resolver:
    def __init__(self, records: ServiceRecords, zone: Zone, labels: Labels, qtype: int):
        self.records = records
        self.zone = zone
        self.labels = labels
        self.qtype = qtype
        self.rel = labels[: len(labels) - len(zone.labels)]

    # -- outcomes ------------------------------------------------------------

    def negative(self, rcode: Rcode, dep: DepKey) -> Resolution:
        return Resolution(rcode, dep, [Section(authority=[self.zone.soa()])])

    def exists(self, found: bool, dep: DepKey) -> Resolution:
        """NODATA when the name exists, NXDOMAIN when not."""
        return self.negative(Rcode.NOERROR if found else Rcode.NXDOMAIN, dep)

    def positive(self, variants: list[Section], dep: DepKey) -> Resolution:
        variants = [v for v in variants if v.answer]
        if not variants:
            return self.negative(Rcode.NOERROR, dep)
        return Resolution(Rcode.NOERROR, dep, variants)

    # -- records ---------------------------------------------------------------

    def a(self, name: Labels, ip: str) -> RR:
        return RR(DNSLabel(name), QType.A, rdata=A(ip), ttl=self.zone.ttl)

    def srv(self, port: int, target: Labels) -> RR:
        rdata = SRV(priority=SRV_PRIORITY, weight=SRV_WEIGHT, port=port, target=DNSLabel(target))
        return RR(DNSLabel(self.labels), QType.SRV, rdata=rdata, ttl=self.zone.ttl)

    # -- dispatch --------------------------------------------------------------

    def run(self) -> Resolution:
        rel = self.rel
        if not rel:
            if self.qtype == QType.SOA:
                return Resolution(Rcode.NOERROR, _ZONE, [Section(answer=[self.zone.soa()])])
            return self.negative(Rcode.NOERROR, _ZONE)
        if rel[-1] != b"svc":
            return self.negative(Rcode.NXDOMAIN, _STATIC)
        if len(rel) == 1:
            return self.exists(len(self.records) > 0, _ZONE)
        ns = rel[-2].decode("latin-1")
        if len(rel) == 2:
            return self.exists(self.records.has_namespace(ns), ("ns", ns))
        svc = rel[-3].decode("latin-1")
        dep: DepKey = ("svc", ns, svc)
        exports = self.records.exports((ns, svc))
        if not exports:
            return self.negative(Rcode.NXDOMAIN, dep)
        return self.service_name(rel[:-3], (ns, svc), exports, dep)

    def service_name(
        self,
        rest: Labels,
        key: tuple[str, str],
        exports: Mapping[ClusterID, ClusterExport],
        dep: DepKey,
    ) -> Resolution:
        under = [x.startswith(b"_") for x in rest]
        match under:
            case []:
                return self.service(key, exports, dep, port=None)
            case [False]:
                export = exports.get(rest[0].decode("latin-1"))
                if export is None:
                    return self.negative(Rcode.NXDOMAIN, dep)
                return self.cluster(key, export, dep, port=None)
            case [True]:
                return self.exists(_has_proto(exports.values(), rest[0][1:]), dep)
            case [True, True]:
                port = (rest[0][1:], rest[1][1:])
                if not _matching_ports(exports.values(), port):
                    return self.negative(Rcode.NXDOMAIN, dep)
                return self.service(key, exports, dep, port=port)
            case [True, False]:
                export = exports.get(rest[1].decode("latin-1"))
                found = export is not None and _has_proto([export], rest[0][1:])
                return self.exists(found, dep)
            case [False, False]:
                export = exports.get(rest[1].decode("latin-1"))
                if export is None or not export.headless:
                    return self.negative(Rcode.NXDOMAIN, dep)
                return self.host(key, export, rest[0].decode("latin-1"), dep)
            case [True, True, False]:
                export = exports.get(rest[2].decode("latin-1"))
                port = (rest[0][1:], rest[1][1:])
                if export is None or not _matching_ports([export], port):
                    return self.negative(Rcode.NXDOMAIN, dep)
                return self.cluster(key, export, dep, port=port)
        return self.negative(Rcode.NXDOMAIN, dep)

    # -- names -----------------------------------------------------------------

    def service(
        self,
        key: tuple[str, str],
        exports: Mapping[ClusterID, ClusterExport],
        dep: DepKey,
        *,
        port: tuple[bytes, bytes] | None,
    ) -> Resolution:
        if self.qtype not in (QType.A, QType.SRV) or (port and self.qtype != QType.SRV):
            return self.negative(Rcode.NOERROR, dep)
        cluster_ip = [e for e in exports.values() if not e.headless]
        target = self.service_labels(key)
        if cluster_ip:
            picked = self.pick(cluster_ip)
            vip, vip_in_dns = service_vip(cluster_ip)
            if vip and vip_in_dns and picked:  # the VIP spreads connections itself
                if self.qtype == QType.A:
                    return self.positive([Section(answer=[self.a(self.labels, vip)])], dep)
                return self.positive([self.srv_section(picked[0], target, vip, port)], dep)
            variants = []
            for export in picked:
                assert export.global_ip is not None
                if self.qtype == QType.A:
                    variants.append(Section(answer=[self.a(self.labels, export.global_ip)]))
                else:
                    variants.append(self.srv_section(export, target, export.global_ip, port))
            return self.positive(variants, dep)
        healthy = [e for e in self.ordered(exports.values()) if self.records.is_healthy(e.cluster)]
        return self.positive([self.headless(key, healthy, port)], dep)

    def cluster(
        self,
        key: tuple[str, str],
        export: ClusterExport,
        dep: DepKey,
        *,
        port: tuple[bytes, bytes] | None,
    ) -> Resolution:
        if self.qtype not in (QType.A, QType.SRV) or (port and self.qtype != QType.SRV):
            return self.negative(Rcode.NOERROR, dep)
        if export.global_ip is not None:
            if self.qtype == QType.A:
                return self.positive([Section(answer=[self.a(self.labels, export.global_ip)])], dep)
            target = (export.cluster.encode(), *self.service_labels(key))
            return self.positive([self.srv_section(export, target, export.global_ip, port)], dep)
        return self.positive([self.headless(key, [export], port)], dep)

    def host(
        self, key: tuple[str, str], export: ClusterExport, hostname: str, dep: DepKey
    ) -> Resolution:
        endpoints = [ep for ep in export.endpoints if ep.dns_name == hostname]
        if not endpoints:
            return self.negative(Rcode.NXDOMAIN, dep)
        if self.qtype != QType.A:
            return self.negative(Rcode.NOERROR, dep)
        ips = _unique(ep.ip for ep in endpoints if ep.ready)
        return self.positive([Section(answer=[self.a(self.labels, ip) for ip in ips])], dep)

    # -- helpers ---------------------------------------------------------------

    def service_labels(self, key: tuple[str, str]) -> Labels:
        ns, svc = key
        return (svc.encode(), ns.encode(), b"svc", *self.zone.labels)

    def ordered(self, exports: Iterable[ClusterExport]) -> list[ClusterExport]:
        """Local cluster first, then by cluster id: stable answers, stable caches."""
        local = self.records.local_cluster
        return sorted(exports, key=lambda e: (e.cluster != local, e.cluster))

    def pick(self, exports: list[ClusterExport]) -> list[ClusterExport]:
        """The clusters a ClusterIP name may send a client to, in rotation order."""
        chosen, balanced = chosen_clusters(self.records, exports)
        return weighted_rotation(chosen) if balanced else chosen

    def srv_section(
        self,
        export: ClusterExport,
        target: Labels,
        ip: str,
        port: tuple[bytes, bytes] | None,
    ) -> Section:
        ports = _select_ports(export.ports, port)
        if not ports:
            return Section()
        return Section(
            answer=[self.srv(p, target) for p in ports], additional=[self.a(target, ip)]
        )

    def headless(
        self,
        key: tuple[str, str],
        exports: list[ClusterExport],
        port: tuple[bytes, bytes] | None,
    ) -> Section:
        section = Section()
        if self.qtype == QType.A:
            ips = _unique(ep.ip for e in exports for ep in e.endpoints if ep.ready)
            section.answer = [self.a(self.labels, ip) for ip in ips]
            return section
        service = self.service_labels(key)
        glue: dict[Labels, str] = {}
        for export in exports:
            ports = _select_ports(export.ports, port)
            for ep in export.endpoints:
                if not ep.ready:
                    continue
                target = (ep.dns_name.encode(), export.cluster.encode(), *service)
                section.answer.extend(self.srv(p, target) for p in ports)
                if ports:
                    glue.setdefault(target, ep.ip)
        section.additional = [self.a(t, ip) for t, ip in glue.items()]
        return section


def chosen_clusters(records: ServiceRecords, exports: Iterable[ClusterExport]
                    ) -> tuple[list[ClusterExport], bool]:
    """The ClusterIP exports of one service a client may be sent to, local first, then
    by cluster id, and whether they share clients by weight (balanced) rather than
    equally. Local-first: the local cluster alone when it has ready backends, else
    every healthy cluster with ready backends; balanced (every export says so): every
    healthy cluster with ready backends, the local one included. The DNS answers
    rotate over them and the VIP table spreads new connections over them, so both
    make the same choice. Hold ``records.lock``."""
    local = records.local_cluster
    ordered = sorted(exports, key=lambda e: (e.cluster != local, e.cluster))
    if ordered and all(e.balanced for e in ordered):
        return [e for e in ordered
                if e.ready and e.weight > 0 and records.is_healthy(e.cluster)], True
    if ordered and ordered[0].cluster == local and ordered[0].ready:
        return [ordered[0]], False
    return [e for e in ordered if e.ready and records.is_healthy(e.cluster)], False


def service_vip(exports: Iterable[ClusterExport]) -> tuple[str | None, bool]:
    """The service's ClusterSetIP VIP (the one most exports state: they agree once the
    exporters converge; a tie goes to the lowest) and whether DNS answers it."""
    exports = [e for e in exports if e.vip]
    counts = Counter(e.vip for e in exports)
    if not counts:
        return None, False
    vip = min(counts, key=lambda v: (-counts[v], ipaddress.IPv4Address(v)))
    return vip, any(e.vip_in_dns for e in exports if e.vip == vip)


def weighted_rotation(exports: list[ClusterExport]) -> list[ClusterExport]:
    """Each export as often as its weight, interleaved (smooth weighted round robin:
    weights 3 and 1 give a a b a, not a a a b), so consecutive clients spread."""
    weights = [e.weight for e in exports]
    if not weights:
        return []
    divisor = math.gcd(*weights)
    weights = [w // divisor for w in weights]
    total = sum(weights)
    if total > MAX_BALANCED_VARIANTS:
        weights = [max(1, w * MAX_BALANCED_VARIANTS // total) for w in weights]
        total = sum(weights)
    current = [0] * len(weights)
    out = []
    for _ in range(total):
        current = [c + w for c, w in zip(current, weights, strict=True)]
        best = max(range(len(current)), key=lambda i: current[i])
        current[best] -= total
        out.append(exports[best])
    return out


def _unique(ips: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ips))


def _select_ports(
    ports: Iterable[ServicePort], wanted: tuple[bytes, bytes] | None
) -> list[int]:
    """Port numbers for SRV, once each (as upstream), optionally by name and protocol."""
    if wanted is None:
        chosen = list(ports)
    else:
        name, proto = wanted
        chosen = [
            p for p in ports
            if p.name and p.name.encode() == name and p.protocol.lower().encode() == proto
        ]
    return list(dict.fromkeys(p.port for p in chosen))


def _matching_ports(exports: Iterable[ClusterExport], wanted: tuple[bytes, bytes]) -> bool:
    return any(_select_ports(e.ports, wanted) for e in exports)


def _has_proto(exports: Iterable[ClusterExport], proto: bytes) -> bool:
    return any(p.name and p.protocol.lower().encode() == proto for e in exports for p in e.ports)
