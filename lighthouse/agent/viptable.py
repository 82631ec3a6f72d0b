"""The cluster's ClusterSetIP VIP table: computed from the DNS records, written to one
ConfigMap that the route agent of every node applies (``datapath.nftables.clustersetip``).

The records the DNS server answers from already hold everything a VIP needs: each
exporting cluster's global IP (the local cluster's ClusterIP), its ready backends,
its gateway health and the service's traffic distribution. So the VIP table is a
function of the same store, and its cluster choice is the DNS answer's
(``lighthouse.dns.policy.chosen_clusters``): local-first sends new connections to
the local ClusterIP while it has ready backends, else equally to every healthy
cluster with ready backends; balanced spreads them by ready backends over every
healthy cluster, the local one included. A cluster whose tunnel goes down leaves
the table as soon as the active Gateway says so.

One table per cluster, not per node (it is the same on every node): the agent
computes it once and the nodes only apply it, so a node needs no informer over
Services, slices and Gateways. ``VipTableWriter`` recomputes on every effective
store change (debounced), writes the ConfigMap only when the plan changed (and
deletes it when no VIP is left), and retries a failed write with backoff; the
table on the nodes stays as it is while the API server is away.
"""

from __future__ import annotations

import logging
from typing import Any

from datapath.nftables.clustersetip import VipBackend, VipService, plan_json
from kube import crud, names, resources
from kube.syncloop import SyncLoop
from lighthouse.dns.policy import chosen_clusters, service_vip
from lighthouse.dns.records import ServiceRecords

log = logging.getLogger(__name__)

FIELD_MANAGER = "lighthouse-agent"
DEBOUNCE_SECONDS = 0.02


def vip_services(records: ServiceRecords) -> list[VipService]:
    """Every ClusterSetIP VIP of the store, with the clusters new connections go to."""
    out: list[VipService] = []
    held: dict[str, str] = {}
    with records.lock:
        local = records.local_cluster
        for namespace, name in records.services():
            exports = [e for e in (records.exports((namespace, name)) or {}).values()
                       if not e.headless]
            vip, _ = service_vip(exports)
            if vip is None:
                continue
            owner = f"{namespace}/{name}"
            if vip in held:
                log.warning("VIP %s is stated for both %s and %s: %s keeps it", vip,
                            held[vip], owner, held[vip])
                continue
            chosen, balanced = chosen_clusters(records, exports)
            ports = sorted({(p.protocol.lower(), p.port) for e in exports for p in e.ports})
            backends = tuple(
                VipBackend(cluster=e.cluster, ip=str(e.global_ip),
                           weight=e.weight if balanced else 1, local=e.cluster == local)
                for e in chosen)
            try:
                out.append(VipService(vip=vip, owner=owner, ports=tuple(ports),
                                      backends=backends))
            except ValueError as exc:
                log.warning("VIP %s of %s left out of the table: %s", vip, owner, exc)
                continue
            held[vip] = owner
    return out


def configmap(plan: str) -> dict[str, Any]:
    """The ConfigMap that carries the plan to the route agents."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": names.VIP_TABLE_CONFIGMAP, "namespace": names.CLUSTER_NAMESPACE,
                         "labels": {names.VIP_TABLE_LABEL: "true",
                                    names.MANAGED_BY_LABEL: names.MANAGED_BY_LIGHTHOUSE}},
            "data": {names.VIP_TABLE_KEY: plan}}


class VipTableWriter:
    """Keeps the cluster's VIP table ConfigMap equal to ``vip_services(records)``."""

    def __init__(self, records: ServiceRecords, local_api: Any) -> None:
        self.records = records
        self.client = crud.ResourceClient(local_api, resources.CONFIGMAPS)
        self.written: str | None = None
        self.writes = 0
        self._loop = SyncLoop("VIP table write", self.sync, debounce=DEBOUNCE_SECONDS, log=log)
        self._unsubscribe = records.subscribe(lambda _keys: self._loop.poke())

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        """Stop writing; the ConfigMap and the nodes' tables stay."""
        self._loop.stop()
        self._unsubscribe()

    def sync(self) -> bool:
        """Write the plan when it differs from the last one written; True if written."""
        services = vip_services(self.records)
        plan = plan_json(services)
        if plan == self.written:
            return False
        if services:
            self.client.apply(configmap(plan), field_manager=FIELD_MANAGER)
        else:  # no VIP: no ConfigMap, and the nodes drop their table
            self.client.delete_if_exists(names.VIP_TABLE_CONFIGMAP,
                                         namespace=names.CLUSTER_NAMESPACE)
        self.written = plan
        self.writes += 1
        log.info("VIP table: %d VIPs (%s)", len(services),
                 ", ".join(f"{s.vip} {s.owner}" for s in services[:5])
                 + (", ..." if len(services) > 5 else ""))
        return True
