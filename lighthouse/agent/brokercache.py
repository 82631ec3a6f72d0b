"""The agent's cache of the Broker: every cluster's ServiceImports and EndpointSlices.

One pair of informers, scoped to the Broker namespace and to objects labelled as
ours, shared by the exporter (which needs its own objects, to update or withdraw
them, and the other clusters' imports, for conflicts) and the importer (which
copies all of them into its cluster). Indexed by service ("<ns>/<svc>") and by
source cluster.
"""

from __future__ import annotations

from kube import names, resources
from kube.informer import Informer
from kube.informers import Index, InformerSet
from kube.resources import Resource
from lighthouse.agent import render
from lighthouse.agent.model import JSON


def _service_keys(obj: JSON) -> list[str]:
    key = render.service_key_of(obj)
    return [key] if key else []


def _cluster_keys(obj: JSON) -> list[str]:
    ident = render.identity_of(obj)
    return [ident[2]] if ident else []


class BrokerCache:
    """Informers and indexes over the Broker namespace (create before any controller)."""

    def __init__(self, informers: InformerSet, *, namespace: str,
                 endpointslices: Resource) -> None:
        self.namespace = namespace
        self.endpointslices = endpointslices
        self.imports: Informer = informers.get(
            resources.SERVICE_IMPORTS, namespace=namespace,
            label_selector=names.LIGHTHOUSE_SELECTOR)
        self.slices: Informer = informers.get(
            endpointslices, namespace=namespace, label_selector=names.LIGHTHOUSE_SELECTOR)
        self.imports_by_service = Index(self.imports, _service_keys)
        self.slices_by_service = Index(self.slices, _service_keys)
        self.imports_by_cluster = Index(self.imports, _cluster_keys)
        self.slices_by_cluster = Index(self.slices, _cluster_keys)

    def published_by(self, cluster: str, service_key: str) -> tuple[list[JSON], list[JSON]]:
        """(ServiceImports, EndpointSlices) ``cluster`` has on the Broker for a service."""

        def mine(obj: JSON) -> bool:
            ident = render.identity_of(obj)
            return ident is not None and ident[2] == cluster

        return ([i for i in self.imports_by_service.objects(service_key) if mine(i)],
                [s for s in self.slices_by_service.objects(service_key) if mine(s)])

    def name_taken(self, informer: Informer, name: str, identity: render.Identity) -> bool:
        """Whether ``name`` in the Broker namespace is held by another export's object."""
        existing = informer.get(f"{self.namespace}/{name}")
        return existing is not None and render.identity_of(existing) != identity
