"""`show globalnet`: how much of the cluster's global CIDR is handed out, and to what.

The pool is the cluster's global CIDR (what its Globalnet agent was deployed with,
else its Cluster object's); egress (the ClusterGlobalEgressIP and the
GlobalEgressIPs), ingress (GlobalIngressIPs) and the gateway nodes' health-check IPs
share it. Usage is counted from the objects' status, which is Globalnet's record of
truth (globalnet/inspect.py), so it needs no running controller. What the counts
cannot show is listed: objects whose Allocated condition is False or not written
yet, addresses recorded by two objects, and addresses outside every pool.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import netaddr

from globalnet.controllers import reasons as r
from globalnet.ipam import GlobalIPPool, PoolError
from kube import conditions, names
from kube import objects as o

JSON = dict[str, Any]
EGRESS, INGRESS, GATEWAY = "egress", "ingress", "gateway"


@dataclass(frozen=True)
class Pool:
    cidr: str
    size: int  # usable addresses: the network and broadcast ones are never handed out
    allocated: int  # distinct addresses recorded in it
    available: int
    egress: int
    ingress: int
    gateway: int  # gateway nodes' health-check IPs


@dataclass(frozen=True)
class Unallocated:
    """An object Globalnet has not given its addresses (yet)."""

    kind: str
    namespace: str
    name: str
    requested: int
    status: str  # the Allocated condition's status: False, or "" when not written yet
    reason: str
    message: str


@dataclass(frozen=True)
class GlobalnetView:
    cluster_id: str | None
    enabled: bool  # the cluster has a global CIDR
    pools: tuple[Pool, ...]
    egress_objects: int
    ingress_objects: int
    unallocated: tuple[Unallocated, ...]
    duplicates: tuple[str, ...]  # addresses two objects record
    outside: tuple[str, ...]  # recorded addresses in no pool


@dataclass(frozen=True)
class _Holder:
    """One object that holds (or asks for) global IPs."""

    use: str  # EGRESS / INGRESS / GATEWAY
    kind: str
    namespace: str
    name: str
    ips: tuple[str, ...]
    requested: int
    condition: JSON | None  # its Allocated condition; None for a gateway node


def _count(spec: JSON, field: str, default: int) -> int:
    value = spec.get(field)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _holders(*, cluster_egress: list[JSON], egress: list[JSON], ingress: list[JSON],
             gateway_nodes: list[JSON]) -> list[_Holder]:
    def allocated(obj: JSON) -> JSON | None:
        return conditions.get_condition(o.status(obj).get("conditions"), r.ALLOCATED)

    found = [_Holder(EGRESS, r.KIND_CLUSTER_EGRESS, "", o.name(c), tuple(o.allocated_ips(c)),
                     _count(o.spec(c), "numGlobalIPs", r.DEFAULT_CLUSTER_EGRESS_IPS),
                     allocated(c)) for c in cluster_egress]
    found += [_Holder(EGRESS, r.KIND_EGRESS, o.namespace(e), o.name(e),
                      tuple(o.allocated_ips(e)),
                      _count(o.spec(e), "numberOfIPs", r.DEFAULT_EGRESS_IPS), allocated(e))
              for e in egress]
    found += [_Holder(INGRESS, r.KIND_INGRESS, o.namespace(i), o.name(i),
                      tuple(ip for ip in [o.allocated_ip(i)] if ip), 1, allocated(i))
              for i in ingress]
    for node in gateway_nodes:
        ip = o.annotations_of(node).get(names.GATEWAY_GLOBAL_IP_ANNOTATION)
        if ip:
            found.append(_Holder(GATEWAY, r.KIND_GATEWAY, "", o.name(node), (ip,), 1, None))
    return found


def _unallocated(holder: _Holder) -> Unallocated | None:
    if holder.use == GATEWAY or holder.requested == 0:
        return None  # numberOfIPs 0 asks for nothing (ZeroInput)
    condition = holder.condition or {}
    status = str(condition.get("status") or "")
    if status == conditions.TRUE:
        return None
    return Unallocated(holder.kind, holder.namespace, holder.name, holder.requested, status,
                       str(condition.get("reason") or ""), str(condition.get("message") or ""))


def _pool(cidr: str, holders: list[_Holder]) -> tuple[Pool, set[str]]:
    """The pool of `cidr` and the addresses of `holders` it contains."""
    try:
        pool = GlobalIPPool(cidr)
    except PoolError:
        return Pool(cidr, 0, 0, 0, 0, 0, 0), set()
    inside: dict[str, set[str]] = {EGRESS: set(), INGRESS: set(), GATEWAY: set()}
    for holder in holders:
        inside[holder.use].update(ip for ip in holder.ips if pool.contains(ip))
    every = inside[EGRESS] | inside[INGRESS] | inside[GATEWAY]
    return Pool(pool.cidr, pool.size, len(every), pool.size - len(every), len(inside[EGRESS]),
                len(inside[INGRESS]), len(inside[GATEWAY])), every


def globalnet_view(*, cluster_id: str | None, global_cidrs: tuple[str, ...],
                   cluster_egress: list[JSON], egress: list[JSON], ingress: list[JSON],
                   gateway_nodes: list[JSON]) -> GlobalnetView:
    holders = _holders(cluster_egress=cluster_egress, egress=egress, ingress=ingress,
                       gateway_nodes=gateway_nodes)
    pools, counted = [], set()
    for cidr in global_cidrs:
        pool, inside = _pool(cidr, holders)
        pools.append(pool)
        counted |= inside
    recorded = Counter(ip for h in holders for ip in set(h.ips))
    unallocated = [u for h in holders if (u := _unallocated(h)) is not None]
    return GlobalnetView(
        cluster_id=cluster_id, enabled=bool(global_cidrs), pools=tuple(pools),
        egress_objects=sum(1 for h in holders if h.use == EGRESS),
        ingress_objects=sum(1 for h in holders if h.use == INGRESS),
        unallocated=tuple(sorted(unallocated, key=lambda u: (u.kind, u.namespace, u.name))),
        duplicates=_sorted_ips(ip for ip, n in recorded.items() if n > 1),
        outside=_sorted_ips(ip for ip in recorded if ip not in counted))


def _sorted_ips(ips: Iterable[str]) -> tuple[str, ...]:
    def key(ip: str) -> tuple[int, int | str]:
        try:
            return (0, int(netaddr.IPAddress(ip)))
        except (netaddr.AddrFormatError, ValueError, TypeError):
            return (1, ip)

    return tuple(sorted(ips, key=key))
