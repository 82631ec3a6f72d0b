"""`diagnose globalnet`: CIDRs that would collide, and global IPs not handed out.

* Without Globalnet, clusters route to each other's pod and service CIDRs, so those
  must not overlap: an overlap where either side has no global CIDR is a FAIL.
* Global CIDRs are the clusterset's address plan: two members' overlapping on the
  Broker (their Cluster objects, else the local copies) is a FAIL.
* The cluster's pool (`ops.pools`): no free address left, an object whose Allocated
  condition is False (with its reason), an address recorded by two objects.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import netaddr

from kube import objects as o
from ops import inventory
from ops.broker import BrokerMember
from ops.diagnose.model import Check, failed, passed, warned
from ops.diagnose.target import Target

GROUP = "globalnet"


@dataclass(frozen=True)
class Member:
    cluster_id: str
    pod_cidrs: tuple[str, ...]
    service_cidrs: tuple[str, ...]
    global_cidrs: tuple[str, ...]


def members_of_broker(members: Sequence[BrokerMember]) -> list[Member]:
    return [Member(m.cluster_id, m.pod_cidrs, m.service_cidrs, m.global_cidrs)
            for m in members]


def members_of_cluster(t: Target) -> list[Member]:
    """The Broker syncer's copies of the Cluster objects in the member cluster."""
    out = []
    for c in t.state.clusters():
        spec = o.spec(c)
        out.append(Member(str(spec.get("cluster_id") or o.name(c)),
                          tuple(spec.get("cluster_cidr") or ()),
                          tuple(spec.get("service_cidr") or ()),
                          tuple(spec.get("global_cidr") or ())))
    return out


def _overlaps(a: Sequence[str], b: Sequence[str]) -> list[str]:
    found = []
    for x, y in itertools.product(a, b):
        try:
            nx, ny = netaddr.IPNetwork(x), netaddr.IPNetwork(y)
        except (netaddr.AddrFormatError, ValueError, TypeError):
            continue
        if nx.version == ny.version and (nx.first <= ny.last and ny.first <= nx.last):
            found.append(f"{x} ~ {y}")
    return found


def overlap_checks(members: Sequence[Member], *, source: str, cluster: str = "") -> list[Check]:
    out: list[Check] = []
    local_clash, global_clash = [], []
    for a, b in itertools.combinations(sorted(members, key=lambda m: m.cluster_id), 2):
        if not (a.global_cidrs and b.global_cidrs):
            hit = _overlaps(a.pod_cidrs + a.service_cidrs, b.pod_cidrs + b.service_cidrs)
            if hit:
                off = " and ".join(m.cluster_id for m in (a, b) if not m.global_cidrs)
                local_clash.append(f"{a.cluster_id}/{b.cluster_id}: {', '.join(hit)} "
                                   f"(no Globalnet on {off})")
        hit = _overlaps(a.global_cidrs, b.global_cidrs)
        if hit:
            global_clash.append(f"{a.cluster_id}/{b.cluster_id}: {', '.join(hit)}")
    if local_clash:
        out.append(failed(GROUP, "overlapping CIDRs without Globalnet", "; ".join(local_clash),
                          "join those clusters with Globalnet (a global CIDR), or give them "
                          "distinct pod and service CIDRs", cluster=cluster))
    else:
        out.append(passed(GROUP, "overlapping CIDRs without Globalnet",
                          f"none among {len(members)} members ({source})", cluster=cluster))
    if global_clash:
        out.append(failed(GROUP, "global CIDRs overlap", "; ".join(global_clash),
                          "one of them must leave (`gnctl leave`) and join again for a free "
                          "global CIDR", cluster=cluster))
    else:
        out.append(passed(GROUP, "global CIDRs overlap", f"none ({source})", cluster=cluster))
    return out


def pool_checks(t: Target) -> list[Check]:
    view = inventory.globalnet_of(t.state)
    if not view.enabled:
        return [warned(GROUP, "global IP pool", "Globalnet is not enabled in this cluster "
                       "(no global CIDR)", cluster=t.name)]
    out: list[Check] = []
    for p in view.pools:
        if p.size == 0:
            out.append(failed(GROUP, f"pool {p.cidr}", "not a usable CIDR",
                              "check the agent's --global-cidr", cluster=t.name))
        elif p.available == 0:
            out.append(failed(GROUP, f"pool {p.cidr}", f"exhausted: all {p.size} addresses "
                              f"handed out ({p.egress} egress, {p.ingress} ingress, "
                              f"{p.gateway} gateway)", "free some (fewer numberOfIPs / "
                              "numGlobalIPs, unexport services) or rejoin with a bigger "
                              "--global-cidr", cluster=t.name))
        else:
            out.append(passed(GROUP, f"pool {p.cidr}", f"{p.available} of {p.size} addresses "
                              "free", cluster=t.name))
    for u in view.unallocated:
        what = f"{u.kind} {u.namespace + '/' if u.namespace else ''}{u.name}"
        if u.status == "False":
            out.append(failed(GROUP, what, f"Allocated=False {u.reason}: {u.message}",
                              "fix the object (or free addresses); Globalnet retries on "
                              "every change", cluster=t.name))
        else:
            out.append(warned(GROUP, what, "no Allocated condition yet",
                              "is the Globalnet agent running? (its leader allocates)",
                              cluster=t.name))
    if not view.unallocated:
        out.append(passed(GROUP, "allocations", f"all {view.egress_objects} egress and "
                          f"{view.ingress_objects} ingress objects allocated", cluster=t.name))
    if view.duplicates:
        out.append(failed(GROUP, "duplicate global IPs", f"recorded by two objects: "
                          f"{', '.join(view.duplicates)}", "delete one of the objects; "
                          "Globalnet allocates it anew", cluster=t.name))
    return out
