"""The views of one member cluster by section name: what `gnctl show SECTION` and
`gnctl show all` print, and what a later `gnctl diagnose` checks.

Every section reads through one `ClusterState`, so `all` lists each kind once.
The Broker section needs a way to the Broker (`ops.broker`): the caller chooses it
once - named by the user, else recorded in each cluster - and passes it in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from kube import objects as o
from ops import broker, gateways, networks, pools, versions
from ops.cluster import ClusterState, workload_flag

# In the order `show all` prints them (subctl's).
SECTIONS: Final = ("networks", "endpoints", "connections", "gateways", "brokers", "globalnet",
                   "versions")


def networks_of(state: ClusterState) -> networks.NetworksView:
    return networks.networks_view(state.clusters(), local_cluster_id=state.local_cluster_id(),
                                  datapath=workload_flag(state.workloads(), "datapath") or "")


def endpoints_of(state: ClusterState) -> gateways.EndpointsView:
    return gateways.endpoints_view(state.endpoints(), local_cluster_id=state.local_cluster_id())


def connections_of(state: ClusterState) -> gateways.ConnectionsView:
    return gateways.connections_view(state.gateways(), state.gateway_lease())


def gateways_of(state: ClusterState) -> gateways.GatewaysView:
    return gateways.gateways_view(state.gateway_nodes(), state.gateways(), state.gateway_lease())


def global_cidrs_of(state: ClusterState) -> tuple[str, ...]:
    """The pool the cluster's Globalnet allocates from: its agent's `--global-cidr`,
    else its own Cluster object's."""
    flag = workload_flag(state.workloads(), "global-cidr")
    if flag:
        return (flag,)
    cluster_id = state.local_cluster_id()
    for cluster in state.clusters():
        spec = o.spec(cluster)
        if cluster_id and str(spec.get("cluster_id") or o.name(cluster)) == cluster_id:
            return tuple(str(c) for c in spec.get("global_cidr") or ())
    return ()


def globalnet_of(state: ClusterState) -> pools.GlobalnetView:
    return pools.globalnet_view(
        cluster_id=state.local_cluster_id(), global_cidrs=global_cidrs_of(state),
        cluster_egress=state.cluster_egress_ips(), egress=state.egress_ips(),
        ingress=state.ingress_ips(), gateway_nodes=state.gateway_nodes())


def versions_of(state: ClusterState) -> versions.VersionsView:
    return versions.versions_view(state.workloads(), state.pods())


def brokers_of(state: ClusterState, named: broker.BrokerConnection | None
               ) -> broker.BrokersView:
    """The Broker `named`, else the one the cluster recorded when it joined."""
    return broker.read_brokers(named or broker.recorded_broker(state))


def collect(state: ClusterState, section: str, *,
            named_broker: broker.BrokerConnection | None = None) -> Any:
    """The view of one section (a name of SECTIONS)."""
    readers: dict[str, Callable[[ClusterState], Any]] = {
        "networks": networks_of, "endpoints": endpoints_of, "connections": connections_of,
        "gateways": gateways_of, "globalnet": globalnet_of, "versions": versions_of,
        "brokers": lambda s: brokers_of(s, named_broker),
    }
    return readers[section](state)
