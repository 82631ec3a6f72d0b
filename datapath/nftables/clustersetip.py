"""ClusterSetIP VIPs on a node: a pod's connection to a VIP goes to one exporting cluster.

The VIP is translated on the client pod's own node, in the nat prerouting hook just
before kube-proxy (priority ``dstnat - 10``), on the connection's first packet only:

* a **remote** cluster is chosen: ``dnat`` to that cluster's global IP for the
  service (same port). The connection then takes the usual clusterset path (the
  route agent's route to the gateway, the gateway's egress SNAT, the remote
  gateway's ingress mapping), and conntrack turns the replies' source back into
  the VIP;
* the **local** cluster is chosen: the destination is rewritten to the service's
  ClusterIP *without* a NAT binding and the packet goes on to kube-proxy, whose
  DNAT to a pod is then the connection's binding. Conntrack recorded the VIP as the
  original destination, so the replies come from the VIP here too.

The choice is ``numgen random`` over cumulative weights (each cluster's ready
backends): spread per connection, and sticky because only the first packet of a
connection reaches nat chains. A new table takes effect for new connections;
established ones keep their binding (a cluster that drops out of the table stops
getting new connections, its established ones are left alone). ICMP echo to a VIP
is answered by the node (``redirect``), so ``ping`` works as for a ClusterIP that
answers. A VIP without a usable cluster drops new connections (they would
otherwise leave by the default route).

The whole table is replaced in one transaction (``apply``): it holds one chain
per service and one per backend, few enough that diffing would buy nothing. The
table is independent of the Globalnet gateway datapath (nftables or eBPF): it
runs on every node, the gateway included.

The table's content travels as JSON (``plan_json`` / ``plan_from_json``): the
Lighthouse agent, which knows the exports and the clusters' health, writes it into
one ConfigMap; the route agent of every node reads it and applies it here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import netaddr

from datapath.nftables.kernel import NftCommands
from datapath.nftables.model import quote

log = logging.getLogger(__name__)

FAMILY = "ip"
TABLE = "globalnet-clusterset-ip"
TABLE_REF = f"{FAMILY} {TABLE}"
PRIORITY = "dstnat - 10"  # before kube-proxy's service DNAT
PROTOCOLS = ("tcp", "udp", "sctp")
PORTS_COMMENT = "VIP . protocol . port: the services' exported ports"
TABLE_COMMENT = "Globalnet ClusterSetIP VIPs: connections to a VIP go to one exporting cluster"


@dataclass(frozen=True, order=True)
class VipBackend:
    """One exporting cluster a VIP's connections may go to.

    ``ip``: the local ClusterIP when ``local``, else the cluster's global IP for the
    service; ``weight``: its share of new connections (its ready backends).
    """

    cluster: str
    ip: str
    weight: int = 1
    local: bool = False


@dataclass(frozen=True)
class VipService:
    """A ClusterSetIP service as a node translates it."""

    vip: str
    owner: str  # "<namespace>/<name>", for the comments
    ports: tuple[tuple[str, int], ...]  # (protocol, port)
    backends: tuple[VipBackend, ...] = ()

    def __post_init__(self) -> None:
        for what, ip in (("VIP", self.vip), *(("backend", b.ip) for b in self.backends)):
            try:
                if netaddr.IPAddress(ip).version != 4:
                    raise ValueError
            except (netaddr.AddrFormatError, ValueError):
                raise ValueError(f"{self.owner}: {what} {ip!r} is not an IPv4 address") from None
        for protocol, port in self.ports:
            if protocol not in PROTOCOLS or not 0 < port < 65536:
                raise ValueError(f"{self.owner}: port {protocol}/{port} is not a "
                                 f"{'/'.join(PROTOCOLS)} port")
        if any(b.weight < 0 for b in self.backends):
            raise ValueError(f"{self.owner}: negative weight")

    @property
    def usable(self) -> tuple[VipBackend, ...]:
        """The backends that get new connections, in a stable order (local first)."""
        return tuple(sorted((b for b in self.backends if b.weight > 0),
                            key=lambda b: (not b.local, b.cluster)))


PLAN_VERSION = 1


def plan_json(services: Iterable[VipService]) -> str:
    """The table's services as a JSON document (sorted: equal plans are equal text)."""
    entries = [{"vip": s.vip, "owner": s.owner, "ports": [list(p) for p in sorted(s.ports)],
                "backends": [asdict(b) for b in sorted(s.backends)]}
               for s in sorted(services, key=lambda s: s.vip)]
    return json.dumps({"version": PLAN_VERSION, "services": entries}, sort_keys=True,
                      separators=(",", ":"))


def plan_from_json(text: str) -> list[VipService]:
    """The services of a :func:`plan_json` document; ValueError (one line) when it is
    not one."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the VIP table is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("version") != PLAN_VERSION or not isinstance(
            doc.get("services"), list):
        raise ValueError(f"the VIP table is not a version {PLAN_VERSION} plan")
    return [_service_of(entry) for entry in doc["services"]]


def _service_of(entry: Any) -> VipService:
    try:
        fields = (str(entry["vip"]), str(entry["owner"]),
                  tuple((str(proto), int(port)) for proto, port in entry["ports"]),
                  tuple(VipBackend(cluster=str(b["cluster"]), ip=str(b["ip"]),
                                   weight=int(b["weight"]), local=bool(b["local"]))
                        for b in entry["backends"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"a VIP table entry is malformed ({type(exc).__name__}: {exc}): "
                         f"{json.dumps(entry)[:120]}") from None
    vip, owner, ports, backends = fields
    return VipService(vip=vip, owner=owner, ports=ports, backends=backends)


def service_chain(service: VipService) -> str:
    return f"vip-{service.vip}"


def backend_chain(service: VipService, backend: VipBackend) -> str:
    return f"vip-{service.vip}-{backend.cluster}"


def _choice(service: VipService) -> str:
    """The rule spreading new connections over the usable backends by weight."""
    usable = service.usable
    if not usable:
        return f"drop comment {quote('no exporting cluster has ready backends')}"
    if len(usable) == 1:
        return f"goto {backend_chain(service, usable[0])}"
    total = sum(b.weight for b in usable)
    entries, start = [], 0
    for backend in usable:
        end = start + backend.weight - 1
        span = str(start) if end == start else f"{start}-{end}"
        entries.append(f"{span} : goto {backend_chain(service, backend)}")
        start = end + 1
    return f"numgen random mod {total} vmap {{ {', '.join(entries)} }}"


def _shares(service: VipService) -> str:
    shown = ", ".join(f"{b.cluster}{' (local)' if b.local else ''} {b.weight}"
                      for b in service.usable)
    return f"{service.owner} {service.vip}: {shown or 'no cluster'}"


def render_table(services: Iterable[VipService]) -> str:
    """The table's nft script: create (or replace) it with exactly ``services``."""
    services = sorted(services, key=lambda s: s.vip)
    seen: dict[str, str] = {}
    for service in services:
        if service.vip in seen:
            raise ValueError(f"VIP {service.vip} is held by both {seen[service.vip]} and "
                             f"{service.owner}")
        seen[service.vip] = service.owner
    lines = [f"table {TABLE_REF} {{",
             f"\tcomment {quote(TABLE_COMMENT)}",
             "\tchain prerouting {",
             f"\t\tcomment {quote('first packet of a connection to a VIP: choose its cluster')}",
             f"\t\ttype nat hook prerouting priority {PRIORITY}; policy accept;"]
    if services:
        vips = ", ".join(s.vip for s in services)
        lines.append(f"\t\tmeta l4proto icmp ip daddr {{ {vips} }} redirect "
                     f"comment {quote('ping to a VIP is answered by this node')}")
        ports = [f"{s.vip} . {proto} . {port} : goto {service_chain(s)}"
                 for s in services for proto, port in sorted(set(s.ports))]
        if ports:
            lines.append(f"\t\tip daddr . meta l4proto . th dport vmap {{ {', '.join(ports)} }} "
                         f"comment {quote(PORTS_COMMENT)}")
    lines.append("\t}")
    for service in services:
        lines += [f"\tchain {service_chain(service)} {{",
                  f"\t\tcomment {quote(_shares(service))}",
                  f"\t\t{_choice(service)}", "\t}"]
        for backend in service.usable:
            if backend.local:
                rule = (f"ip daddr set {backend.ip} accept comment "
                        f"{quote('local ClusterIP: kube-proxy picks the pod')}")
                what = f"{backend.cluster} (local): ClusterIP {backend.ip}"
            else:
                rule = f"dnat ip to {backend.ip} comment {quote('through the gateway')}"
                what = f"{backend.cluster}: global IP {backend.ip}"
            lines += [f"\tchain {backend_chain(service, backend)} {{",
                      f"\t\tcomment {quote(what)}", f"\t\t{rule}", "\t}"]
    lines.append("}")
    return "\n".join(lines) + "\n"


class VipTable:
    """The node's ClusterSetIP table in one network namespace (None: our own)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._commands = NftCommands(netns, cli=True)  # see NftCommands: small, rare changes

    def apply(self, services: Sequence[VipService]) -> None:
        """Make the table hold exactly ``services``, atomically (new connections only)."""
        self._commands.run(f"table {TABLE_REF}\ndelete table {TABLE_REF}\n"
                           f"{render_table(services)}")
        log.debug("ClusterSetIP table: %d services", len(services))

    def listing(self) -> str:
        """``nft list table`` of ours ("" when there is none)."""
        return self._commands.list_table(TABLE_REF)

    def delete(self) -> bool:
        """Remove the table; False when there was none (established connections stay)."""
        return self._commands.delete_table(TABLE_REF)
