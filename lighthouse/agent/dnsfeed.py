"""Keep the DNS server's record store current from this cluster's imported objects.

Reads the EndpointSlice copies the importer keeps in each service's namespace
(one per exporting cluster, labelled with the source cluster, service and
namespace, and the service type) and the local Gateway objects, and feeds
``lighthouse.dns.records.ServiceRecords`` through its public API only:

* a ClusterSetIP slice becomes ``ClusterExport(global_ip=<its one address>,
  ready=<any endpoint ready>)``, with the service's ClusterSetIP VIP when the slice
  names one; a Headless slice becomes one ``Endpoint`` per address, hostname and
  readiness kept;
* a service's last slice from a cluster gone -> ``remove_service`` for that cluster;
* the local cluster's own export of a ClusterIP service is answered with the
  Service's ClusterIP, not its global IP: a global IP is reachable from the
  other clusters only (the gateway translates traffic from remote global CIDRs),
  while the ClusterIP works in-cluster through kube-proxy, with no gateway hop -
  upstream Lighthouse's answer for local services under Globalnet v1;
* gateway health: the active Gateway's ``status.connections`` say, per remote
  cluster id, whether the tunnel is ``connected``; clusters no Gateway mentions
  count as healthy (the store's default), as do all when there is no Gateway.

The feed runs inside informer handlers: a store update is a few dict operations
under the store's lock and never waits on the API, so a change is visible to DNS
as soon as the local watch delivers it (no work queue hop).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import threading
from collections.abc import Iterable

from kube import names
from kube import objects as o
from kube.informer import Informer
from lighthouse.agent import reasons as r
from lighthouse.agent import render
from lighthouse.agent.importer import is_broker_object
from lighthouse.agent.model import JSON
from lighthouse.agent.publication import dns_label_or_none
from lighthouse.dns.records import ClusterExport, Endpoint, ServicePort, ServiceRecords

log = logging.getLogger(__name__)

ServiceKey = tuple[str, str]


def cluster_export(cluster: str, slices: Iterable[JSON]) -> ClusterExport | None:
    """One cluster's export of a service from its slices; None when they say nothing.

    Raises ``ValueError`` for content the store refuses (not IPv4, bad names).
    """
    slices = list(slices)
    if not slices:
        return None
    headless = any(o.labels(s).get(names.SERVICE_TYPE_LABEL) == r.HEADLESS for s in slices)
    ports: dict[tuple[str, str, int], ServicePort] = {}
    for slice_ in slices:
        for port in render.ports_of(slice_.get("ports")):
            ports.setdefault((port.name, port.protocol, port.port), ServicePort(
                port=port.port, protocol=port.protocol, name=port.name))
    endpoints = sorted({e for s in slices for e in render.endpoints_of(s)})
    port_tuple = tuple(ports[k] for k in sorted(ports))
    if headless:
        return ClusterExport(cluster=cluster, ports=port_tuple, endpoints=tuple(
            Endpoint(ip=e.ip, hostname=dns_label_or_none(e.hostname), ready=e.ready)
            for e in endpoints))
    if not endpoints:
        return None
    labels = o.labels(slices[0])
    ready = any(e.ready for e in endpoints)
    return ClusterExport(cluster=cluster, ports=port_tuple, global_ip=endpoints[0].ip,
                         ready=ready,
                         balanced=labels.get(names.TRAFFIC_DISTRIBUTION_LABEL) == r.BALANCED,
                         weight=_weight(labels.get(names.READY_BACKENDS_LABEL), ready),
                         vip=_vip(labels.get(names.VIP_LABEL)),
                         vip_in_dns=labels.get(names.VIP_IN_DNS_LABEL) == "true")


def _vip(label: str | None) -> str | None:
    """A slice's VIP label; None when absent or not an IPv4 address (the export itself
    is still answered by its cluster's global IP)."""
    try:
        return str(ipaddress.IPv4Address(label)) if label else None
    except ValueError:
        log.warning("ignoring the ClusterSetIP %r of an imported slice: not IPv4", label)
        return None


def _weight(label: str | None, ready: bool) -> int:
    """A balanced answer's weight: the ready backends a slice states (a slice from an
    older agent states none: 1 while ready)."""
    if label is not None and label.isdigit():
        return int(label)
    return 1 if ready else 0


def gateway_health(gateways: Iterable[JSON]) -> dict[str, bool]:
    """Per remote cluster id: is a gateway connection to it up?

    Only the active gateway's connections count when one says it is active
    (passive ones have no tunnels); a cluster listed twice is healthy if any
    connection to it is connected.
    """
    gateways = list(gateways)
    active = [g for g in gateways if o.status(g).get("haStatus") == "active"] or gateways
    health: dict[str, bool] = {}
    for gateway in active:
        for conn in o.status(gateway).get("connections") or []:
            if not isinstance(conn, dict):
                continue
            cluster = str((conn.get("endpoint") or {}).get("cluster_id") or "")
            if cluster:
                health[cluster] = health.get(cluster, False) or conn.get("status") == "connected"
    return health


class DnsFeed:
    """Informer handlers that mirror imported slices and gateway health into a store."""

    def __init__(self, *, records: ServiceRecords, cluster_id: str, slices: Informer,
                 gateways: Informer | None = None, ignore_namespace: str | None = None,
                 services: Informer | None = None) -> None:
        """``ignore_namespace``: the Broker namespace, when the Broker shares this
        cluster's API server (slices there and in its member namespaces are what
        members published, not imports). ``services``: this cluster's Services, for
        the ClusterIPs of its own exports."""
        self.records = records
        self.cluster_id = cluster_id
        self.ignore_namespace = ignore_namespace
        self._lock = threading.Lock()
        # (namespace, service, cluster) -> slice cache keys.
        self._groups: dict[render.Identity, set[str]] = {}
        self._slices = slices
        self._unhealthy: set[str] = set()
        records.set_local_cluster(cluster=cluster_id)
        slices.add_handler(on_add=self._on_slice, on_update=self._on_slice_update,
                           on_delete=self._on_slice_delete)
        self._services = services
        if services is not None:
            services.add_handler(on_add=self._on_service, on_update=self._on_service_update)
        self._gateways = gateways
        if gateways is not None:
            gateways.add_handler(on_add=self._on_gateway, on_update=self._on_gateway_update,
                                 on_delete=self._on_gateway)

    # --- slices ----------------------------------------------------------------------------------
    def _identity(self, obj: JSON) -> render.Identity | None:
        if self.ignore_namespace and is_broker_object(obj, self.ignore_namespace):
            return None
        return render.identity_of(obj)

    def _on_slice(self, obj: JSON) -> None:
        ident = self._identity(obj)
        if ident is None:
            return
        with self._lock:
            self._groups.setdefault(ident, set()).add(o.key(obj))
        self._refresh(ident)

    def _on_slice_update(self, old: JSON, new: JSON) -> None:
        if old is not new and self._identity(old) != self._identity(new):
            self._on_slice_delete(old)
        self._on_slice(new)

    def _on_slice_delete(self, obj: JSON) -> None:
        ident = self._identity(obj)
        if ident is None:
            return
        with self._lock:
            keys = self._groups.get(ident)
            if keys is not None:
                keys.discard(o.key(obj))
                if not keys:
                    del self._groups[ident]
        self._refresh(ident)

    def _on_service(self, obj: JSON) -> None:
        ident = (o.namespace(obj), o.name(obj), self.cluster_id)
        with self._lock:
            known = ident in self._groups
        if known:  # the export's slice came first: answer with the ClusterIP now
            self._refresh(ident)

    def _on_service_update(self, old: JSON, new: JSON) -> None:
        if old is not new and o.spec(old).get("clusterIP") != o.spec(new).get("clusterIP"):
            self._on_service(new)

    def _export(self, ident: render.Identity, slices: list[JSON]) -> ClusterExport | None:
        """`cluster_export`, with the ClusterIP for the local cluster's own service."""
        ns, svc, cluster = ident
        export = cluster_export(cluster, slices)
        if (export is None or export.global_ip is None or cluster != self.cluster_id
                or self._services is None):
            return export
        service = self._services.get(f"{ns}/{svc}")
        cluster_ip = o.spec(service).get("clusterIP") if service else None
        if not cluster_ip or cluster_ip == "None":
            return export
        return dataclasses.replace(export, global_ip=cluster_ip)

    def _refresh(self, ident: render.Identity) -> None:
        ns, svc, cluster = ident
        with self._lock:
            keys = list(self._groups.get(ident, ()))
        slices = [s for k in keys if (s := self._slices.get(k)) is not None]
        try:
            export = self._export(ident, slices)
        except ValueError as exc:
            log.warning("imported slices of %s/%s from %s are unusable: %s", ns, svc, cluster,
                        exc)
            export = None
        try:
            if export is None:
                self.records.remove_service(namespace=ns, name=svc, cluster=cluster)
            else:
                self.records.upsert_service(namespace=ns, name=svc, export=export)
        except ValueError as exc:
            log.warning("DNS store refused %s/%s from %s: %s", ns, svc, cluster, exc)

    def resync(self) -> None:
        """Make the store exactly what the synced cache says, cluster by cluster.

        For a store that outlived an earlier run: a slice deleted while nobody
        watched sends no event, so this removes what the fresh cache lacks (the store
        applies it by difference; unchanged answers stay cached).
        """
        with self._lock:
            groups = {ident: list(keys) for ident, keys in self._groups.items()}
        wanted: dict[str, dict[tuple[str, str], ClusterExport]] = {
            cluster: {} for cluster in {e.cluster for _, e in self.records}}
        for (ns, svc, cluster), keys in groups.items():
            slices = [s for k in keys if (s := self._slices.get(k)) is not None]
            try:
                export = self._export((ns, svc, cluster), slices)
            except ValueError:
                export = None
            if export is not None:
                wanted.setdefault(export.cluster, {})[(ns, svc)] = export
        for cluster, services in wanted.items():
            try:
                self.records.replace_cluster(cluster=cluster, services=services)
            except ValueError as exc:
                log.warning("DNS store refused the exports of %s: %s", cluster, exc)

    # --- gateways --------------------------------------------------------------------------------
    def _on_gateway(self, _: JSON) -> None:
        self._refresh_health()

    def _on_gateway_update(self, old: JSON, new: JSON) -> None:
        if old is not new:
            self._refresh_health()

    def _refresh_health(self) -> None:
        assert self._gateways is not None
        health = gateway_health(self._gateways.list())
        with self._lock:
            recovered = self._unhealthy - {c for c, ok in health.items() if not ok}
            self._unhealthy = {c for c, ok in health.items() if not ok}
        for cluster, healthy in health.items():
            self._set_health(cluster, healthy)
        for cluster in recovered - set(health):
            self._set_health(cluster, True)  # no longer mentioned: back to the default

    def _set_health(self, cluster: str, healthy: bool) -> None:
        if cluster == self.cluster_id:
            return
        try:
            self.records.set_cluster_health(cluster=cluster, healthy=healthy)
        except ValueError as exc:
            log.warning("gateway reports an unusable cluster id %r: %s", cluster, exc)
