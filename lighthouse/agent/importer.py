"""Importer: every cluster's exports on the Broker -> this cluster's imported objects.

Key: "<namespace>/<service>". For a service exported by any cluster (its own
included) and whose namespace exists here, the importer keeps in that namespace:

* one EndpointSlice per exporting cluster: a copy of the Broker's, same labels
  (source cluster, service name, source namespace, managed-by), so the DNS feed
  and users read the global IPs locally;
* one aggregated ServiceImport named like the service: the union of the ports,
  the type and MCS v1beta1 properties of the oldest export (exported labels and
  annotations on the object itself), ``status.clusters`` and a ``Ready`` condition
  (some cluster publishes a ready endpoint) (``aggregate.py``, ``render.py``).

Slices go first: they are what DNS answers from. Objects whose export left the
Broker are deleted; objects here that are not labelled as ours are never touched.
A namespace created later gets its imports then (namespace events queue every
service of it). Conflicts are not reported here: the exporter of each cluster
owns its ServiceExport's status and reads the same Broker cache.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kube import controller, names, resources
from kube import objects as o
from kube.crud import ResourceClient
from kube.informers import Index, InformerSet
from kube.reconcile import Result
from kube.resources import Resource
from kube.store import split_key
from lighthouse.agent import render
from lighthouse.agent.aggregate import aggregate
from lighthouse.agent.base import MAX_REQUEUES, create_or_update
from lighthouse.agent.brokercache import BrokerCache
from lighthouse.agent.model import JSON

log = logging.getLogger(__name__)


def _service_keys(obj: JSON) -> list[str]:
    key = render.service_key_of(obj)
    return [key] if key else []


def is_broker_namespace(namespace: str, broker_namespace: str) -> bool:
    """Whether ``namespace`` is the Broker namespace or a member namespace of it
    (``names.broker_member_namespace``, any member: also one that left, whose
    namespace may outlive its Cluster object)."""
    return namespace == broker_namespace or namespace.startswith(
        names.broker_member_namespace("", broker_namespace))


def is_broker_object(obj: JSON, broker_namespace: str) -> bool:
    """Whether a local object lives in a Broker namespace (the Broker may share the
    cluster's API server): it is what a member published, never one of our imports."""
    return is_broker_namespace(o.namespace(obj), broker_namespace)


def _owned_by(identity: render.Identity) -> Callable[[JSON], bool]:
    return lambda obj: render.identity_of(obj) == identity


def _is_aggregate(obj: JSON) -> bool:
    """Ours and without a source cluster: an aggregated ServiceImport."""
    labels = o.labels(obj)
    return (labels.get(names.MANAGED_BY_LABEL) == names.MANAGED_BY_LIGHTHOUSE
            and names.SOURCE_CLUSTER_LABEL not in labels)


class Importer(controller.Controller):
    name = "lighthouse-importer"
    workers = 3

    def __init__(self, *, local_api: Any, local: InformerSet, broker: BrokerCache,
                 endpointslices: Resource) -> None:
        super().__init__(max_requeues=MAX_REQUEUES)
        self.broker_namespace = broker.namespace
        self.local = local
        self.broker = broker
        self.endpointslices = endpointslices
        self.import_client = ResourceClient(local_api, resources.SERVICE_IMPORTS)
        self.slice_client = ResourceClient(local_api, endpointslices)

    # --- wiring ------------------------------------------------------------------------------
    def register(self) -> None:
        self.namespaces = self.local.get(resources.NAMESPACES)
        self.imports = self.local.get(resources.SERVICE_IMPORTS,
                                      label_selector=names.LIGHTHOUSE_SELECTOR)
        self.slices = self.local.get(self.endpointslices, label_selector=names.LIGHTHOUSE_SELECTOR)
        self.slices_by_service = Index(self.slices, self._local_keys)
        self.watch(self.broker.imports, _service_keys)
        self.watch(self.broker.slices, _service_keys)
        self.watch(self.imports, self._local_keys)
        self.watch(self.slices, self._local_keys)
        self.watch(self.namespaces, self._services_in_namespace)

    def _local_keys(self, obj: JSON) -> list[str]:
        return [] if is_broker_object(obj, self.broker_namespace) else _service_keys(obj)

    def _services_in_namespace(self, namespace: JSON) -> list[str]:
        prefix = f"{o.name(namespace)}/"
        keys = set(self.broker.imports_by_service.index_keys())
        keys.update(self.broker.slices_by_service.index_keys())
        return [k for k in keys if k.startswith(prefix)]

    def resync_all(self) -> None:
        keys = set(self.broker.imports_by_service.index_keys())
        keys.update(self.broker.slices_by_service.index_keys())
        keys.update(self.slices_by_service.index_keys())
        keys.update(k for obj in self.imports.list() for k in self._local_keys(obj))
        for key in sorted(keys):
            self.enqueue(key)

    # --- reconcile -----------------------------------------------------------------------------
    def reconcile(self, key: str) -> Result | None:
        ns, svc = split_key(key)
        assert ns is not None
        if is_broker_namespace(ns, self.broker_namespace):
            return None
        namespace = self.namespaces.get(ns)
        if namespace is None or o.is_deleting(namespace):
            return None  # nothing to import into; anything left goes with the namespace
        self.sync_slices(key, ns)
        self.sync_service_import(key, ns, svc)
        return None

    def sync_slices(self, key: str, ns: str) -> None:
        """One local copy per Broker slice of this service; extra copies deleted."""
        local_by_identity: dict[render.Identity, JSON] = {}
        for obj in self.slices_by_service.objects(key):
            ident = render.identity_of(obj)
            if ident is None or ident in local_by_identity:
                # A duplicate: one copy per cluster.
                self.slice_client.delete_if_exists(o.name(obj), namespace=o.namespace(obj),
                                                   uid=o.uid(obj), conflict_is_gone=True)
            else:
                local_by_identity[ident] = obj
        wanted: set[render.Identity] = set()
        for broker_slice in self.broker.slices_by_service.objects(key):
            ident = render.identity_of(broker_slice)
            if ident is None or ident in wanted:
                continue
            wanted.add(ident)
            existing = local_by_identity.get(ident)
            name = o.name(existing) if existing else self._copy_name(ns, broker_slice, ident)
            desired = render.local_slice_copy(broker_slice, name=name, namespace=ns,
                                              api_version=self.endpointslices.api_version)
            create_or_update(self.slice_client, desired, existing,
                             content=render.slice_content,
                             fields=("addressType", "endpoints", "ports"),
                             owned=_owned_by(ident))
        for ident, obj in local_by_identity.items():
            if ident not in wanted:
                self.slice_client.delete_if_exists(o.name(obj), namespace=o.namespace(obj),
                                                   uid=o.uid(obj), conflict_is_gone=True)

    def _copy_name(self, ns: str, broker_slice: JSON, ident: render.Identity) -> str:
        name = o.name(broker_slice)
        existing = self.slices.get(f"{ns}/{name}")
        if existing is not None and render.identity_of(existing) != ident:
            return render.object_name(*ident, taken_by_other=True)
        return name

    def sync_service_import(self, key: str, ns: str, svc: str) -> None:
        """The aggregated ServiceImport: spec by create-or-update, then status.clusters."""
        existing = self.imports.get(key)
        if existing is not None and not _is_aggregate(existing):
            existing = None
        imports = [imp for obj in self.broker.imports_by_service.objects(key)
                   if (imp := render.cluster_import_of(obj)) is not None]
        agg = aggregate(imports)
        if agg is None:
            if existing is not None:
                self.import_client.delete_if_exists(
                    o.name(existing), namespace=o.namespace(existing), uid=o.uid(existing),
                    conflict_is_gone=True)
            return
        ready = any(e.ready for obj in self.broker.slices_by_service.objects(key)
                    for e in render.endpoints_of(obj))
        desired = render.aggregated_service_import(namespace=ns, name=svc, agg=agg, ready=ready)
        written = create_or_update(self.import_client, desired, existing,
                                   content=render.import_content, fields=("spec",),
                                   owned=_is_aggregate)
        current = written or existing
        if current is None:
            return  # a ServiceImport of that name that is not ours

        controller.write_status(self.import_client, current,
                                lambda obj: render.set_import_status(obj, desired))
