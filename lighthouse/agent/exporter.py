"""Exporter: this cluster's ServiceExports -> its ServiceImport and EndpointSlice on the Broker.

They go into this cluster's own member namespace there (``BrokerCache.member_namespace``,
made by ``gnctl join``), the only Broker namespace its identity may write.

Key: "<namespace>/<service>". Each reconcile reads the export, the Service, its
Endpoints, its GlobalIngressIPs and their pods from the local caches, lets
``publication.decide`` choose what to publish, brings this cluster's two Broker
objects to exactly that (or deletes them: unexport, Service deleted, export no
longer valid), and writes the ServiceExport's ``Valid``/``Ready``/``Conflict``
conditions. It is the only writer of those conditions.

With a ClusterSetIP slice (``clusterset_ip_cidr``), a ClusterSetIP export also holds
the service's VIP, adopted from an older export or picked from the slice
(``agent.clustersetip``), in an annotation on its Broker ServiceImport, and carries
the ``ClusterSetIPAllocated`` condition. Its slice on the Broker names that VIP and
whether DNS answers it: the oldest export's ``use-clusterset-ip`` annotation, else
the clusterset's choice (``clusterset_ip_enabled``, deploy-broker's
``--enable-clusterset-ip``).

Events that can change the outcome all queue the key: the export and the Service;
its Endpoints (readiness, headless backends); its GlobalIngressIPs (by their
serviceRef label, ``kube.objects.ingress_service_keys``); pods selected by an
exported headless Service (readiness and hostname); and Broker ServiceImports of
the same service from any cluster (conflicts) or our own Broker objects changed
by someone else.
At start every export and every object we have on the Broker is queued, so what
was withdrawn while the agent was down is withdrawn from the Broker too.
"""

from __future__ import annotations

import logging
from typing import Any

from kube import controller, errors, names, resources
from kube import objects as o
from kube.crud import ResourceClient
from kube.informers import Index, InformerSet
from kube.reconcile import Result
from kube.store import split_key
from lighthouse.agent import reasons as r
from lighthouse.agent import render
from lighthouse.agent.aggregate import Aggregate, aggregate, conflict_condition
from lighthouse.agent.base import MAX_REQUEUES, create_or_update, write_conditions
from lighthouse.agent.brokercache import BrokerCache
from lighthouse.agent.clustersetip import PoolExhaustedError, VipClaims
from lighthouse.agent.model import JSON, ClusterImport, Publication
from lighthouse.agent.publication import ConditionState, Decision, ExportInputs, decide

log = logging.getLogger(__name__)


class Exporter(controller.Controller):
    name = "lighthouse-exporter"
    # Each key costs up to three writes (two on the Broker, one status).
    workers = 3

    def __init__(self, *, cluster_id: str, local_api: Any, broker_api: Any,
                 local: InformerSet, broker: BrokerCache, globalnet: bool = True,
                 clusterset_ip_cidr: str | None = None,
                 clusterset_ip_enabled: bool = False) -> None:
        super().__init__(max_requeues=MAX_REQUEUES)
        self.clusterset_ip_enabled = clusterset_ip_enabled
        self.cluster_id = cluster_id
        self.local = local
        self.broker = broker
        self.globalnet = globalnet
        self.vips = VipClaims(clusterset_ip_cidr) if clusterset_ip_cidr else None
        self.export_client = ResourceClient(local_api, resources.SERVICE_EXPORTS)
        self.import_client = ResourceClient(broker_api, broker.service_imports)
        self.slice_client = ResourceClient(broker_api, broker.endpointslices)

    # --- wiring ------------------------------------------------------------------------------
    def register(self) -> None:
        inf = self.local
        self.exports = inf.get(resources.SERVICE_EXPORTS)
        self.services = inf.get(resources.SERVICES)
        self.endpoints = inf.get(resources.ENDPOINTS)
        self.pods = inf.get(resources.PODS)
        self.exports_by_ns = Index(self.exports, lambda e: [o.namespace(e)])
        self.giips_by_service: Index | None = None
        if self.globalnet:
            giips = inf.get(resources.GLOBAL_INGRESS_IPS)
            self.giips_by_service = Index(giips, o.ingress_service_keys)
            self.watch(giips, o.ingress_service_keys)
        self.watch(self.exports)
        # Services and Endpoints change all the time cluster-wide: only exported ones count.
        self.watch(self.services, self._if_exported)
        self.watch(self.endpoints, self._if_exported)
        self.watch(self.pods, self._exported_headless_selecting)
        self.watch(self.broker.imports, self._broker_key_or_starved)
        self.watch(self.broker.slices, self._own_broker_key)

    def _if_exported(self, obj: JSON) -> list[str]:
        key = o.key(obj)
        return [key] if self.exports.get(key) is not None else []

    def _exported_headless_selecting(self, pod: JSON) -> list[str]:
        keys = []
        for export in self.exports_by_ns.objects(o.namespace(pod)):
            svc = self.services.get(o.key(export))
            selector = o.service_selector(svc) if svc and o.is_headless(svc) else {}
            if selector and o.selector_matches({"matchLabels": selector}, o.labels(pod)):
                keys.append(o.key(export))
        return keys

    def _broker_key_or_starved(self, obj: JSON) -> list[str | None]:
        """The service's key; with a VIP on the object, also the services waiting for
        one (the event may be that VIP's release)."""
        keys: list[str | None] = [render.service_key_of(obj)]
        if self.vips is not None and render.clusterset_ip_of(obj):
            keys.extend(self.vips.starved())
        return keys

    def _own_broker_key(self, obj: JSON) -> list[str | None]:
        ident = render.identity_of(obj)
        return [f"{ident[0]}/{ident[1]}"] if ident and ident[2] == self.cluster_id else []

    def resync_all(self) -> None:
        keys = {o.key(e) for e in self.exports.list()}
        for index in (self.broker.imports_by_cluster, self.broker.slices_by_cluster):
            for obj in index.objects(self.cluster_id):
                if (key := render.service_key_of(obj)) is not None:
                    keys.add(key)
        for key in sorted(keys):
            self.enqueue(key)

    # --- reconcile -----------------------------------------------------------------------------
    def inputs(self, key: str) -> ExportInputs:
        """The local facts ``decide`` needs for one service, from the caches."""
        ns, _ = split_key(key)
        ingress = self.giips_by_service.objects(key) if self.giips_by_service else []
        pods: dict[str, JSON] = {}
        for giip in ingress:
            if o.spec(giip).get("target") == names.TARGET_HEADLESS_POD:
                pod_name = str((o.spec(giip).get("podRef") or {}).get("name", ""))
                if (pod := self.pods.get(f"{ns}/{pod_name}")) is not None:
                    pods[pod_name] = pod
        return ExportInputs(export=self.exports.get(key), service=self.services.get(key),
                            endpoints=self.endpoints.get(key), ingress_ips=ingress, pods=pods,
                            globalnet=self.globalnet)

    def reconcile(self, key: str) -> Result | None:
        decision = decide(self.inputs(key))
        imports, slices = self.broker.published_by(self.cluster_id, key)
        ready = decision.ready
        requeue = False
        allocated: ConditionState | None = None
        agg: Aggregate | None = None
        pub = decision.publication
        if pub is None:
            if self.vips is not None:
                self.vips.forget(key)
            for obj in slices:
                self.slice_client.delete_if_exists(o.name(obj), namespace=o.namespace(obj),
                                                   uid=o.uid(obj), conflict_is_gone=True)
            for obj in imports:
                self.import_client.delete_if_exists(o.name(obj), namespace=o.namespace(obj),
                                                    uid=o.uid(obj), conflict_is_gone=True)
        else:
            agg = self._aggregate(key, pub, clusterset_ip=self._held_vip(key, imports))
            vip, allocated = self.clusterset_ip(key, agg)
            try:
                use_vip = agg.properties.use_clusterset_ip
                self.publish(key, pub, imports, slices, clusterset_ip=vip,
                             distribution=agg.properties.spread,
                             vip_in_dns=self.clusterset_ip_enabled if use_vip is None
                             else use_vip)
            except Exception as exc:
                if errors.is_conflict(exc):
                    raise  # our cache is behind: retry from a fresher copy, status unchanged
                log.warning("%s %s: publishing to the Broker failed: %s", self.name, key, exc)
                ready = ConditionState(
                    status=False, reason=r.FAILED,
                    message=f"Publishing to the Broker failed: {errors.message_of(exc)}")
                requeue = True
        self.write_export_conditions(key, decision, ready, agg, allocated)
        return Result(requeue=True) if requeue else None

    def _held_vip(self, key: str, imports: list[JSON]) -> str:
        """The VIP our export holds: on our Broker import, else picked here just now."""
        if self.vips is None:
            return ""
        held = next((v for obj in imports if (v := render.clusterset_ip_of(obj))), "")
        return held or self.vips.picked(key)

    def clusterset_ip(self, key: str, agg: Aggregate) -> tuple[str, ConditionState | None]:
        """The VIP this export holds (the aggregate's, else picked) and its condition;
        ("", None) without a slice or for a service not ClusterSetIP in the aggregate."""
        if self.vips is None:
            return "", None
        if agg.service_type != r.CLUSTER_SET_IP:
            self.vips.forget(key)
            return "", None
        if agg.ips:
            vip = agg.ips[0]
            self.vips.hold(key, vip)
        else:
            try:
                vip = self.vips.pick(key, (v for obj in self.broker.imports.list()
                                           if (v := render.clusterset_ip_of(obj))))
            except PoolExhaustedError as exc:
                return "", ConditionState(
                    status=False, reason=r.CLUSTERSET_IP_POOL_EXHAUSTED,
                    message=f"No ClusterSetIP for the service: {exc}; it is reachable "
                            "through each cluster's name until a VIP is free")
        return vip, ConditionState(status=True, reason=r.ALLOCATED,
                                   message=f"The service's ClusterSetIP is {vip}")

    def publish(self, key: str, pub: Publication, imports: list[JSON], slices: list[JSON],
                *, clusterset_ip: str = "", distribution: str = r.LOCAL_FIRST,
                vip_in_dns: bool = False) -> None:
        """Bring our ServiceImport and EndpointSlice on the Broker to ``pub``.

        The slice goes first: it is what the other clusters' DNS answers from.
        """
        ns, svc = split_key(key)
        assert ns is not None
        identity = (ns, svc, self.cluster_id)
        slice_name = self._name(self.broker.slices, slices, identity)
        create_or_update(
            self.slice_client,
            render.endpoint_slice(
                name=slice_name, namespace=self.broker.member_namespace(self.cluster_id),
                api_version=self.broker.endpointslices.api_version, cluster=self.cluster_id,
                source_namespace=ns, service=svc, publication=pub,
                distribution=distribution, vip=clusterset_ip, vip_in_dns=vip_in_dns),
            next((s for s in slices if o.name(s) == slice_name), None),
            content=render.slice_content, fields=("addressType", "endpoints", "ports"),
            owned=lambda obj: render.identity_of(obj) == identity)
        import_name = self._name(self.broker.imports, imports, identity)
        create_or_update(
            self.import_client,
            render.service_import(
                name=import_name, namespace=self.broker.member_namespace(self.cluster_id),
                cluster=self.cluster_id, source_namespace=ns, service=svc, publication=pub,
                api_version=self.broker.service_imports.api_version,
                clusterset_ip=clusterset_ip),
            next((i for i in imports if o.name(i) == import_name), None),
            content=render.import_content, fields=("spec",),
            owned=lambda obj: render.identity_of(obj) == identity)
        # Leftovers (an object renamed by a collision): only one of each kind is ours.
        for obj in slices:
            if o.name(obj) != slice_name:
                self.slice_client.delete_if_exists(o.name(obj), namespace=o.namespace(obj),
                                                   uid=o.uid(obj), conflict_is_gone=True)
        for obj in imports:
            if o.name(obj) != import_name:
                self.import_client.delete_if_exists(o.name(obj), namespace=o.namespace(obj),
                                                    uid=o.uid(obj), conflict_is_gone=True)

    def _name(self, informer: Any, existing: list[JSON], identity: render.Identity) -> str:
        if existing:
            return o.name(existing[0])
        plain = render.object_name(*identity)
        taken = self.broker.name_taken(informer, plain, identity)
        return render.object_name(*identity, taken_by_other=taken)

    def write_export_conditions(self, key: str, decision: Decision,
                                ready: ConditionState | None, agg: Aggregate | None,
                                allocated: ConditionState | None = None) -> None:
        """``agg``: the service's aggregate with our publication (None: we publish
        nothing)."""
        export = self.exports.get(key)
        if export is None or decision.valid is None:
            return
        had_conflict = any(c.get("type") == r.CONFLICT
                           for c in o.status(export).get("conditions") or [])
        conflict = conflict_condition(agg, had_conflict=had_conflict)
        write_conditions(self.export_client, export,
                         [(r.VALID, decision.valid), (r.READY, ready), (r.CONFLICT, conflict),
                          (r.CLUSTERSET_IP_ALLOCATED, allocated)])

    def _aggregate(self, key: str, pub: Publication, *, clusterset_ip: str = "") -> Aggregate:
        """The service's aggregate with our publication as written (the cache may lag)."""
        others = [imp for obj in self.broker.imports_by_service.objects(key)
                  if (imp := render.cluster_import_of(obj)) is not None
                  and imp.cluster != self.cluster_id]
        ours = ClusterImport(cluster=self.cluster_id, service_type=pub.service_type,
                             ports=tuple(sorted(pub.ports)), exported_at=pub.exported_at,
                             properties=pub.properties, clusterset_ip=clusterset_ip)
        agg = aggregate([*others, ours])
        assert agg is not None  # ours is in it
        return agg
