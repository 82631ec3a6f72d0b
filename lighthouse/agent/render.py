"""API object bodies the agent writes, and the readings it takes back from them.

Pure: publications and aggregates in, plain dicts out (and the reverse). Every
object the agent owns carries the same labels (``kube.names``), so it is found by
label, never by parsing its name: ``<svc>-<ns>-<cluster>`` as upstream names them,
with a hash suffix only when that name is over 253 characters or already taken by
another service (``a-b`` in ``c`` and ``a`` in ``b-c`` would both be
``a-b-c-<cluster>``).

Comparisons go through canonical forms (:func:`slice_content`,
:func:`import_content`), so a server that adds defaults never makes the agent
rewrite an unchanged object.

ServiceImports are written at ``kube.resources.MCS_API_VERSION`` (v1beta1) with its
fields: ``sessionAffinity``/``sessionAffinityConfig``, ``ipFamilies``,
``internalTrafficPolicy``, ``trafficDistribution`` and ``ips``. An export's
exportedLabels and exportedAnnotations become the ServiceImports' own labels and
annotations (ours win on a shared key); ``names.EXPORTED_ANNOTATIONS_ANNOTATION``
lists the exported annotation keys, so readers tell them from others' annotations.
A Broker still at v1alpha1 drops the new fields: they read back as unset.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import netaddr

from kube import conditions, names, resources
from kube import objects as o
from lighthouse.agent import reasons as r
from lighthouse.agent.aggregate import Aggregate
from lighthouse.agent.model import (
    JSON,
    ClusterImport,
    EndpointSpec,
    Port,
    Properties,
    Publication,
    pairs,
)

Identity = tuple[str, str, str]
"""(source namespace, service name, source cluster) of a published object."""

MAX_NAME = 253


def labels_for(*, cluster: str, namespace: str, name: str, service_type: str | None = None
               ) -> dict[str, str]:
    """The labels of every object published or imported for one cluster's export."""
    labels = {
        names.SOURCE_CLUSTER_LABEL: cluster,
        names.SERVICE_NAME_LABEL: name,
        names.SOURCE_NAMESPACE_LABEL: namespace,
        names.MANAGED_BY_LABEL: names.MANAGED_BY_LIGHTHOUSE,
    }
    if service_type:
        labels[names.SERVICE_TYPE_LABEL] = service_type
    return labels


def identity_of(obj: JSON) -> Identity | None:
    """Whose export an object is, from its labels; None for objects not ours."""
    labels = o.labels(obj)
    if labels.get(names.MANAGED_BY_LABEL) != names.MANAGED_BY_LIGHTHOUSE:
        return None
    ns = labels.get(names.SOURCE_NAMESPACE_LABEL)
    svc = labels.get(names.SERVICE_NAME_LABEL)
    cluster = labels.get(names.SOURCE_CLUSTER_LABEL)
    if not (ns and svc and cluster):
        return None
    return (ns, svc, cluster)


def service_key_of(obj: JSON) -> str | None:
    """"<namespace>/<service>" an object of ours is about (the controllers' work key).

    Needs no source cluster, so it also reads the aggregated local ServiceImport.
    """
    labels = o.labels(obj)
    if labels.get(names.MANAGED_BY_LABEL) != names.MANAGED_BY_LIGHTHOUSE:
        return None
    ns, svc = labels.get(names.SOURCE_NAMESPACE_LABEL), labels.get(names.SERVICE_NAME_LABEL)
    return f"{ns}/{svc}" if ns and svc else None


def object_name(namespace: str, name: str, cluster: str, *, taken_by_other: bool = False
                ) -> str:
    """``<svc>-<ns>-<cluster>``, or that plus a hash of the identity if it is taken."""
    base = f"{name}-{namespace}-{cluster}"
    if not taken_by_other and len(base) <= MAX_NAME:
        return base
    digest = hashlib.sha256(f"{namespace}/{name}/{cluster}".encode()).hexdigest()[:10]
    return f"{base[:MAX_NAME - 11].rstrip('-.')}-{digest}"


# --- ServiceImport properties -------------------------------------------------------------

# ServiceImport spec fields v1beta1 added; a v1alpha1-only server (an older Broker) drops
# them, so the agent does not write them there (they read back as unset).
V1BETA1_ONLY_SPEC_FIELDS = ("ipFamilies", "internalTrafficPolicy", "trafficDistribution")

def properties_spec(props: Properties) -> JSON:
    """The ServiceImport spec fields of ``props`` (unset ones left out)."""
    spec: JSON = {"sessionAffinity": props.session_affinity}
    if props.session_affinity_timeout is not None:
        spec["sessionAffinityConfig"] = {
            "clientIP": {"timeoutSeconds": props.session_affinity_timeout}}
    if props.ip_families:
        spec["ipFamilies"] = list(props.ip_families)
    if props.internal_traffic_policy:
        spec["internalTrafficPolicy"] = props.internal_traffic_policy
    if props.traffic_distribution:
        spec["trafficDistribution"] = props.traffic_distribution
    return spec


def exported_annotations(props: Properties) -> dict[str, str]:
    """The exported annotations, the annotation that lists their keys, and the
    traffic distribution and use-clusterset-ip choice when the export sets them."""
    out = dict(props.annotations)
    out[names.EXPORTED_ANNOTATIONS_ANNOTATION] = ",".join(k for k, _ in props.annotations)
    if props.distribution:
        out[names.TRAFFIC_DISTRIBUTION_ANNOTATION] = props.distribution
    if props.use_clusterset_ip is not None:
        out[names.USE_CLUSTERSET_IP_ANNOTATION] = str(props.use_clusterset_ip).lower()
    return out


def properties_of(obj: JSON) -> Properties:
    """The properties a ServiceImport carries (the reverse of :func:`properties_spec`)."""
    spec = o.spec(obj)
    timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get(
        "timeoutSeconds")
    annotations = o.annotations_of(obj)
    distribution = annotations.get(names.TRAFFIC_DISTRIBUTION_ANNOTATION)
    use_vip = annotations.get(names.USE_CLUSTERSET_IP_ANNOTATION)
    keys = [k for k in annotations.get(names.EXPORTED_ANNOTATIONS_ANNOTATION, "").split(",")
            if k and k in annotations]
    return Properties(
        session_affinity=str(spec.get("sessionAffinity") or r.SESSION_AFFINITY_NONE),
        session_affinity_timeout=timeout if isinstance(timeout, int) else None,
        ip_families=tuple(str(f) for f in spec.get("ipFamilies") or ()),
        internal_traffic_policy=str(spec.get("internalTrafficPolicy") or "") or None,
        traffic_distribution=str(spec.get("trafficDistribution") or "") or None,
        labels=pairs({k: v for k, v in o.labels(obj).items()
                      if k not in names.RESERVED_IMPORT_LABELS}),
        annotations=pairs({k: annotations[k] for k in keys}),
        distribution=distribution if distribution in r.DISTRIBUTIONS else None,
        use_clusterset_ip={"true": True, "false": False}.get(use_vip or ""),
    )


# --- per-cluster objects on the Broker -------------------------------------------------------

def service_import(*, name: str, namespace: str, cluster: str, source_namespace: str,
                   service: str, publication: Publication,
                   api_version: str = resources.MCS_API_VERSION, clusterset_ip: str = "") -> JSON:
    """The per-cluster ServiceImport this cluster publishes on the Broker
    (``api_version``: what that Broker serves, ``kube.discovery.service_imports``;
    ``clusterset_ip``: the VIP this export holds, ``agent.clustersetip``)."""
    props = publication.properties
    spec: JSON = {"type": publication.service_type,
                  "ports": [p.to_json() for p in publication.ports], **properties_spec(props)}
    if publication.ips:
        spec["ips"] = list(publication.ips)
    if api_version.rsplit("/", 1)[-1] in resources.MCS_LEGACY_VERSIONS:
        # The server would prune them, so the object would never compare equal to what
        # we want: every reconcile would send another (no-op) update.
        for field in V1BETA1_ONLY_SPEC_FIELDS:
            spec.pop(field, None)
    return {
        "apiVersion": api_version,
        "kind": "ServiceImport",
        "metadata": {
            "name": name, "namespace": namespace,
            "labels": {**dict(props.labels),
                       **labels_for(cluster=cluster, namespace=source_namespace, name=service,
                                    service_type=publication.service_type)},
            "annotations": {**exported_annotations(props),
                            names.EXPORTED_AT_ANNOTATION: publication.exported_at,
                            **({names.CLUSTERSET_IP_ANNOTATION: clusterset_ip}
                               if clusterset_ip else {})},
        },
        "spec": spec,
    }


def _endpoint_json(endpoint: EndpointSpec) -> JSON:
    out: JSON = {"addresses": [endpoint.ip], "conditions": {"ready": endpoint.ready}}
    if endpoint.hostname:
        out["hostname"] = endpoint.hostname
    return out


def endpoint_slice(*, name: str, namespace: str, api_version: str, cluster: str,
                   source_namespace: str, service: str, publication: Publication,
                   distribution: str = r.LOCAL_FIRST, vip: str = "",
                   vip_in_dns: bool = False) -> JSON:
    """The EndpointSlice of global IPs this cluster publishes on the Broker.

    A ClusterSetIP export's also says the service's traffic ``distribution`` (the
    aggregate's, so every cluster's slice says the same) and its ready backends, for
    the DNS answers (``lighthouse.dns.policy``), and the service's ClusterSetIP ``vip``
    when it has one, with whether DNS answers it (``vip_in_dns``), for the DNS answers
    and every node's VIP table (``agent.viptable``).
    """
    labels = labels_for(cluster=cluster, namespace=source_namespace, name=service,
                        service_type=publication.service_type)
    labels[names.ENDPOINTSLICE_MANAGED_BY_LABEL] = names.ENDPOINTSLICE_MANAGED_BY_LIGHTHOUSE
    if publication.service_type == r.CLUSTER_SET_IP:
        labels[names.TRAFFIC_DISTRIBUTION_LABEL] = distribution
        labels[names.READY_BACKENDS_LABEL] = str(publication.ready_backends)
        if vip:
            labels[names.VIP_LABEL] = vip
            labels[names.VIP_IN_DNS_LABEL] = str(vip_in_dns).lower()
    return {
        "apiVersion": api_version,
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "addressType": "IPv4",
        "endpoints": [_endpoint_json(e) for e in publication.endpoints],
        "ports": [{"name": p.name, "protocol": p.protocol, "port": p.port}
                  for p in publication.slice_ports],
    }


def local_slice_copy(broker_slice: JSON, *, name: str, namespace: str, api_version: str
                     ) -> JSON:
    """The copy of a Broker EndpointSlice in the service's namespace of a cluster."""
    return {
        "apiVersion": api_version,
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": dict(o.labels(broker_slice))},
        "addressType": broker_slice.get("addressType") or "IPv4",
        "endpoints": copy.deepcopy(broker_slice.get("endpoints") or []),
        "ports": copy.deepcopy(broker_slice.get("ports") or []),
    }


def aggregated_service_import(*, namespace: str, name: str, agg: Aggregate,
                              ready: bool = True) -> JSON:
    """The aggregated ServiceImport in a cluster's namespace (spec and status).

    ``spec.ips`` is ``agg.ips``: the service's ClusterSetIP VIP, the same in every
    cluster (``agent.clustersetip``); empty while no export holds one (each cluster's
    own global IP is in its EndpointSlice). ``ready``: some exporting cluster has a
    ready endpoint (the ``Ready`` condition).
    """
    spec: JSON = {"type": agg.service_type, "ports": [p.to_json() for p in agg.ports],
                  **properties_spec(agg.properties)}
    if agg.ips:
        spec["ips"] = list(agg.ips)
    return {
        "apiVersion": resources.MCS_API_VERSION,
        "kind": "ServiceImport",
        "metadata": {"name": name, "namespace": namespace, "labels": {
            **dict(agg.properties.labels),
            names.SERVICE_NAME_LABEL: name, names.SOURCE_NAMESPACE_LABEL: namespace,
            names.MANAGED_BY_LABEL: names.MANAGED_BY_LIGHTHOUSE},
            "annotations": exported_annotations(agg.properties)},
        "spec": spec,
        "status": {"clusters": [{"cluster": c} for c in agg.clusters],
                   "conditions": [import_ready_condition(agg, ready=ready)]},
    }


def import_ready_condition(agg: Aggregate, *, ready: bool) -> JSON:
    """The aggregated ServiceImport's ``Ready`` condition (no transition time: the
    importer sets it through ``kube.conditions``)."""
    clusters = ", ".join(agg.clusters)
    if ready:
        return {"type": r.READY, "status": "True", "reason": r.REASON_READY,
                "message": f"Imported from [{clusters}]"}
    return {"type": r.READY, "status": "False", "reason": r.PENDING,
            "message": f"No ready endpoint yet in the exporting clusters [{clusters}]"}


def set_import_status(obj: JSON, desired: JSON) -> bool:
    """Bring ``obj``'s status to ``desired``'s (clusters and conditions); True if changed."""
    status = obj.setdefault("status", {})
    changed = False
    if import_status(obj) != import_status(desired):
        status["clusters"] = copy.deepcopy(o.status(desired).get("clusters") or [])
        changed = True
    conds = status.setdefault("conditions", [])
    for cond in o.status(desired).get("conditions") or []:
        changed |= conditions.set_condition(conds, type=cond["type"],
                                            status=cond["status"] == "True",
                                            reason=cond["reason"], message=cond["message"])
    return changed


# --- readings -----------------------------------------------------------------------------------

def ports_of(items: Any) -> tuple[Port, ...]:
    ports = (Port.from_json(p) for p in items or [])
    return tuple(sorted(p for p in ports if p is not None))


def cluster_import_of(obj: JSON) -> ClusterImport | None:
    """A per-cluster Broker ServiceImport as a :class:`ClusterImport` (None if not ours)."""
    ident = identity_of(obj)
    if ident is None:
        return None
    return ClusterImport(cluster=ident[2], service_type=str(o.spec(obj).get("type") or ""),
                         ports=ports_of(o.spec(obj).get("ports")),
                         exported_at=o.annotations_of(obj).get(names.EXPORTED_AT_ANNOTATION, ""),
                         properties=properties_of(obj), clusterset_ip=clusterset_ip_of(obj))


def clusterset_ip_of(obj: JSON) -> str:
    """The VIP a Broker ServiceImport's export holds; "" if none or not an address."""
    value = o.annotations_of(obj).get(names.CLUSTERSET_IP_ANNOTATION, "")
    try:
        return str(netaddr.IPAddress(value)) if value else ""
    except (netaddr.AddrFormatError, ValueError):
        return ""


def endpoints_of(slice_: JSON) -> tuple[EndpointSpec, ...]:
    """A slice's endpoints (one per address); nil readiness counts as ready (K8s rule)."""
    out = []
    for entry in slice_.get("endpoints") or []:
        if not isinstance(entry, dict):
            continue
        ready = (entry.get("conditions") or {}).get("ready")
        hostname = entry.get("hostname")
        for ip in entry.get("addresses") or []:
            out.append(EndpointSpec(ip=str(ip), hostname=str(hostname) if hostname else None,
                                    ready=ready is not False))
    return tuple(sorted(out))


def slice_content(slice_: JSON) -> tuple[Any, ...]:
    """Canonical form of what an EndpointSlice says (labels included)."""
    return (o.labels(slice_), slice_.get("addressType"), endpoints_of(slice_),
            ports_of(slice_.get("ports")))


def import_content(obj: JSON) -> tuple[Any, ...]:
    """Canonical form of a ServiceImport's labels, our and exported annotations, and spec."""
    spec = o.spec(obj)
    ours = {k: v for k, v in o.annotations_of(obj).items()
            if k in names.RESERVED_IMPORT_ANNOTATIONS}
    return (o.labels(obj), ours, spec.get("type"), ports_of(spec.get("ports")),
            tuple(spec.get("ips") or ()), properties_of(obj))


def import_status(obj: JSON) -> tuple[str, ...]:
    return tuple(sorted(str(c.get("cluster")) for c in o.status(obj).get("clusters") or []
                        if isinstance(c, dict)))
