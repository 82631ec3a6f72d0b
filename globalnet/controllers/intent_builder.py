"""The NAT intent as a pure function of the cluster's API objects.

Only recorded allocations count: an object's global IPs come from its status,
so the intent never runs ahead of what the API (and so a future leader) knows.
The same inputs always give an equal intent, which is what lets a restarted
controller be checked against the one before it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import netaddr

from globalnet.controllers import reasons as r
from globalnet.controllers.base import by_age
from globalnet.intent import (
    EgressGroup,
    EgressKind,
    GlobalIP,
    HealthCheck,
    IngressMapping,
    IngressTarget,
    NatIntent,
    PortSpec,
    Protocol,
)
from kube import names
from kube import objects as o

JSON = o.JSON


@dataclass(frozen=True)
class IntentInputs:
    """A snapshot of everything the intent depends on."""

    cluster_id: str
    global_cidr: str
    local_cidrs: tuple[str, ...]
    pods: list[JSON]
    services: list[JSON]
    global_egress_ips: list[JSON]
    cluster_global_egress_ips: list[JSON]
    global_ingress_ips: list[JSON]
    gateway_nodes: list[JSON]
    clusters: list[JSON]
    # This agent's gateway node is passive (another holds the gateway Lease): the
    # intent is whole but toward no remote cluster, so nothing here is translated
    # and the node routes clusterset traffic to the active gateway like any other.
    passive: bool = False


def effective_pod_selector(geip: JSON) -> JSON | None:
    """The selector in force: the accepted one when a later edit was refused."""
    import json

    accepted = o.annotations_of(geip).get(names.ACCEPTED_POD_SELECTOR_ANNOTATION)
    if accepted is not None:
        try:
            value = json.loads(accepted)
            return value if isinstance(value, dict) and value else None
        except ValueError:
            pass
    sel = o.spec(geip).get("podSelector")
    return sel if isinstance(sel, dict) else None


def _protocol(name: str) -> Protocol | None:
    try:
        return Protocol(name)
    except ValueError:
        return None


@dataclass
class AddressClaims:
    """Global IPs already taken while one intent is built, in precedence order.

    Only sound records count: inside our CIDR and not claimed before. One bad
    record must never keep the whole intent from the datapath.
    """

    own: netaddr.IPNetwork
    claimed: set[str] = field(default_factory=set)

    def claim(self, ips: list[str]) -> bool:
        try:
            if any(netaddr.IPAddress(ip) not in self.own for ip in ips):
                return False
        except (netaddr.AddrFormatError, ValueError, TypeError):
            return False
        if self.claimed.intersection(ips):
            return False
        self.claimed.update(ips)
        return True


def cluster_egress_groups(cgeips: Iterable[JSON], *, claims: AddressClaims) -> list[EgressGroup]:
    """The cluster-wide group (CLUSTER kind) of the one ClusterGlobalEgressIP that counts."""
    groups: list[EgressGroup] = []
    for cgeip in cgeips:
        ips = o.allocated_ips(cgeip)
        if o.name(cgeip) == names.CLUSTER_EGRESS_NAME and ips and claims.claim(ips):
            groups.append(EgressGroup(
                kind=EgressKind.CLUSTER, owner=f"{r.KIND_CLUSTER_EGRESS} {o.name(cgeip)}",
                global_ips=tuple(GlobalIP(i) for i in ips),
            ))
    return groups


def global_egress_groups(geips: list[JSON], *, pods: Iterable[JSON],
                         claims: AddressClaims) -> list[EgressGroup]:
    """One group per GlobalEgressIP: POD_SELECTOR with a selector, else NAMESPACE.

    Members are the running pods of its namespace that the selector in force
    matches; older records win an address two of them claim.
    """
    pods_by_ns: dict[str, list[JSON]] = defaultdict(list)
    for pod in pods:
        pods_by_ns[o.namespace(pod)].append(pod)
    groups: list[EgressGroup] = []
    for geip in by_age(geips):
        ips = o.allocated_ips(geip)
        if not ips or not claims.claim(ips):
            continue
        selector = effective_pod_selector(geip)
        members = frozenset(
            ip for pod in pods_by_ns.get(o.namespace(geip), [])
            if o.pod_is_running(pod) and o.selector_matches(selector, o.labels(pod))
            and (ip := o.pod_ip(pod))
        )
        groups.append(EgressGroup(
            kind=EgressKind.POD_SELECTOR if selector else EgressKind.NAMESPACE,
            owner=f"{r.KIND_EGRESS} {o.key(geip)}",
            global_ips=tuple(GlobalIP(i) for i in ips),
            pod_ips=members,
        ))
    return groups


def headless_pod_groups(ingress: Iterable[IngressMapping]) -> list[EgressGroup]:
    """A headless backend pod talks to other clusters with its own ingress global IP."""
    return [
        EgressGroup(kind=EgressKind.HEADLESS_POD, owner=m.owner, global_ips=(m.global_ip,),
                    pod_ips=frozenset({m.target_ip}))
        for m in ingress if m.target is IngressTarget.HEADLESS_SERVICE_POD
    ]


def ingress_mappings(giips: list[JSON], *, services: Iterable[JSON], pods: Iterable[JSON],
                     claims: AddressClaims) -> list[IngressMapping]:
    """One mapping per GlobalIngressIP whose target exists, oldest record first.

    The address is claimed even when the target is missing, so a younger record
    cannot take it meanwhile.
    """
    services_by_key = {o.key(s): s for s in services}
    pods_by_key = {o.key(p): p for p in pods}
    mappings: list[IngressMapping] = []
    for giip in by_age(giips):
        gip = o.allocated_ip(giip)
        if not gip or not claims.claim([gip]):
            continue
        target = o.spec(giip).get("target")
        if target == names.TARGET_CLUSTER_IP_SERVICE:
            mapping = _cluster_ip_service_mapping(giip, GlobalIP(gip), services_by_key)
        elif target == names.TARGET_HEADLESS_POD:
            mapping = _headless_pod_mapping(giip, GlobalIP(gip), pods_by_key, services_by_key)
        elif target == names.TARGET_HEADLESS_ENDPOINTS:
            mapping = _headless_endpoints_mapping(giip, GlobalIP(gip), services_by_key)
        else:
            mapping = None
        if mapping is not None:
            mappings.append(mapping)
    return mappings


def _ingress_owner(giip: JSON) -> str:
    return f"{r.KIND_INGRESS} {o.key(giip)}"


def _cluster_ip_service_mapping(giip: JSON, gip: GlobalIP,
                                services: dict[str, JSON]) -> IngressMapping | None:
    """The service's ClusterIP, restricted to its ports."""
    ref = (o.spec(giip).get("serviceRef") or {}).get("name", "")
    svc = services.get(f"{o.namespace(giip)}/{ref}")
    cip = o.cluster_ip(svc) if svc else None
    if not cip or svc is None:
        return None
    ports = tuple(sorted(
        (PortSpec(proto, port) for name, port in o.service_ports(svc)
         if (proto := _protocol(name)) is not None),
        key=lambda p: (p.protocol.value, p.port),
    ))
    return IngressMapping(gip, cip, IngressTarget.CLUSTER_IP_SERVICE, _ingress_owner(giip), ports)


def _headless_ports(giip: JSON, services: dict[str, JSON]) -> tuple[PortSpec, ...]:
    """The ports a headless service's backends export: each service port's numeric
    targetPort (what a client of the pod IP connects to), else the port itself.
    Empty when the service is not known (then every port is admitted)."""
    ref = (o.spec(giip).get("serviceRef") or {}).get("name", "")
    svc = services.get(f"{o.namespace(giip)}/{ref}")
    out: set[PortSpec] = set()
    for p in (o.spec(svc).get("ports") or []) if svc else []:
        if not isinstance(p, dict) or not isinstance(p.get("port"), int):
            continue
        proto = _protocol(str(p.get("protocol") or "TCP").lower())
        target = p.get("targetPort")
        if proto is not None:
            out.add(PortSpec(proto, target if isinstance(target, int) else int(p["port"])))
    return tuple(sorted(out, key=lambda p: (p.protocol.value, p.port)))


def _headless_pod_mapping(giip: JSON, gip: GlobalIP, pods: dict[str, JSON],
                          services: dict[str, JSON]) -> IngressMapping | None:
    """The backend pod's IP: translated on every port (its egress is 1:1 through the
    same IP), new connections admitted on the service's ports only."""
    ref = (o.spec(giip).get("podRef") or {}).get("name", "")
    backend = pods.get(f"{o.namespace(giip)}/{ref}")
    pip = o.pod_ip(backend) if backend else None
    if not pip:
        return None
    return IngressMapping(gip, pip, IngressTarget.HEADLESS_SERVICE_POD, _ingress_owner(giip),
                          _headless_ports(giip, services))


def _headless_endpoints_mapping(giip: JSON, gip: GlobalIP,
                                services: dict[str, JSON]) -> IngressMapping | None:
    """The endpoint IP the controller recorded on the GlobalIngressIP, admitting
    new connections on the service's ports only."""
    eip = o.annotations_of(giip).get(names.HEADLESS_ENDPOINT_IP_ANNOTATION)
    if not eip:
        return None
    return IngressMapping(gip, eip, IngressTarget.HEADLESS_SERVICE_ENDPOINTS,
                          _ingress_owner(giip), _headless_ports(giip, services))


def health_checks(gateway_nodes: Iterable[JSON], *, claims: AddressClaims) -> list[HealthCheck]:
    """The health-check global IP each gateway node carries in its annotation."""
    return [
        HealthCheck(GlobalIP(ip), f"{r.KIND_GATEWAY} {o.name(node)}")
        for node in gateway_nodes
        if (ip := o.annotations_of(node).get(names.GATEWAY_GLOBAL_IP_ANNOTATION))
        and claims.claim([ip])
    ]


def build_intent(inputs: IntentInputs) -> NatIntent:
    """Derive the intent; a record claiming an address an older record holds is left
    out (the controllers reallocate it), so the intent stays valid meanwhile.

    Claims go in precedence order: the cluster egress IPs, GlobalEgressIPs,
    GlobalIngressIPs, then health checks.
    """
    claims = AddressClaims(netaddr.IPNetwork(inputs.global_cidr))
    cluster = cluster_egress_groups(inputs.cluster_global_egress_ips, claims=claims)
    selected = global_egress_groups(inputs.global_egress_ips, pods=inputs.pods, claims=claims)
    ingress = ingress_mappings(inputs.global_ingress_ips, services=inputs.services,
                               pods=inputs.pods, claims=claims)
    health = health_checks(inputs.gateway_nodes, claims=claims)
    return NatIntent.build(
        cluster_id=inputs.cluster_id,
        global_cidr=inputs.global_cidr,
        local_cidrs=inputs.local_cidrs,
        remote_global_cidrs=() if inputs.passive else sorted(o.remote_cidrs(
            inputs.cluster_id, inputs.clusters, global_only=True)),
        egress=[*cluster, *selected, *headless_pod_groups(ingress)],
        ingress=ingress,
        health_checks=health,
    )
