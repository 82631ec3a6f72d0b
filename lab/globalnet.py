"""Globalnet and Lighthouse in the lab: join the Broker, run each cluster's agents,
route global CIDRs, point pods at the clusterset DNS server.

The lab Broker is deployed and every cluster joins it as `gnctl deploy-broker
--globalnet` and `gnctl join` do (`gateway.clusterset`), so each gets its slice
of the clusterset's global range and its `Cluster` object; it then runs the real
Globalnet agent on its gateway node - in the node's network namespace, with the
node's in-cluster kubeconfig, programming the node's own nftables table - and
the real Lighthouse agent beside it, which exports services through the Broker
and serves `clusterset.local` on the gateway node's address, port 53. Every
demo pod's `dnsConfig` (lab/lab.py) names that server, searching
`svc.clusterset.local`.

The Broker syncer (`gateway.syncer`) runs there too, so members that joined
first learn of the later ones (Globalnet reads the remote global CIDRs from the
`Cluster` and `Endpoint` objects), the gateway engine (`gateway.engine`:
Endpoint publication, a VXLAN cable over the underlay to every other gateway,
health pings into the Gateway status), and a route agent (`gateway.routeagent`)
on every node sends remote global CIDRs to the gateway node. Only global IPs
cross the underlay, inside the tunnel; the overlapping pod and service CIDRs
never appear on it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from kube import names
from lab.topology import ClusterPlan, LabPlan


def join_clusterset(broker_api: Any, members: dict[str, tuple[ClusterPlan, Any]]
                    ) -> dict[str, str]:
    """`gnctl deploy-broker --globalnet` and `gnctl join` for every cluster, with
    upstream's defaults (242.0.0.0/8, a /16 each); returns each global CIDR."""
    from gateway import clusterset
    from globalnet.cidr_allocation import DEFAULT_CIDR_RANGE, DEFAULT_CLUSTER_SIZE

    clusterset.deploy_broker(broker_api, globalnet=True, cidr_range=DEFAULT_CIDR_RANGE,
                             cluster_size=DEFAULT_CLUSTER_SIZE)
    cidrs: dict[str, str] = {}
    for name, (c, api) in members.items():
        member = clusterset.join(api, broker_api, clusterset.JoinRequest(
            cluster_id=name, cluster_cidrs=(c.pod_cidr,), service_cidrs=(c.service_cidr,)))
        assert member.global_cidr is not None, "the lab Broker runs Globalnet"
        cidrs[name] = member.global_cidr
    return cidrs


def engine_argv(c: ClusterPlan, global_cidr: str, kubeconfig: Path,
                broker_kubeconfig: Path) -> list[str]:
    """The gateway engine of cluster `c`, on its gateway node: VXLAN over the underlay."""
    assert c.gateway.underlay_ip is not None, "the gateway node is on the underlay"
    return [sys.executable, "-m", "gateway.engine", "--kubeconfig", str(kubeconfig),
            "--broker-kubeconfig", str(broker_kubeconfig), "--cluster-id", c.name,
            "--node-name", c.gateway.name, "--private-ip", c.gateway.underlay_ip,
            "--subnet", global_cidr]


def node_routes(plan: LabPlan, cidrs: dict[str, str]) -> dict[str, set[tuple[str, str]]]:
    """What the route agents must hold: per non-gateway node namespace, every
    remote global CIDR via its gateway node (for `lab up` to wait on)."""
    out: dict[str, set[tuple[str, str]]] = {}
    for c in plan.clusters:
        remote = {cidrs[o.name] for o in plan.clusters if o is not c}
        for node in c.nodes:
            if node is not c.gateway:
                out[node.netns] = {(cidr, c.gateway.ip) for cidr in remote}
    return out


def routes_of(netns_name: str) -> set[tuple[str, str]]:
    """The route agent's routes in a node namespace, as (CIDR, next hop)."""
    from datapath.routes import RouteTable

    return {(r.dst, r.via) for r in RouteTable(netns_name).installed()}


def dns_query(netns_name: str, server: str, name: str, *, timeout: float = 0.3) -> Any:
    """Ask `server` (port 53) about `name` over UDP from inside `netns_name`: the
    parsed reply (a dnslib record), or None when nothing usable came back."""
    import socket

    import dnslib

    from lab import netns

    with netns.entered(netns_name), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(dnslib.DNSRecord.question(name).pack(), (server, DNS_PORT))
            return dnslib.DNSRecord.parse(sock.recv(4096))
        except (OSError, dnslib.DNSError):
            return None


def dns_answers(c: ClusterPlan) -> bool:
    """Whether cluster `c`'s Lighthouse DNS server answers at all (REFUSED for a
    name outside its zone is an answer), asked from its gateway node."""
    return dns_query(c.gateway.netns, dns_server(c), "lab-probe.invalid") is not None


def routeagent_argv(c: ClusterPlan, node_name: str, kubeconfig: Path) -> list[str]:
    """The route agent of one node, run in the node's namespace."""
    return [sys.executable, "-m", "gateway.routeagent", "--kubeconfig", str(kubeconfig),
            "--node-name", node_name, "--cluster-id", c.name]


DNS_PORT = 53
def dns_server(c: ClusterPlan) -> str:
    """Where cluster `c`'s Lighthouse DNS server listens: its gateway node."""
    return c.gateway.ip


def lighthouse_argv(c: ClusterPlan, kubeconfig: Path, broker_kubeconfig: Path) -> list[str]:
    """The Lighthouse agent of cluster `c` with its DNS server, on the gateway node."""
    return [
        sys.executable, "-m", "lighthouse.agent",
        "--kubeconfig", str(kubeconfig), "--broker-kubeconfig", str(broker_kubeconfig),
        "--cluster-id", c.name, "--dns-listen", f"{dns_server(c)}:{DNS_PORT}",
    ]


def syncer_argv(kubeconfig: Path, broker_kubeconfig: Path) -> list[str]:
    """The Broker syncer of one cluster (Cluster objects), on its gateway node."""
    return [sys.executable, "-m", "gateway.syncer", "--kubeconfig", str(kubeconfig),
            "--broker-kubeconfig", str(broker_kubeconfig)]


def agent_argv(c: ClusterPlan, global_cidr: str, kubeconfig: Path, *,
               datapath: str = "nftables", bpffs: Path | None = None) -> list[str]:
    """The Globalnet agent of cluster `c`, run inside its gateway node's namespace.

    With `datapath="ebpf"` it pins under the lab's own `bpffs` (per gateway: the
    pins are scoped by the namespace named with `--netns`, so `gnctl show nat
    --datapath ebpf --netns NODE-NS` finds them) and attaches to the VXLAN cable
    (`datapath.vxlan.IFNAME`), the gateway's device toward the other clusters;
    the gateway engine makes that device, possibly after the agent started (and
    again when it is rebuilt): the agent attaches whenever it appears.
    """
    from datapath import vxlan

    argv = [
        sys.executable, "-m", "globalnet.agent",
        "--kubeconfig", str(kubeconfig), "--cluster-id", c.name,
        "--global-cidr", global_cidr,
        "--local-cidr", c.pod_cidr, "--local-cidr", c.service_cidr,
        "--namespace", names.CLUSTER_NAMESPACE, "--identity", f"{c.gateway.name}-globalnet",
        "--datapath", datapath,
        # One agent per cluster in the lab: a short lease only speeds up restarts.
        "--lease-duration", "4", "--renew-deadline", "3", "--retry-period", "0.5",
    ]
    if datapath == "ebpf":
        assert bpffs is not None, "the eBPF agents pin under the lab's bpffs"
        argv += ["--bpffs", str(bpffs), "--tunnel-dev", vxlan.IFNAME,
                 "--netns", c.gateway.netns]
    return argv
