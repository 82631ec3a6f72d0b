"""One cluster's Lighthouse agent: exporter, importer and DNS feed, and leaving.

``LighthouseAgent`` wires the parts to two API clients (the cluster's and the
Broker's) and a ``ServiceRecords`` store (its own unless given one, for instance
the store of a DNS server started in the same process). Start-up order matters:
informers and indexes are registered first, the caches sync, then every key is
queued and only then do workers run, so a reconcile never acts on a half-filled
cache (which would withdraw exports the cache has not shown yet).

``withdraw_cluster`` removes everything a cluster published on the Broker (in its
member namespace there, ``names.broker_member_namespace``, which ``gnctl join``
creates: the agent creates no Broker namespace); ``LighthouseAgent.leave`` stops
the agent first (so nothing is republished), then withdraws, then removes what it
imported locally and the VIP table, and empties its store.

The ``VipTableWriter`` turns the same store into the cluster's ClusterSetIP VIP
table, which the route agents apply on every node (``agent.viptable``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kube import crud, discovery, names, resources
from kube.controller import Controller
from kube.informers import InformerSet
from lighthouse.agent.brokercache import BrokerCache
from lighthouse.agent.dnsfeed import DnsFeed
from lighthouse.agent.exporter import Exporter
from lighthouse.agent.importer import Importer, is_broker_object
from lighthouse.agent.viptable import VipTableWriter
from lighthouse.dns.records import ServiceRecords

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    """How one cluster's agent runs."""

    cluster_id: str
    broker_namespace: str = names.BROKER_NAMESPACE
    # Publish global IPs (GlobalIngressIPs); without Globalnet, ClusterIPs and pod IPs.
    globalnet: bool = True
    # This cluster's slice of the Broker's ClusterSetIP pool (``gnctl join`` gives it);
    # None: its exports hold no VIP (they adopt none either).
    clusterset_ip_cidr: str | None = None
    # The clusterset answers every ClusterSetIP service's VIP in DNS, not only the
    # services whose export asks for it (the Broker's ``clustersetIPEnabled``).
    clusterset_ip_enabled: bool = False
    # Write the cluster's VIP table ConfigMap for the route agents (``agent.viptable``).
    vip_table: bool = True
    # Level-triggered safety net: every cached object is re-examined this often.
    resync_period: float | None = 300.0
    sync_timeout: float = 60.0


class LighthouseAgent:
    """Exporter + importer + DNS feed for one cluster; ``start``/``stop``/``leave``."""

    def __init__(self, *, local_api: Any, broker_api: Any, config: AgentConfig,
                 records: ServiceRecords | None = None) -> None:
        self.local_api = local_api
        self.broker_api = broker_api
        self.config = config
        self.records = records if records is not None else ServiceRecords(
            local_cluster=config.cluster_id)
        self.local = self._informers(local_api, config.cluster_id)
        self.broker_informers = self._informers(broker_api, f"broker@{config.cluster_id}")
        self.controllers: list[Controller] = []
        self.exporter: Exporter | None = None
        self.importer: Importer | None = None
        self.feed: DnsFeed | None = None
        self.vip_table: VipTableWriter | None = None
        self._started = False

    def _informers(self, api: Any, name: str) -> InformerSet:
        return InformerSet(api, name=name, resync_period=self.config.resync_period)

    def start(self) -> None:
        """Discover versions, register, sync the caches, then start the workers.

        May be called again after ``stop``: every start builds fresh caches.
        """
        if self._started:
            raise RuntimeError("agent already started")
        cfg = self.config
        self.local = self._informers(self.local_api, cfg.cluster_id)
        self.broker_informers = self._informers(self.broker_api, f"broker@{cfg.cluster_id}")
        broker_slices = discovery.endpointslices(self.broker_api)
        local_slices = discovery.endpointslices(self.local_api)
        broker = BrokerCache(self.broker_informers, namespace=cfg.broker_namespace,
                             endpointslices=broker_slices,
                             service_imports=discovery.service_imports(self.broker_api))
        self.exporter = Exporter(cluster_id=cfg.cluster_id, local_api=self.local_api,
                                 broker_api=self.broker_api, local=self.local, broker=broker,
                                 globalnet=cfg.globalnet,
                                 clusterset_ip_cidr=cfg.clusterset_ip_cidr,
                                 clusterset_ip_enabled=cfg.clusterset_ip_enabled)
        self.importer = Importer(local_api=self.local_api, local=self.local, broker=broker,
                                 endpointslices=local_slices)
        self.controllers = [self.exporter, self.importer]
        for controller in self.controllers:
            controller.register()
        gateways = (self.local.get(resources.GATEWAYS)
                    if discovery.serves(self.local_api, resources.GATEWAYS) else None)
        self.feed = DnsFeed(records=self.records, cluster_id=cfg.cluster_id,
                            slices=self.importer.slices, gateways=gateways,
                            ignore_namespace=cfg.broker_namespace,
                            services=self.local.get(resources.SERVICES))
        self._started = True
        self.local.start()
        self.broker_informers.start()
        self.local.wait_for_sync(cfg.sync_timeout)
        self.broker_informers.wait_for_sync(cfg.sync_timeout)
        self.feed.resync()
        if cfg.vip_table:
            self.vip_table = VipTableWriter(self.records, self.local_api)
            self.vip_table.start()
        for controller in self.controllers:
            controller.resync_all()
        for controller in self.controllers:
            controller.start()
        log.info("lighthouse agent of %s started (Broker namespace %s, globalnet %s)",
                 cfg.cluster_id, cfg.broker_namespace, cfg.globalnet)

    def stop(self) -> None:
        """Stop workers, then informers. Published and imported objects stay."""
        if not self._started:
            return
        self._started = False
        for controller in self.controllers:
            controller.queue.shutdown()
        for controller in self.controllers:
            controller.stop()
        if self.vip_table is not None:
            self.vip_table.stop()
            self.vip_table = None
        self.local.stop()
        self.broker_informers.stop()

    def leave(self) -> int:
        """Stop, withdraw everything this cluster published, drop what it imported.

        Returns how many Broker objects were deleted.
        """
        self.stop()
        removed = withdraw_cluster(self.broker_api, cluster_id=self.config.cluster_id,
                                   namespace=self.config.broker_namespace)
        remove_imports(self.local_api, broker_namespace=self.config.broker_namespace)
        remove_vip_table(self.local_api)
        for cluster in {export.cluster for _, export in self.records}:
            self.records.remove_cluster(cluster=cluster)
        return removed


def withdraw_cluster(broker_api: Any, *, cluster_id: str,
                     namespace: str = names.BROKER_NAMESPACE) -> int:
    """Delete every ServiceImport and EndpointSlice ``cluster_id`` has on the Broker
    (in its member namespace of the Broker namespace ``namespace``).

    Reads the Broker itself (not a cache), so it works without a running agent, for
    example from ``gnctl leave``. Returns the number of objects deleted.
    """
    selector = f"{names.LIGHTHOUSE_SELECTOR},{names.SOURCE_CLUSTER_LABEL}={cluster_id}"
    namespace = names.broker_member_namespace(cluster_id, namespace)
    removed = 0
    for resource in (discovery.endpointslices(broker_api), discovery.service_imports(broker_api)):
        client = crud.ResourceClient(broker_api, resource)
        for obj in client.list(namespace=namespace, label_selector=selector).items:
            if client.delete_if_exists(obj["metadata"]["name"], namespace=namespace):
                removed += 1
    return removed


def remove_vip_table(local_api: Any) -> bool:
    """Delete the cluster's VIP table ConfigMap (the route agents then drop their
    tables); False when there was none."""
    return crud.ResourceClient(local_api, resources.CONFIGMAPS).delete_if_exists(
        names.VIP_TABLE_CONFIGMAP, namespace=names.CLUSTER_NAMESPACE)


def remove_imports(local_api: Any, *, broker_namespace: str = names.BROKER_NAMESPACE) -> int:
    """Delete the aggregated ServiceImports and slice copies the agent made in a cluster.

    The Broker's namespaces are skipped: the Broker may share this API server.
    """
    removed = 0
    for resource in (discovery.endpointslices(local_api), resources.SERVICE_IMPORTS):
        client = crud.ResourceClient(local_api, resource)
        for obj in client.list(label_selector=names.LIGHTHOUSE_SELECTOR).items:
            meta = obj["metadata"]
            if is_broker_object(obj, broker_namespace):
                continue
            if client.delete_if_exists(meta["name"], namespace=meta["namespace"]):
                removed += 1
    return removed
