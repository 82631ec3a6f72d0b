"""Reading plain-dict API objects: the few facts the controllers need.

Informer caches hold raw JSON dicts; these helpers keep field paths and their
defaults in one place and never raise on a malformed object (they answer "no").
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from kube import names

JSON = dict[str, Any]


def meta(obj: JSON) -> JSON:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def name(obj: JSON) -> str:
    return str(meta(obj).get("name", ""))


def namespace(obj: JSON) -> str:
    return str(meta(obj).get("namespace", ""))


def key(obj: JSON) -> str:
    """The informer cache key ("ns/name" or "name"); unlike `store.object_key`, never
    raises on an object without a name."""
    ns = namespace(obj)
    return f"{ns}/{name(obj)}" if ns else name(obj)


def uid(obj: JSON) -> str | None:
    value = meta(obj).get("uid")
    return str(value) if value else None


def labels(obj: JSON) -> dict[str, str]:
    lab = meta(obj).get("labels")
    return lab if isinstance(lab, dict) else {}


def annotations_of(obj: JSON) -> dict[str, str]:
    ann = meta(obj).get("annotations")
    return ann if isinstance(ann, dict) else {}


def spec(obj: JSON) -> JSON:
    s = obj.get("spec")
    return s if isinstance(s, dict) else {}


def status(obj: JSON) -> JSON:
    s = obj.get("status")
    return s if isinstance(s, dict) else {}


def is_deleting(obj: JSON) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


# --- services -----------------------------------------------------------------------
def service_type(svc: JSON) -> str:
    return str(spec(svc).get("type") or "ClusterIP")


def is_headless(svc: JSON) -> bool:
    return service_type(svc) == "ClusterIP" and spec(svc).get("clusterIP") == "None"


def cluster_ip(svc: JSON) -> str | None:
    ip = spec(svc).get("clusterIP")
    return str(ip) if ip and ip != "None" else None


def service_selector(svc: JSON) -> dict[str, str]:
    sel = spec(svc).get("selector")
    return sel if isinstance(sel, dict) else {}


def service_ports(svc: JSON) -> list[tuple[str, int]]:
    """(protocol lower-case, port) pairs."""
    out = []
    for p in spec(svc).get("ports") or []:
        if isinstance(p, dict) and isinstance(p.get("port"), int):
            out.append((str(p.get("protocol") or "TCP").lower(), int(p["port"])))
    return out


# --- pods ---------------------------------------------------------------------------
def internal_ip(node: JSON) -> str | None:
    """A Node's InternalIP address, if it reports one."""
    for address in (node.get("status") or {}).get("addresses") or []:
        if isinstance(address, dict) and address.get("type") == "InternalIP":
            return str(address.get("address") or "") or None
    return None


def pod_ip(pod: JSON) -> str | None:
    ip = status(pod).get("podIP")
    return str(ip) if ip else None


def pod_is_ready(pod: JSON) -> bool:
    if is_deleting(pod) or status(pod).get("phase") not in ("Running", None):
        return False
    for cond in status(pod).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def pod_is_running(pod: JSON) -> bool:
    return not is_deleting(pod) and status(pod).get("phase") == "Running" and bool(pod_ip(pod))


# --- label selectors ------------------------------------------------------------------
def selector_matches(selector: JSON | None, pod_labels: dict[str, str]) -> bool:
    """metav1.LabelSelector semantics; an empty selector matches everything."""
    if not selector:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if pod_labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        k, op = expr.get("key"), expr.get("operator")
        values = set(expr.get("values") or [])
        if op == "In" and pod_labels.get(k) not in values:
            return False
        if op == "NotIn" and k in pod_labels and pod_labels[k] in values:
            return False
        if op == "Exists" and k not in pod_labels:
            return False
        if op == "DoesNotExist" and k in pod_labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def selector_fingerprint(selector: JSON | None) -> str:
    """Canonical text of a selector, for change detection."""
    return json.dumps(selector or {}, sort_keys=True, separators=(",", ":"))


def allocated_ips(obj: JSON) -> list[str]:
    ips = status(obj).get("allocatedIPs")
    return [str(i) for i in ips] if isinstance(ips, list) else []


def allocated_ip(obj: JSON) -> str | None:
    ip = status(obj).get("allocatedIP")
    return str(ip) if ip else None


def condition_reason(obj: JSON, ctype: str) -> str | None:
    for c in status(obj).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == ctype:
            return str(c.get("reason"))
    return None


# --- GlobalIngressIPs -------------------------------------------------------------------
def ingress_service_keys(giip: JSON) -> list[str]:
    """The key ("<namespace>/<service>") of the Service a GlobalIngressIP was made for,
    from its serviceRef label; none for a GlobalIngressIP made by hand."""
    ref = labels(giip).get(names.SERVICE_REF_LABEL)
    return [f"{namespace(giip)}/{ref}"] if ref else []


# --- Cluster objects ----------------------------------------------------------------------
def remote_cidrs(cluster_id: str, clusters: Iterable[JSON], *,
                 global_only: bool = False) -> set[str]:
    """The CIDRs other members of the clusterset are reached at, from their Cluster
    objects: each one's global CIDRs; for a member without any (no Globalnet), its pod
    and service CIDRs, unless ``global_only`` (Globalnet's NAT knows global CIDRs only).
    """
    out: set[str] = set()
    for cluster in clusters:
        cluster_spec = spec(cluster)
        if str(cluster_spec.get("cluster_id") or name(cluster)) == cluster_id:
            continue
        cidrs = cluster_spec.get("global_cidr") or []
        if not cidrs and not global_only:
            cidrs = [*(cluster_spec.get("cluster_cidr") or []),
                     *(cluster_spec.get("service_cidr") or [])]
        out.update(str(cidr) for cidr in cidrs)
    return out
