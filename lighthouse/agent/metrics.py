"""Prometheus metrics of the Lighthouse agent, read from its record store at scrape
time (nothing is counted on the export or answer paths).

* ``lighthouse_services``: services the clusterset DNS answers for;
* ``lighthouse_cluster_exports{cluster}``: exports per source cluster (local one
  included), what the importer learnt from the Broker;
* ``lighthouse_cluster_healthy{cluster}``: 1 while answers may send clients to that
  cluster (its gateway connection is up), else 0.

Labels are per cluster of the clusterset, never per service. The DNS server in the
same process adds ``lighthouse_dns_*`` (``lighthouse.dns.metrics``: queries by type
and rcode, answer latency); reconcile errors come from ``kube.controller``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from lighthouse.dns.records import ServiceRecords


class AgentCollector(Collector):
    """The store's size per cluster and the clusters' health."""

    def __init__(self, records: ServiceRecords) -> None:
        self.records = records

    def collect(self) -> Iterator[GaugeMetricFamily]:
        per_cluster: dict[str, int] = {}
        for _key, export in self.records:
            per_cluster[export.cluster] = per_cluster.get(export.cluster, 0) + 1
        local = self.records.local_cluster
        if local:
            per_cluster.setdefault(local, 0)
        yield GaugeMetricFamily("lighthouse_services", "Services the clusterset DNS answers for",
                                value=len(self.records))
        exports = GaugeMetricFamily("lighthouse_cluster_exports",
                                    "Service exports per source cluster", labels=["cluster"])
        healthy = GaugeMetricFamily("lighthouse_cluster_healthy",
                                    "1 while answers may send clients to the cluster",
                                    labels=["cluster"])
        for cluster, count in sorted(per_cluster.items()):
            exports.add_metric([cluster], count)
            healthy.add_metric([cluster], 1.0 if self.records.is_healthy(cluster) else 0.0)
        yield exports
        yield healthy


def register(records: ServiceRecords, registry: CollectorRegistry = REGISTRY) -> AgentCollector:
    """Register a collector for ``records``; tests pass their own registry."""
    collector = AgentCollector(records)
    registry.register(collector)
    return collector
