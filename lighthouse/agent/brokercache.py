"""The agent's cache of the Broker: every cluster's ServiceImports and EndpointSlices.

Each member publishes into its own namespace on the Broker
(``names.broker_member_namespace``); the Broker namespace itself holds the
``Cluster`` objects, which say which member namespaces there are. One pair of
informers over every member namespace (``InformerSet.across_members``: a member
that leaves is dropped at once, its objects reported deleted) and objects labelled
as ours, shared by the exporter (which needs its own objects, to update or withdraw
them, and the other clusters' imports, for conflicts) and the importer (which
copies all of them into its cluster). Indexed by service ("<ns>/<svc>") and by
source cluster; an object counts only in the namespace of the cluster its labels
name (a member cannot publish for another).
"""

from __future__ import annotations

from kube import names, resources
from kube import objects as o
from kube.informer import Cache
from kube.informers import Index, InformerSet
from kube.resources import Resource
from lighthouse.agent import render
from lighthouse.agent.model import JSON


class BrokerCache:
    """Informers and indexes over the member namespaces (create before any controller)."""

    def __init__(self, informers: InformerSet, *, namespace: str,
                 endpointslices: Resource,
                 service_imports: Resource = resources.SERVICE_IMPORTS) -> None:
        """``namespace``: the Broker namespace (of the ``Cluster`` objects);
        ``endpointslices``/``service_imports``: at the versions the Broker serves
        (``kube.discovery``; an older Broker serves MCS v1alpha1 only)."""
        self.namespace = namespace
        self.endpointslices = endpointslices
        self.service_imports = service_imports
        self.imports: Cache = informers.across_members(
            service_imports, broker_namespace=namespace,
            label_selector=names.LIGHTHOUSE_SELECTOR)
        self.slices: Cache = informers.across_members(
            endpointslices, broker_namespace=namespace, label_selector=names.LIGHTHOUSE_SELECTOR)
        self.imports_by_service = Index(self.imports, self._service_keys)
        self.slices_by_service = Index(self.slices, self._service_keys)
        self.imports_by_cluster = Index(self.imports, self._cluster_keys)
        self.slices_by_cluster = Index(self.slices, self._cluster_keys)

    def member_namespace(self, cluster: str) -> str:
        """Where ``cluster`` publishes on the Broker."""
        return names.broker_member_namespace(cluster, self.namespace)

    def _owned_identity(self, obj: JSON) -> render.Identity | None:
        """Whose export ``obj`` is, if it lives in that cluster's member namespace."""
        ident = render.identity_of(obj)
        if ident is None or o.namespace(obj) != self.member_namespace(ident[2]):
            return None
        return ident

    def _service_keys(self, obj: JSON) -> list[str]:
        ident = self._owned_identity(obj)
        return [f"{ident[0]}/{ident[1]}"] if ident else []

    def _cluster_keys(self, obj: JSON) -> list[str]:
        ident = self._owned_identity(obj)
        return [ident[2]] if ident else []

    def published_by(self, cluster: str, service_key: str) -> tuple[list[JSON], list[JSON]]:
        """(ServiceImports, EndpointSlices) ``cluster`` has on the Broker for a service."""

        def mine(obj: JSON) -> bool:
            ident = render.identity_of(obj)
            return ident is not None and ident[2] == cluster

        return ([i for i in self.imports_by_service.objects(service_key) if mine(i)],
                [s for s in self.slices_by_service.objects(service_key) if mine(s)])

    def name_taken(self, informer: Cache, name: str, identity: render.Identity) -> bool:
        """Whether ``name`` in the member namespace of ``identity``'s cluster (where its
        object goes) is held by another export's object."""
        existing = informer.get(f"{self.member_namespace(identity[2])}/{name}")
        return existing is not None and render.identity_of(existing) != identity
