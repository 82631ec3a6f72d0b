"""The NAT intent as a pure function of the cluster's API objects.

Only recorded allocations count: an object's global IPs come from its status,
so the intent never runs ahead of what the API (and so a future leader) knows.
The same inputs always give an equal intent, which is what lets a restarted
controller be checked against the one before it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

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


def remote_global_cidrs(cluster_id: str, clusters: Iterable[JSON]) -> list[str]:
    out: list[str] = []
    for c in clusters:
        spec = o.spec(c)
        if spec.get("cluster_id", o.name(c)) == cluster_id:
            continue
        out.extend(str(x) for x in spec.get("global_cidr") or [])
    return sorted(set(out))


def effective_pod_selector(geip: JSON) -> JSON | None:
    """The selector in force: the accepted one when a later edit was refused."""
    import json

    accepted = o.annotations_of(geip).get(r.ACCEPTED_POD_SELECTOR_ANNOTATION)
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


def build_intent(inputs: IntentInputs) -> NatIntent:
    """Derive the intent; a record claiming an address an older record holds is left
    out (the controllers reallocate it), so the intent stays valid meanwhile."""
    claimed: set[str] = set()
    own = netaddr.IPNetwork(inputs.global_cidr)

    def claim(ips: list[str]) -> bool:
        """Only sound records count: inside our CIDR and not claimed before. One bad
        record must never keep the whole intent from the datapath."""
        try:
            if any(netaddr.IPAddress(ip) not in own for ip in ips):
                return False
        except (netaddr.AddrFormatError, ValueError, TypeError):
            return False
        if claimed.intersection(ips):
            return False
        claimed.update(ips)
        return True

    pods_by_ns: dict[str, list[JSON]] = defaultdict(list)
    pods_by_key: dict[str, JSON] = {}
    for pod in inputs.pods:
        pods_by_ns[o.namespace(pod)].append(pod)
        pods_by_key[o.key(pod)] = pod
    services = {o.key(s): s for s in inputs.services}

    egress: list[EgressGroup] = []
    for cgeip in inputs.cluster_global_egress_ips:
        ips = o.allocated_ips(cgeip)
        if o.name(cgeip) == r.CLUSTER_EGRESS_NAME and ips and claim(ips):
            egress.append(EgressGroup(
                kind=EgressKind.CLUSTER, owner=f"{r.KIND_CLUSTER_EGRESS} {o.name(cgeip)}",
                global_ips=tuple(GlobalIP(i) for i in ips),
            ))
    for geip in by_age(inputs.global_egress_ips):
        ips = o.allocated_ips(geip)
        if not ips or not claim(ips):
            continue
        selector = effective_pod_selector(geip)
        members = frozenset(
            ip for pod in pods_by_ns.get(o.namespace(geip), [])
            if o.pod_is_running(pod) and o.selector_matches(selector, o.labels(pod))
            and (ip := o.pod_ip(pod))
        )
        egress.append(EgressGroup(
            kind=EgressKind.POD_SELECTOR if selector else EgressKind.NAMESPACE,
            owner=f"{r.KIND_EGRESS} {o.key(geip)}",
            global_ips=tuple(GlobalIP(i) for i in ips),
            pod_ips=members,
        ))

    ingress: list[IngressMapping] = []
    for giip in by_age(inputs.global_ingress_ips):
        gip = o.allocated_ip(giip)
        if not gip or not claim([gip]):
            continue
        spec = o.spec(giip)
        target = spec.get("target")
        ns = o.namespace(giip)
        owner = f"{r.KIND_INGRESS} {o.key(giip)}"
        if target == r.TARGET_CLUSTER_IP_SERVICE:
            svc = services.get(f"{ns}/{(spec.get('serviceRef') or {}).get('name', '')}")
            cip = o.cluster_ip(svc) if svc else None
            if not cip or svc is None:
                continue
            ports = tuple(sorted(
                (PortSpec(proto, port) for name, port in o.service_ports(svc)
                 if (proto := _protocol(name)) is not None),
                key=lambda p: (p.protocol.value, p.port),
            ))
            ingress.append(IngressMapping(GlobalIP(gip), cip, IngressTarget.CLUSTER_IP_SERVICE,
                                          owner, ports))
        elif target == r.TARGET_HEADLESS_POD:
            backend = pods_by_key.get(f"{ns}/{(spec.get('podRef') or {}).get('name', '')}")
            pip = o.pod_ip(backend) if backend else None
            if not pip:
                continue
            ingress.append(IngressMapping(GlobalIP(gip), pip, IngressTarget.HEADLESS_SERVICE_POD,
                                          owner))
            # A headless backend talks to other clusters with its own global IP.
            egress.append(EgressGroup(kind=EgressKind.HEADLESS_POD, owner=owner,
                                      global_ips=(GlobalIP(gip),), pod_ips=frozenset({pip})))
        elif target == r.TARGET_HEADLESS_ENDPOINTS:
            eip = o.annotations_of(giip).get(r.HEADLESS_ENDPOINT_IP_ANNOTATION)
            if eip:
                ingress.append(IngressMapping(GlobalIP(gip), eip,
                                              IngressTarget.HEADLESS_SERVICE_ENDPOINTS, owner))

    health = [
        HealthCheck(GlobalIP(ip), f"{r.KIND_GATEWAY} {o.name(node)}")
        for node in inputs.gateway_nodes
        if (ip := o.annotations_of(node).get(r.GATEWAY_GLOBAL_IP_ANNOTATION)) and claim([ip])
    ]
    return NatIntent.build(
        cluster_id=inputs.cluster_id,
        global_cidr=inputs.global_cidr,
        local_cidrs=inputs.local_cidrs,
        remote_global_cidrs=remote_global_cidrs(inputs.cluster_id, inputs.clusters),
        egress=egress,
        ingress=ingress,
        health_checks=health,
    )
