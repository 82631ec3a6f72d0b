"""Globalnet and Lighthouse in the lab, installed as users install them.

`gnctl lab up --globalnet` runs exactly what `gnctl deploy-broker --globalnet` and
`gnctl join` run (`deploy.install`): the lab Broker gets its roles and join identity
and writes the lab's broker-info file; every cluster joins with it, in parallel, so
each gets its slice of the clusterset's global range, its own Broker identity and
the agents' manifests, applied by server-side apply: the gateway DaemonSet (gateway
engine, Broker syncer, Globalnet with its datapath) on the gateway node (node 0,
labelled `submariner.io/gateway=true` by join), the route-agent DaemonSet on every
node, and the Lighthouse agent Deployment with its DNS Service, whose ClusterIP
(`dns_server`) every demo pod's `dnsConfig` names (lab/lab.py), searching
`svc.clusterset.local`. Nothing runs as a bare process: the agents are pods of the
`globalnet/globalnet:lab` image, with their own ServiceAccounts.

What the lab adds around join is plumbing a real network has anyway: the agents
reach their API server at the control plane's node-network address, every node
reaches the Broker (non-gateway nodes through the gateway node, which masquerades
what it forwards onto the underlay: the pod and node networks overlap between
clusters, so the Broker could not route answers back), and the control plane
routes the pod ranges to their nodes. Only global IPs cross the underlay between
gateways, inside the tunnel.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
from pathlib import Path
from typing import Any

from lab.topology import ClusterPlan, LabPlan, NodePlan

BROKER_INFO = "broker-info.subm"
# The Lighthouse DNS Service's ClusterIP: this offset in each cluster's service CIDR
# (where kube-dns usually lives; the lab runs no other cluster DNS).
DNS_SERVICE_OFFSET = 10
# How long a join may wait for its agents (the image is imported already).
JOIN_TIMEOUT = 180.0


def deploy_broker(broker_api: Any, plan: LabPlan, out: Path, *, apiserver_port: int,
                  progress: Any = print) -> Any:
    """`gnctl deploy-broker --globalnet` with upstream's defaults (242.0.0.0/8, a /16
    per cluster); writes the broker-info file to `out` and returns it."""
    from deploy import install
    from globalnet.cidr_allocation import DEFAULT_CIDR_RANGE, DEFAULT_CLUSTER_SIZE

    assert plan.broker_ip is not None, "a --globalnet lab has a Broker"
    info = install.deploy_broker(broker_api, server=f"https://{plan.broker_ip}:{apiserver_port}",
                                 globalnet=True, cidr_range=DEFAULT_CIDR_RANGE,
                                 cluster_size=DEFAULT_CLUSTER_SIZE,
                                 progress=lambda line: progress(f"      {line}"))
    info.write(out)
    return info


def join_options(c: ClusterPlan, *, datapath: str, apiserver_port: int,
                 cable_driver: str = "vxlan") -> Any:
    """What `gnctl join` is given for lab cluster `c`."""
    from deploy import install

    return install.JoinOptions(
        cluster_id=c.name, cluster_cidrs=(c.pod_cidr,), service_cidrs=(c.service_cidr,),
        datapath=datapath, cable_driver=cable_driver,
        api_server=f"https://{c.cp_ip}:{apiserver_port}", dns_service_ip=dns_server(c),
        gateway_nodes=tuple(n.name for n in c.gateways),
        wait_timeout=JOIN_TIMEOUT)


def join_all(info: Any, members: dict[str, tuple[ClusterPlan, Any]], *, datapath: str,
             apiserver_port: int, broker_server: str, cable_driver: str = "vxlan",
             progress: Any = print) -> dict[str, str]:
    """`gnctl join` of every cluster at once; returns each global CIDR. The members
    reach the Broker on the underlay (the broker-info's URL), this process through
    the host relay (`broker_server`)."""
    from deploy import install

    def join(name: str) -> str:
        c, api = members[name]
        result = install.join(api, info, join_options(c, datapath=datapath,
                                                      apiserver_port=apiserver_port,
                                                      cable_driver=cable_driver),
                              progress=lambda line: progress(f"      {name}: {line}"),
                              broker_server=broker_server)
        assert result.global_cidr is not None, "the lab Broker runs Globalnet"
        return result.global_cidr

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(members)) as pool:
        futures = {name: pool.submit(join, name) for name in members}
        return {name: fut.result() for name, fut in futures.items()}


def node_routes(plan: LabPlan, cidrs: dict[str, str],
                active: dict[str, str]) -> dict[str, set[tuple[str, str]]]:
    """What the route agents must hold: per node namespace but the active gateway's
    (`active`: cluster -> node name), every remote global CIDR via the active
    gateway node (for `lab up` to wait on); a cluster with no active gateway yet
    wants an impossible route, so the wait goes on."""
    out: dict[str, set[tuple[str, str]]] = {}
    for c in plan.clusters:
        remote = {cidrs[o.name] for o in plan.clusters if o is not c}
        gateway = next((n for n in c.nodes if n.name == active.get(c.name)), None)
        for node in c.nodes:
            if gateway is None:
                out[node.netns] = {("0.0.0.0/0", "no active gateway")}
            elif node is not gateway:
                out[node.netns] = {(cidr, gateway.ip) for cidr in remote}
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


DNS_PORT = 53


def dns_server(c: ClusterPlan) -> str:
    """Where cluster `c`'s Lighthouse DNS server answers: its Service's ClusterIP."""
    return str(ipaddress.ip_network(c.service_cidr)[DNS_SERVICE_OFFSET])


def underlay_access(plan: LabPlan, c: ClusterPlan, gateway: NodePlan) -> str:
    """The nftables ruleset (for `nft -f`) that lets gateway node `gateway` of `c`
    carry the other nodes' and the pods' Broker traffic onto the underlay,
    masqueraded."""
    assert gateway.underlay_ip is not None and plan.broker_ip is not None
    return (f"table ip lab-underlay {{\n"
             f"  comment \"lab plumbing: nodes and pods of {c.name} reach the Broker\"\n"
             "  chain postrouting {\n"
             "    type nat hook postrouting priority srcnat; policy accept;\n"
             f"    oifname \"ul0\" ip daddr {plan.broker_ip} ip saddr != "
             f"{gateway.underlay_ip} masquerade\n"
             "  }\n}\n")


