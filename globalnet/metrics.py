"""Prometheus metrics of the Globalnet agent (prometheus-client).

Names follow upstream Submariner's Globalnet where it has one, labels included
(`cidr`: the pool, this cluster's global CIDR), so its dashboards and alerts work:

* ``submariner_global_IP_availability{cidr}``: free addresses in the pool;
* ``submariner_global_IP_allocated{cidr}``: addresses allocated, whoever holds them;
* ``submariner_global_egress_IP_allocated{cidr}``: held by GlobalEgressIPs;
* ``submariner_cluster_global_egress_IP_allocated{cidr}``: by the ClusterGlobalEgressIP;
* ``submariner_global_ingress_IP_allocated{cidr}``: by GlobalIngressIPs.

Ours: ``globalnet_allocations{cluster,kind}`` (objects holding addresses),
``globalnet_intent_applies_total{cluster,result}``, ``globalnet_intent_build_seconds``
and ``globalnet_datapath_mappings{cluster,kind}``: what the datapath was last told
to hold (ingress mappings, egress groups, health checks, remote CIDRs) - the size
of its maps, whichever backend. Reconcile errors are counted once for every
controller by ``kube.controller`` (``kube.metrics``). Label sets stay small:
per-object labels would grow without bound with the number of services.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram

GLOBAL_IP_AVAILABILITY = Gauge(
    "submariner_global_IP_availability", "Count of available global IPs per CIDR", ["cidr"])
GLOBAL_IP_ALLOCATED = Gauge(
    "submariner_global_IP_allocated", "Count of global IPs allocated (any owner) per CIDR",
    ["cidr"])
GLOBAL_EGRESS_IP_ALLOCATED = Gauge(
    "submariner_global_egress_IP_allocated",
    "Count of global egress IPs allocated for GlobalEgressIPs per CIDR", ["cidr"])
CLUSTER_GLOBAL_EGRESS_IP_ALLOCATED = Gauge(
    "submariner_cluster_global_egress_IP_allocated",
    "Count of global egress IPs allocated for the cluster per CIDR", ["cidr"])
GLOBAL_INGRESS_IP_ALLOCATED = Gauge(
    "submariner_global_ingress_IP_allocated",
    "Count of global ingress IPs allocated for services and pods per CIDR", ["cidr"])
ALLOCATIONS = Gauge(
    "globalnet_allocations", "Objects holding global IPs, by kind", ["cluster", "kind"])
INTENT_APPLIES = Counter(
    "globalnet_intent_applies", "NAT intents handed to the datapath", ["cluster", "result"])
INTENT_BUILD_SECONDS = Histogram(
    "globalnet_intent_build_seconds", "Time to derive the NAT intent from the caches",
    ["cluster"])
DATAPATH_MAPPINGS = Gauge(
    "globalnet_datapath_mappings", "Entries of the NAT intent the datapath holds, by kind",
    ["cluster", "kind"])

# The owner kinds (``OwnedPool`` keys "Kind/..."), to upstream's per-kind gauges.
_BY_KIND = {
    "GlobalEgressIP": GLOBAL_EGRESS_IP_ALLOCATED,
    "ClusterGlobalEgressIP": CLUSTER_GLOBAL_EGRESS_IP_ALLOCATED,
    "GlobalIngressIP": GLOBAL_INGRESS_IP_ALLOCATED,
}


def observe_pool(cluster: str, cidr: str, available: int,
                 owners: Mapping[str, tuple[str, ...]]) -> None:
    """Set the pool gauges from the pool's owners ("Kind/ns/name" -> addresses)."""
    objects: dict[str, int] = {}
    ips: dict[str, int] = {}
    for owner, held in owners.items():
        kind = owner.split("/", 1)[0]
        objects[kind] = objects.get(kind, 0) + 1
        ips[kind] = ips.get(kind, 0) + len(held)
    GLOBAL_IP_AVAILABILITY.labels(cidr=cidr).set(available)
    GLOBAL_IP_ALLOCATED.labels(cidr=cidr).set(sum(ips.values()))
    for kind, gauge in _BY_KIND.items():
        gauge.labels(cidr=cidr).set(ips.get(kind, 0))
    for kind in {*objects, *_BY_KIND}:
        ALLOCATIONS.labels(cluster=cluster, kind=kind).set(objects.get(kind, 0))


def observe_applied(cluster: str, counts: Mapping[str, int]) -> None:
    """What the datapath holds now that an intent was applied (kind -> entries)."""
    for kind, count in counts.items():
        DATAPATH_MAPPINGS.labels(cluster=cluster, kind=kind).set(count)
