"""The lab's address plan: a pure function of a few user choices.

Every cluster gets the *same* node network, pod CIDR and service CIDR: the point
of the lab is clusters that cannot route to each other without Globalnet. Only
the underlay that joins the gateways (and the Broker) differs per cluster.

Address conventions (defaults):
  underlay       198.18.0.0/24   broker .2, gateway node of cluster i: .10+i
  node network   172.18.0.0/24   control plane .2, node n: .10+n  (every cluster)
  pod CIDR       10.244.0.0/16   node n: 10.244.n.0/24, node side of pod veths .1
  service CIDR   10.96.0.0/16    (every cluster)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import netaddr

from datapath import cable_drivers

MAX_CLUSTERS = 32
MAX_NODES = 32
# The Globalnet agent backends a lab can run (`globalnet.agent --datapath`).
DATAPATHS = ("nftables", "ebpf")
MAX_GATEWAYS = 3
# The cable drivers `gateway.engine --cable-driver` knows.
CABLE_DRIVERS = cable_drivers.names()
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")


class TopologyError(ValueError):
    """A lab request that cannot be built; the message is one line for the user."""


@dataclass(frozen=True)
class LabSpec:
    """What the user asked for."""

    name: str = "demo"
    clusters: int = 2
    nodes: int = 2
    pod_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/16"
    node_cidr: str = "172.18.0.0/24"
    underlay_cidr: str = "198.18.0.0/24"
    api_port_base: int = 16443
    broker: bool = True
    globalnet: bool = False  # join the Broker's global CIDR and run Globalnet
    datapath: str = "nftables"  # the Globalnet agents' backend (DATAPATHS)
    cable_driver: str = "vxlan"  # the tunnel between gateways (CABLE_DRIVERS)
    gateways: int = 1  # gateway nodes per cluster (nodes 0..gateways-1), one active
    # With globalnet: a real Prometheus scraping every agent (lab/prometheus.py); about
    # 1 s to start and tens of MB, so on unless turned off.
    prometheus: bool = True


@dataclass(frozen=True)
class NodePlan:
    name: str
    netns: str
    index: int
    ip: str
    pod_cidr: str
    pod_gateway: str
    underlay_ip: str | None


@dataclass(frozen=True)
class ClusterPlan:
    name: str
    index: int
    cp_netns: str
    cp_ip: str
    node_prefixlen: int
    host_api_port: int
    nodes: tuple[NodePlan, ...]
    pod_cidr: str
    service_cidr: str

    @property
    def gateway(self) -> NodePlan:
        """The first gateway node: the active one when the lab comes up."""
        return self.nodes[0]

    @property
    def gateways(self) -> tuple[NodePlan, ...]:
        """Every gateway node (on the underlay, labelled for the gateway DaemonSet)."""
        return tuple(n for n in self.nodes if n.underlay_ip)


@dataclass(frozen=True)
class LabPlan:
    spec: LabSpec
    underlay_netns: str
    underlay_gateway_ip: str
    underlay_prefixlen: int
    broker_netns: str | None
    broker_ip: str | None
    broker_host_api_port: int | None
    clusters: tuple[ClusterPlan, ...]

    @property
    def prefix(self) -> str:
        return f"gn-{self.spec.name}-"

    def cluster(self, name: str) -> ClusterPlan:
        for c in self.clusters:
            if c.name == name:
                return c
        known = ", ".join(c.name for c in self.clusters)
        raise TopologyError(f"no cluster {name!r} in lab {self.spec.name!r} (clusters: {known})")


def _network(value: str, what: str) -> netaddr.IPNetwork:
    try:
        net = netaddr.IPNetwork(value, version=4)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise TopologyError(
            f"invalid {what} {value!r}: expected an IPv4 CIDR such as 10.0.0.0/16"
        ) from None
    if "/" not in value:
        raise TopologyError(f"invalid {what} {value!r}: the prefix length is missing")
    if net.ip != net.network:
        raise TopologyError(f"invalid {what} {value!r}: host bits set (did you mean {net.cidr}?)")
    return net


def plan_lab(spec: LabSpec) -> LabPlan:
    """Validate `spec` and derive every name and address the lab uses."""
    if not NAME_RE.match(spec.name):
        raise TopologyError(
            f"invalid lab name {spec.name!r}: "
            "1-8 lowercase letters or digits, starting with a letter"
        )
    if not 1 <= spec.clusters <= MAX_CLUSTERS:
        raise TopologyError(f"--clusters must be between 1 and {MAX_CLUSTERS}, got {spec.clusters}")
    if not 1 <= spec.nodes <= MAX_NODES:
        raise TopologyError(f"--nodes must be between 1 and {MAX_NODES}, got {spec.nodes}")
    if spec.datapath not in DATAPATHS:
        raise TopologyError(f"unknown --datapath {spec.datapath!r}: choose "
                            + " or ".join(DATAPATHS))
    if spec.datapath != DATAPATHS[0] and not spec.globalnet:
        raise TopologyError(f"--datapath {spec.datapath} needs --globalnet "
                            "(it is the Globalnet agents' datapath)")
    if spec.cable_driver not in CABLE_DRIVERS:
        raise TopologyError(f"unknown --cable-driver {spec.cable_driver!r}: choose "
                            + ", ".join(CABLE_DRIVERS))
    if spec.cable_driver != CABLE_DRIVERS[0] and not spec.globalnet:
        raise TopologyError(f"--cable-driver {spec.cable_driver} needs --globalnet "
                            "(the gateway engine runs with the agents)")
    if spec.datapath == "ebpf" and spec.cable_driver != CABLE_DRIVERS[0]:
        raise TopologyError(f"--datapath ebpf with --cable-driver {spec.cable_driver}: the "
                            "eBPF programs expect an Ethernet cable device (vxlan); "
                            f"{spec.cable_driver}'s is a layer-3 TUN")
    if not 1 <= spec.gateways <= min(MAX_GATEWAYS, spec.nodes):
        raise TopologyError(f"--gateways must be between 1 and {min(MAX_GATEWAYS, spec.nodes)} "
                            f"(at most --nodes, {spec.nodes}), got {spec.gateways}")
    pods = _network(spec.pod_cidr, "pod CIDR")
    services = _network(spec.service_cidr, "service CIDR")
    node_net = _network(spec.node_cidr, "node CIDR")
    underlay = _network(spec.underlay_cidr, "underlay CIDR")
    if pods.prefixlen > 24 - max(1, (spec.nodes - 1).bit_length()):
        raise TopologyError(f"pod CIDR {pods} is too small for {spec.nodes} nodes with a /24 each")
    if services.prefixlen > 28:
        raise TopologyError(f"service CIDR {services} is too small (at most /28)")
    if node_net.size < spec.nodes + 12:
        raise TopologyError(f"node CIDR {node_net} is too small for {spec.nodes} nodes")
    if underlay.size < 12 + MAX_GATEWAYS * MAX_CLUSTERS:
        raise TopologyError(f"underlay CIDR {underlay} is too small for {spec.clusters} clusters")
    nets = {"pod": pods, "service": services, "node": node_net, "underlay": underlay}
    names = list(nets)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if nets[a].first <= nets[b].last and nets[b].first <= nets[a].last:
                raise TopologyError(f"{a} CIDR {nets[a]} overlaps {b} CIDR {nets[b]}")
    if spec.globalnet and not spec.broker:
        raise TopologyError("Globalnet needs the Broker: it allocates the global CIDRs")
    if not 1024 <= spec.api_port_base <= 65535 - spec.clusters - 1:
        raise TopologyError(f"--api-port {spec.api_port_base} is out of range (1024-65500)")

    prefix = f"gn-{spec.name}-"
    node_subnets = list(pods.subnet(24, count=spec.nodes))
    clusters = []
    for ci in range(spec.clusters):
        cname = f"c{ci + 1}"
        nodes = []
        for ni in range(spec.nodes):
            sub = node_subnets[ni]
            nodes.append(
                NodePlan(
                    name=f"{cname}-node-{ni}",
                    netns=f"{prefix}{cname}-n{ni}",
                    index=ni,
                    ip=str(node_net.network + 10 + ni),
                    pod_cidr=str(sub),
                    pod_gateway=str(sub.network + 1),
                    # Gateway g of cluster c: .10+c, .42+c, .74+c (one block per g).
                    underlay_ip=(str(underlay.network + 10 + ni * MAX_CLUSTERS + ci)
                                 if ni < spec.gateways else None),
                )
            )
        clusters.append(
            ClusterPlan(
                name=cname,
                index=ci,
                cp_netns=f"{prefix}{cname}-cp",
                cp_ip=str(node_net.network + 2),
                node_prefixlen=node_net.prefixlen,
                host_api_port=spec.api_port_base + 1 + ci,
                nodes=tuple(nodes),
                pod_cidr=str(pods),
                service_cidr=str(services),
            )
        )
    return LabPlan(
        spec=spec,
        underlay_netns=f"{prefix}ul",
        underlay_gateway_ip=str(underlay.network + 1),
        underlay_prefixlen=underlay.prefixlen,
        broker_netns=f"{prefix}broker" if spec.broker else None,
        broker_ip=str(underlay.network + 2) if spec.broker else None,
        broker_host_api_port=spec.api_port_base if spec.broker else None,
        clusters=tuple(clusters),
    )


def underlay_port(c: ClusterPlan, node: NodePlan) -> str:
    """The underlay bridge's port toward gateway node `node` of `c` (taking it down
    cuts that gateway off the other clusters)."""
    return f"v{c.name}" if node.index == 0 else f"v{c.name}g{node.index}"


def pod_netns(plan: LabPlan, cluster: str, pod: str) -> str:
    return f"{plan.prefix}{cluster}-p-{pod}"
