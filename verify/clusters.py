"""What verify learns of a cluster before it tests anything.

Read from the cluster's API only, as a user's kubectl would: its cluster ID and
active gateway (the gateway Lease's holder and that node's Gateway object), its
gateway and other nodes (by the gateway label), the global egress IPs its pods'
traffic must leave with (ClusterGlobalEgressIP status), and how a pod reaches the
clusterset DNS. A cluster that fails these is not testable: `VerifyError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deploy import manifests
from kube import crud, names, resources
from kube import objects as o
from kube.leaderelection import holder_of
from verify.errors import VerifyError
from verify.pods import DnsConfig


@dataclass(frozen=True)
class Cluster:
    """One member of the clusterset under test."""

    label: str  # how the user named it (a lab cluster, a kubeconfig context)
    api: Any
    cluster_id: str
    active_gateway: str
    gateways: tuple[str, ...]  # Ready gateway nodes, the active one first
    others: tuple[str, ...]  # Ready, schedulable nodes without the gateway label
    egress_ips: frozenset[str]
    dns: DnsConfig

    def client(self, resource: resources.Resource) -> crud.ResourceClient:
        return crud.ResourceClient(self.api, resource)

    @property
    def non_gateway(self) -> str | None:
        """A node that is not a gateway (None in a cluster of gateway nodes only)."""
        return self.others[0] if self.others else None


def _ready(node: o.JSON) -> bool:
    conds = o.status(node).get("conditions") or []
    return not o.spec(node).get("unschedulable") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def inspect(api: Any, label: str) -> Cluster:
    """Cluster `label` as it is now; VerifyError when it cannot be tested."""
    lease = crud.ResourceClient(api, resources.LEASES).get_or_none(
        names.GATEWAY_LEASE, namespace=names.CLUSTER_NAMESPACE)
    active = holder_of(lease)
    if not active:
        raise VerifyError(f"cluster {label} has no active Globalnet gateway (no holder of "
                          f"Lease {names.CLUSTER_NAMESPACE}/{names.GATEWAY_LEASE}): has it "
                          "joined the clusterset?")
    gateway = crud.ResourceClient(api, resources.GATEWAYS).get_or_none(
        active, namespace=names.CLUSTER_NAMESPACE)
    cluster_id = str(((o.status(gateway or {}).get("localEndpoint") or {})
                      .get("cluster_id")) or "")
    if not cluster_id:
        raise VerifyError(f"cluster {label}: its active gateway {active} publishes no "
                          "Gateway status yet (is the gateway engine running?)")
    nodes = crud.ResourceClient(api, resources.NODES).list().items
    ready = [n for n in nodes if _ready(n)]
    gateways = [o.name(n) for n in ready
                if o.labels(n).get(names.GATEWAY_LABEL) == names.GATEWAY_LABEL_VALUE]
    others = sorted(o.name(n) for n in ready
                    if o.labels(n).get(names.GATEWAY_LABEL) != names.GATEWAY_LABEL_VALUE)
    egress = crud.ResourceClient(api, resources.CLUSTER_GLOBAL_EGRESS_IPS).get_or_none(
        names.CLUSTER_EGRESS_NAME)
    egress_ips = frozenset(o.allocated_ips(egress or {}))
    if not egress_ips:
        raise VerifyError(f"cluster {label} has no global egress IPs (ClusterGlobalEgressIP "
                          f"{names.CLUSTER_EGRESS_NAME} has none allocated): is Globalnet "
                          "running?")
    return Cluster(label=label, api=api, cluster_id=cluster_id, active_gateway=active,
                   gateways=(active, *sorted(g for g in gateways if g != active)),
                   others=tuple(others), egress_ips=egress_ips, dns=dns_config(api))


def dns_config(api: Any) -> DnsConfig:
    """ClusterFirst where the cluster has a cluster DNS (kube-system/kube-dns, which
    Lighthouse's install points at itself for clusterset.local); else the Lighthouse
    DNS Service's ClusterIP itself, as the lab's workloads use it."""
    services = crud.ResourceClient(api, resources.SERVICES)
    if services.get_or_none("kube-dns", namespace="kube-system") is not None:
        return DnsConfig()
    lighthouse = services.get_or_none(manifests.LIGHTHOUSE_DNS_SERVICE,
                                      namespace=names.CLUSTER_NAMESPACE)
    ip = o.cluster_ip(lighthouse or {})
    if ip is None:
        raise VerifyError(f"no cluster DNS (kube-system/kube-dns) and no Lighthouse DNS "
                          f"Service {names.CLUSTER_NAMESPACE}/{manifests.LIGHTHOUSE_DNS_SERVICE}"
                          ": pods could not resolve clusterset.local names")
    return DnsConfig(nameserver=ip)


def check_pair(source: Cluster, target: Cluster) -> None:
    if source.cluster_id == target.cluster_id:
        raise VerifyError(f"{source.label} and {target.label} are the same cluster "
                          f"({source.cluster_id}): give two members of the clusterset")
