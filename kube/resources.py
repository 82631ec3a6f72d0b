"""Typed descriptions of the API resources Globalnet uses, and the URL paths they live at.

A ``Resource`` is plain data (group, version, plural, kind, scope). It replaces the
generated per-kind API classes: one generic CRUD helper (``kube.crud``) and one informer
(``kube.informer``) serve every kind, built-in or custom. EndpointSlice has no constant
with a fixed version: 1.20 serves only ``v1beta1`` and 1.21+ adds ``v1``, so it is
discovered at run time (``kube.discovery.endpointslices``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import quote


@dataclass(frozen=True)
class Resource:
    """One REST resource: ``group`` is "" for the core API."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        """The ``apiVersion`` field of objects of this resource ("v1", "submariner.io/v1")."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified_name(self) -> str:
        """``plural.group`` (the CRD's metadata.name for custom resources)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def with_version(self, version: str) -> Resource:
        return replace(self, version=version)

    def path(
        self,
        *,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        """The URL path of the collection, or of one object (and one of its subresources).

        A namespaced resource without ``namespace`` addresses all namespaces (lists and
        watches only).
        """
        if namespace and not self.namespaced:
            raise ValueError(f"{self.kind} is cluster-scoped; got namespace {namespace!r}")
        if name is not None and self.namespaced and not namespace:
            raise ValueError(f"{self.kind} {name!r} needs a namespace")
        if subresource is not None and name is None:
            raise ValueError("a subresource needs an object name")
        parts = ["/api/v1" if not self.group else f"/apis/{self.group}/{self.version}"]
        if namespace:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=""))
        if subresource is not None:
            parts.append(subresource)
        return "/".join(parts)


# Core API.
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
PODS = Resource("", "v1", "pods", "Pod", namespaced=True)
SERVICES = Resource("", "v1", "services", "Service", namespaced=True)
ENDPOINTS = Resource("", "v1", "endpoints", "Endpoints", namespaced=True)
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap", namespaced=True)
SECRETS = Resource("", "v1", "secrets", "Secret", namespaced=True)
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount", namespaced=True)
EVENTS = Resource("", "v1", "events", "Event", namespaced=True)

# Built-in groups.
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True)
CUSTOM_RESOURCE_DEFINITIONS = Resource(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    "CustomResourceDefinition",
    namespaced=False,
)
ENDPOINTSLICE_GROUP = "discovery.k8s.io"
# The version here is a placeholder: resolve it with kube.discovery.endpointslices().
ENDPOINTSLICES_V1BETA1 = Resource(
    ENDPOINTSLICE_GROUP, "v1beta1", "endpointslices", "EndpointSlice", namespaced=True
)
ENDPOINTSLICES_V1 = ENDPOINTSLICES_V1BETA1.with_version("v1")

# Submariner's CRDs (kube/crds/).
SUBMARINER_GROUP = "submariner.io"
CLUSTERS = Resource(SUBMARINER_GROUP, "v1", "clusters", "Cluster", namespaced=True)
SUBMARINER_ENDPOINTS = Resource(SUBMARINER_GROUP, "v1", "endpoints", "Endpoint", namespaced=True)
GATEWAYS = Resource(SUBMARINER_GROUP, "v1", "gateways", "Gateway", namespaced=True)
CLUSTER_GLOBAL_EGRESS_IPS = Resource(
    SUBMARINER_GROUP, "v1", "clusterglobalegressips", "ClusterGlobalEgressIP", namespaced=False
)
GLOBAL_EGRESS_IPS = Resource(
    SUBMARINER_GROUP, "v1", "globalegressips", "GlobalEgressIP", namespaced=True
)
GLOBAL_INGRESS_IPS = Resource(
    SUBMARINER_GROUP, "v1", "globalingressips", "GlobalIngressIP", namespaced=True
)

# Multi-cluster Services API (kube/crds/, sigs.k8s.io/mcs-api v0.5.0). Our CRDs store
# MCS_VERSION and still serve the legacy versions; a server with only an older CRD (a
# Broker not upgraded yet) is spoken to at the version kube.discovery.mcs_version finds.
MCS_GROUP = "multicluster.x-k8s.io"
MCS_VERSION = "v1beta1"
MCS_LEGACY_VERSIONS: tuple[str, ...] = ("v1alpha1",)
MCS_API_VERSION = f"{MCS_GROUP}/{MCS_VERSION}"
SERVICE_EXPORTS = Resource(
    MCS_GROUP, MCS_VERSION, "serviceexports", "ServiceExport", namespaced=True
)
SERVICE_IMPORTS = Resource(
    MCS_GROUP, MCS_VERSION, "serviceimports", "ServiceImport", namespaced=True
)

# The custom resources whose CRDs ship in kube/crds/, in install order.
CUSTOM_RESOURCES: tuple[Resource, ...] = (
    CLUSTERS,
    SUBMARINER_ENDPOINTS,
    GATEWAYS,
    CLUSTER_GLOBAL_EGRESS_IPS,
    GLOBAL_EGRESS_IPS,
    GLOBAL_INGRESS_IPS,
    SERVICE_EXPORTS,
    SERVICE_IMPORTS,
)
