"""Read the cluster's global IP allocations back from the API, for `gnctl show`.

Status is the record of truth (it is what a new leader reserves again), so this
reads statuses only and needs no running controller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from globalnet.controllers import reasons as r
from kube import names, resources
from kube import objects as o
from kube.crud import ResourceClient


@dataclass(frozen=True)
class AllocationRow:
    kind: str
    namespace: str
    name: str
    target: str
    global_ips: tuple[str, ...]
    condition: str


def _condition(obj: o.JSON) -> str:
    for c in o.status(obj).get("conditions") or []:
        if c.get("type") == r.ALLOCATED:
            return f"{c.get('status')}/{c.get('reason')}"
    return "-"


def read_allocations(api: Any) -> list[AllocationRow]:
    rows: list[AllocationRow] = []
    for obj in ResourceClient(api, resources.CLUSTER_GLOBAL_EGRESS_IPS).list().items:
        rows.append(AllocationRow(r.KIND_CLUSTER_EGRESS, "", o.name(obj), "cluster egress",
                                  tuple(o.allocated_ips(obj)), _condition(obj)))
    for obj in ResourceClient(api, resources.GLOBAL_EGRESS_IPS).list().items:
        sel = o.spec(obj).get("podSelector")
        target = f"pods {o.selector_fingerprint(sel)}" if sel else "namespace"
        rows.append(AllocationRow(r.KIND_EGRESS, o.namespace(obj), o.name(obj), target,
                                  tuple(o.allocated_ips(obj)), _condition(obj)))
    for obj in ResourceClient(api, resources.GLOBAL_INGRESS_IPS).list().items:
        spec = o.spec(obj)
        ref = (spec.get("podRef") or spec.get("serviceRef") or {}).get("name", "")
        target = f"{spec.get('target', '?')} {ref}"
        ip = o.allocated_ip(obj)
        rows.append(AllocationRow(r.KIND_INGRESS, o.namespace(obj), o.name(obj), target,
                                  (ip,) if ip else (), _condition(obj)))
    for node in ResourceClient(api, resources.NODES).list(
            label_selector=names.GATEWAY_SELECTOR).items:
        ip = o.annotations_of(node).get(names.GATEWAY_GLOBAL_IP_ANNOTATION)
        rows.append(AllocationRow("Gateway", "", o.name(node), "health check",
                                  (ip,) if ip else (), "-"))
    return rows
