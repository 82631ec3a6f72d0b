"""Decide what one cluster publishes for one ServiceExport, and the conditions to show.

A pure function of the export, its Service, the Service's Endpoints, its
GlobalIngressIPs and the pods they name (all read from informer caches by the
exporter). Rules, after upstream Lighthouse and the MCS API:

* no Service: ``Valid=False NoService``, nothing published (an export
  created before its Service is published as soon as the Service appears);
* a Service that is neither ClusterIP nor headless (ExternalName, NodePort,
  LoadBalancer): ``Valid=False InvalidServiceType``;
* ClusterIP under Globalnet: the GlobalIngressIP named like the Service gives the
  address; until it has one, ``Valid=False ServiceGlobalIPUnavailable`` and nothing
  is published (clients must never get the cluster-local ClusterIP). The slice holds
  that one address, ready when any backend is ready in the Service's Endpoints;
* headless under Globalnet: each backend's GlobalIngressIP (``pod-<pod>`` for a
  selector, ``ep-<svc>-<ip>`` without one), named by the pod's ``spec.hostname`` or
  the pod name. It is published with the addresses it already has; ready backends
  still lacking one make ``Ready=False ServiceGlobalIPUnavailable``;
* without Globalnet the ClusterIP and the pod IPs are published instead;
* every publication carries the MCS v1beta1 properties (:func:`properties_of`): the
  Service's session affinity, IP families and, where the API server has them,
  ``internalTrafficPolicy``/``trafficDistribution``; the export's exportedLabels and
  exportedAnnotations, less the keys the agents read (``kube.names.RESERVED_*``)
  and entries the API server would refuse (bad keys, bad label values): those are
  left out and named in the ``Valid`` message, so one bad entry does not stop the
  export.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kube import names, validation
from kube import objects as o
from lighthouse.agent import reasons as r
from lighthouse.agent.model import (
    JSON,
    EndpointSpec,
    Pairs,
    Port,
    Properties,
    Publication,
    pairs,
)

GLOBAL_IP_PENDING_MESSAGE = "Service doesn't have a global IP yet"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionState:
    """One condition to show on the ServiceExport."""

    status: bool
    reason: str
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class ExportInputs:
    """Everything ``decide`` reads, from the local cluster's caches."""

    export: JSON | None
    service: JSON | None
    endpoints: JSON | None = None
    ingress_ips: Sequence[JSON] = ()
    # The pods the headless GlobalIngressIPs point at, by name (same namespace).
    pods: Mapping[str, JSON] = field(default_factory=dict)
    globalnet: bool = True


@dataclass(frozen=True, kw_only=True)
class Decision:
    """Conditions to write (None: the export is gone, write nothing) and what to publish."""

    valid: ConditionState | None = None
    ready: ConditionState | None = None
    publication: Publication | None = None


def dns_label_or_none(name: str | None) -> str | None:
    """``name`` when it can be an EndpointSlice hostname (a DNS label), else None."""
    if name and validation.is_dns_label(name):
        return name
    return None


def service_import_type(service: JSON) -> str | None:
    """ClusterSetIP or Headless for an exportable Service, None for any other type."""
    if o.service_type(service) != "ClusterIP":
        return None
    return r.HEADLESS if o.is_headless(service) else r.CLUSTER_SET_IP


def service_ports(service: JSON) -> tuple[Port, ...]:
    """The Service's ports in MCS form (name, protocol, port, appProtocol)."""
    ports = (Port.from_json(p) for p in o.spec(service).get("ports") or [])
    return tuple(p for p in ports if p is not None)


def _endpoint_addresses(endpoints: JSON | None, key: str = "addresses") -> list[JSON]:
    out: list[JSON] = []
    for subset in (endpoints or {}).get("subsets") or []:
        if isinstance(subset, dict):
            out.extend(a for a in subset.get(key) or [] if isinstance(a, dict) and a.get("ip"))
    return out


def ready_backends(endpoints: JSON | None) -> int:
    """How many ready addresses the Service's Endpoints list."""
    return len({str(a.get("ip")) for a in _endpoint_addresses(endpoints)})


def backend_ports(service: JSON, endpoints: JSON | None) -> tuple[Port, ...]:
    """Ports on the backends (a headless service's clients connect to them directly).

    The Endpoints carry the resolved target ports; before they exist, a numeric
    ``targetPort`` is used, else the service port.
    """
    by_name: dict[str, Port] = {}
    for subset in (endpoints or {}).get("subsets") or []:
        for raw in (subset or {}).get("ports") or []:
            port = Port.from_json(raw)
            if port is not None:
                by_name.setdefault(port.name, port)
    if by_name:
        return tuple(sorted(by_name.values()))
    out = []
    for raw in o.spec(service).get("ports") or []:
        port = Port.from_json(raw)
        if port is None:
            continue
        target = raw.get("targetPort")
        number = target if isinstance(target, int) and 0 < target < 65536 else port.port
        out.append(Port(name=port.name, protocol=port.protocol, port=number,
                        app_protocol=port.app_protocol))
    return tuple(out)


def _pod_hostname(pod: JSON) -> str | None:
    return dns_label_or_none(str(o.spec(pod).get("hostname") or "") or o.name(pod))


def _address_hostname(address: JSON) -> str | None:
    ref = address.get("targetRef") or {}
    name = address.get("hostname") or (ref.get("name") if ref.get("kind") == "Pod" else None)
    return dns_label_or_none(str(name) if name else None)


def _giip_failure(giip: JSON | None) -> str:
    for cond in o.status(giip or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("status") == "False" and cond.get("message"):
            return f"{GLOBAL_IP_PENDING_MESSAGE}: {cond['message']}"
    return GLOBAL_IP_PENDING_MESSAGE


def _cluster_ip_address(inputs: ExportInputs, service: JSON) -> tuple[str | None, str]:
    """(the address to publish, why there is none)."""
    if not inputs.globalnet:
        return o.cluster_ip(service), "Service has no ClusterIP yet"
    name = o.name(service)
    giip = next((g for g in inputs.ingress_ips if o.name(g) == name
                 and o.spec(g).get("target") == names.TARGET_CLUSTER_IP_SERVICE), None)
    ip = o.allocated_ip(giip) if giip is not None else None
    return ip, _giip_failure(giip)


def _headless_globalnet(inputs: ExportInputs) -> tuple[list[EndpointSpec], set[str]]:
    """(published endpoints, backend IPs they cover)."""
    hostnames = {str(a["ip"]): _address_hostname(a) for a in _endpoint_addresses(inputs.endpoints)}
    out: list[EndpointSpec] = []
    covered: set[str] = set()
    for giip in inputs.ingress_ips:
        ip = o.allocated_ip(giip)
        if not ip or o.is_deleting(giip):
            continue
        target = o.spec(giip).get("target")
        if target == names.TARGET_HEADLESS_POD:
            pod = inputs.pods.get(str((o.spec(giip).get("podRef") or {}).get("name", "")))
            if pod is None:
                continue  # the pod went away; Globalnet deletes its GlobalIngressIP next
            out.append(EndpointSpec(ip=ip, hostname=_pod_hostname(pod),
                                    ready=o.pod_is_ready(pod)))
            if (pod_ip := o.pod_ip(pod)) is not None:
                covered.add(pod_ip)
        elif target == names.TARGET_HEADLESS_ENDPOINTS:
            backend = o.annotations_of(giip).get(names.HEADLESS_ENDPOINT_IP_ANNOTATION, "")
            out.append(EndpointSpec(ip=ip, hostname=hostnames.get(backend), ready=True))
            covered.add(backend)
    return out, covered


def _headless_plain(inputs: ExportInputs) -> list[EndpointSpec]:
    ready = [EndpointSpec(ip=str(a["ip"]), hostname=_address_hostname(a), ready=True)
             for a in _endpoint_addresses(inputs.endpoints)]
    unready = [EndpointSpec(ip=str(a["ip"]), hostname=_address_hostname(a), ready=False)
               for a in _endpoint_addresses(inputs.endpoints, "notReadyAddresses")]
    return ready + unready


def _ip_families(service: JSON) -> tuple[str, ...]:
    """``spec.ipFamilies``, else the families of the ClusterIPs (older servers)."""
    spec = o.spec(service)
    families = [str(f) for f in spec.get("ipFamilies") or [] if f in ("IPv4", "IPv6")]
    if families:
        return tuple(dict.fromkeys(families))
    ips = [str(ip) for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip]
    out = []
    for ip in ips:
        try:
            out.append(f"IPv{ipaddress.ip_address(ip).version}")
        except ValueError:
            continue  # "None": headless
    return tuple(dict.fromkeys(out))


def _optional_str(value: object) -> str | None:
    return str(value) if isinstance(value, str) and value else None


def _exported(items: Pairs, *, reserved: frozenset[str], what: str, labels: bool
              ) -> tuple[Pairs, list[str]]:
    """The entries the API server will take, and a note for each one left out."""
    kept, notes = [], []
    for key, value in items:
        if key in reserved:
            notes.append(f"{what} {key} (reserved)")
        elif not validation.is_qualified_name(key):
            notes.append(f"{what} {key} (not a valid key)")
        elif labels and not validation.is_label_value(value):
            notes.append(f"{what} {key}={value} (not a valid label value)")
        else:
            kept.append((key, value))
    return tuple(kept), notes


def properties_of(service: JSON, export: JSON) -> tuple[Properties, list[str]]:
    """The export's MCS v1beta1 properties, and why exported entries were left out."""
    spec = o.spec(service)
    affinity = str(spec.get("sessionAffinity") or r.SESSION_AFFINITY_NONE)
    timeout = None
    if affinity == r.SESSION_AFFINITY_CLIENT_IP:
        raw = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get(
            "timeoutSeconds")
        timeout = raw if isinstance(raw, int) else None
    export_spec = o.spec(export)
    labels, label_notes = _exported(pairs(export_spec.get("exportedLabels")),
                                    reserved=names.RESERVED_IMPORT_LABELS, what="label",
                                    labels=True)
    annotations, annotation_notes = _exported(
        pairs(export_spec.get("exportedAnnotations")),
        reserved=names.RESERVED_IMPORT_ANNOTATIONS, what="annotation", labels=False)
    distribution, distribution_notes = _distribution(export)
    use_vip, use_vip_notes = _use_clusterset_ip(export)
    return Properties(
        session_affinity=affinity, session_affinity_timeout=timeout,
        ip_families=_ip_families(service),
        internal_traffic_policy=_optional_str(spec.get("internalTrafficPolicy")),
        traffic_distribution=_optional_str(spec.get("trafficDistribution")),
        labels=labels, annotations=annotations, distribution=distribution,
        use_clusterset_ip=use_vip,
    ), label_notes + annotation_notes + distribution_notes + use_vip_notes


def _distribution(export: JSON) -> tuple[str | None, list[str]]:
    """The export's traffic-distribution annotation, and a note when it is unknown."""
    value = o.annotations_of(export).get(names.TRAFFIC_DISTRIBUTION_ANNOTATION)
    if value is None or value in r.DISTRIBUTIONS:
        return value, []
    return None, [f"annotation {names.TRAFFIC_DISTRIBUTION_ANNOTATION}={value!r}: expected "
                  f"{' or '.join(r.DISTRIBUTIONS)}, {r.LOCAL_FIRST} used"]


def _use_clusterset_ip(export: JSON) -> tuple[bool | None, list[str]]:
    """The export's use-clusterset-ip annotation, and a note when it is no boolean."""
    value = o.annotations_of(export).get(names.USE_CLUSTERSET_IP_ANNOTATION)
    if value is None:
        return None, []
    if value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true", []
    return None, [f"annotation {names.USE_CLUSTERSET_IP_ANNOTATION}={value!r}: expected "
                  "true or false, ignored"]


_AWAITING = ConditionState(status=False, reason=r.PENDING,
                           message="The export is not valid; nothing is published")
_EXPORTED = ConditionState(status=True, reason=r.EXPORTED,
                           message="The service is published to the Broker")


def decide(inputs: ExportInputs) -> Decision:
    """What to publish for one export and which ``Valid``/``Ready`` conditions to show."""
    export, service = inputs.export, inputs.service
    if export is None or o.is_deleting(export):
        return Decision()
    if service is None or o.is_deleting(service):
        return Decision(valid=ConditionState(status=False, reason=r.NO_SERVICE,
                                             message="Service to be exported doesn't exist"),
                        ready=_AWAITING)
    kind = service_import_type(service)
    if kind is None:
        return Decision(valid=ConditionState(
            status=False, reason=r.INVALID_SERVICE_TYPE,
            message=f"Service of type {o.service_type(service)} not supported"), ready=_AWAITING)
    exported_at = str(o.meta(export).get("creationTimestamp") or "")
    ports = service_ports(service)
    props, refused = properties_of(service, export)
    note = f" (left out of the import: {', '.join(refused)})" if refused else ""
    valid = ConditionState(status=True, reason=r.REASON_VALID,
                           message=f"Service of type {kind} can be exported{note}")
    if kind == r.CLUSTER_SET_IP:
        ip, why = _cluster_ip_address(inputs, service)
        if ip is None:
            return Decision(valid=ConditionState(
                status=False, reason=r.SERVICE_GLOBAL_IP_UNAVAILABLE, message=why),
                ready=_AWAITING)
        count = ready_backends(inputs.endpoints)
        endpoint = EndpointSpec(ip=ip, ready=count > 0)
        return Decision(valid=valid, ready=_EXPORTED, publication=Publication(
            service_type=kind, ports=ports, ips=(ip,), endpoints=(endpoint,),
            slice_ports=ports, exported_at=exported_at, properties=props,
            ready_backends=count))
    ready = _EXPORTED
    if inputs.globalnet:
        endpoints, covered = _headless_globalnet(inputs)
        backends = {str(a["ip"]) for a in _endpoint_addresses(inputs.endpoints)}
        missing = backends - covered
        if missing:
            ready = ConditionState(
                status=False, reason=r.SERVICE_GLOBAL_IP_UNAVAILABLE,
                message=f"{len(missing)} of {len(backends)} ready backends have no global IP "
                        "yet; the others are published")
    else:
        endpoints = _headless_plain(inputs)
    return Decision(valid=valid, ready=ready, publication=Publication(
        service_type=kind, ports=ports, ips=(), endpoints=tuple(sorted(endpoints)),
        slice_ports=backend_ports(service, inputs.endpoints), exported_at=exported_at,
        properties=props))
