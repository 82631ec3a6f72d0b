"""Intent -> set and map elements (pure functions, no kernel).

Keys and values are written in the canonical text the read-back normalises the
kernel's answer to (`kernel.canonical_*`), so desired and installed elements
compare as strings:

* interval keys are CIDRs `a.b.c.d/len`;
* address-range data is always `first-last` (the kernel insists on a range for
  `interval` data, even of one address);
* concatenations are `ip . proto . port`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import netaddr

from datapath.nftables import names as n
from datapath.nftables.model import Element
from globalnet.intent import (
    EgressKind,
    IngressMapping,
    IngressTarget,
    NatIntent,
    assign_egress,
    longest_contiguous_run,
)

log = logging.getLogger(__name__)

Elements = dict[str, dict[str, Element]]  # set name -> key -> element


def cidr_key(cidr: str) -> str:
    return str(netaddr.IPNetwork(cidr).cidr)


def address_range(ips: Iterable[str], *, owner: str = "") -> str:
    """The `first-last` range SNAT uses for a group's global IPs.

    The whole group, or its longest contiguous run should it ever hold a gap
    (`globalnet.intent.longest_contiguous_run`; said in the log).
    """
    unique = set(ips)
    best = longest_contiguous_run(unique)
    if best[1] - best[0] + 1 != len(unique):
        log.warning("%s: global IPs are not contiguous; SNAT uses %s-%s only", owner,
                    netaddr.IPAddress(best[0]), netaddr.IPAddress(best[1]))
    return f"{netaddr.IPAddress(best[0])}-{netaddr.IPAddress(best[1])}"


def ingress_elements(m: IngressMapping) -> list[tuple[str, Element]]:
    """The forward and reverse elements of one 1:1 mapping (2 per port, or 2).

    A headless target (pod, selector-less endpoint) is rewritten on every port;
    its exported ports go to the admit sets instead (2 + 1 + 1 per port).
    """
    out: list[tuple[str, Element]] = []
    if not m.ports or m.target is not IngressTarget.CLUSTER_IP_SERVICE:
        out += [
            (n.INGRESS_IPS, Element(m.global_ip, m.target_ip, m.owner)),
            (n.REVERSE_IPS, Element(m.target_ip, m.global_ip, m.owner)),
        ]
        if m.ports:
            out.append((n.ADMIT_TARGETS, Element(m.target_ip, "", m.owner)))
            out += [(n.ADMIT_PORTS, Element(f"{m.target_ip} . {p.protocol.value} . {p.port}",
                                            "", m.owner)) for p in m.ports]
        return out
    for p in m.ports:
        proto = p.protocol.value
        out.append((n.INGRESS_PORTS, Element(f"{m.global_ip} . {proto} . {p.port}",
                                             m.target_ip, m.owner)))
        out.append((n.REVERSE_PORTS, Element(f"{m.target_ip} . {proto} . {p.port}",
                                             m.global_ip, m.owner)))
    return out


def egress_elements(intent: NatIntent) -> Elements:
    """`egress-pods`, `egress-headless` and `egress-cidrs`, precedence resolved.

    Precedence is `globalnet.intent.assign_egress`'s, the same for every backend.
    """
    pods: dict[str, Element] = {}
    headless: dict[str, Element] = {}
    cidrs: dict[str, Element] = {}
    assignment = assign_egress(intent)
    ranges: dict[str, str] = {}
    for ip, group in assignment.pods.items():
        if group.kind is EgressKind.HEADLESS_POD:
            headless[ip] = Element(ip, min(group.global_ips), group.owner)
            continue
        if group.owner not in ranges:
            ranges[group.owner] = address_range(group.global_ips, owner=group.owner)
        pods[ip] = Element(ip, ranges[group.owner], group.owner)
    cluster = assignment.cluster
    if cluster is not None:
        rng = address_range(cluster.global_ips, owner=cluster.owner)
        for cidr in netaddr.cidr_merge(intent.local_cidrs):
            key = str(cidr)
            cidrs[key] = Element(key, rng, cluster.owner)
    return {n.EGRESS_PODS: pods, n.EGRESS_HEADLESS: headless, n.EGRESS_CIDRS: cidrs}


def health_elements(intent: NatIntent) -> Elements:
    return {n.HEALTH_CHECK_IPS: {
        h.global_ip: Element(h.global_ip, "", h.owner) for h in reversed(intent.health_checks)
    }}


def cidr_elements(intent: NatIntent) -> Elements:
    own = cidr_key(intent.global_cidr)
    return {
        n.GLOBAL_CIDR: {own: Element(own, "", f"cluster {intent.cluster_id}")},
        n.REMOTE_GLOBAL_CIDRS: {
            str(c): Element(str(c), "", "remote cluster global CIDR")
            for c in netaddr.cidr_merge(intent.remote_global_cidrs)
        },
    }


INGRESS_SETS = (n.INGRESS_IPS, n.INGRESS_PORTS, n.REVERSE_IPS, n.REVERSE_PORTS,
                n.ADMIT_TARGETS, n.ADMIT_PORTS)
EGRESS_SETS = (n.EGRESS_PODS, n.EGRESS_HEADLESS, n.EGRESS_CIDRS)
HEALTH_SETS = (n.HEALTH_CHECK_IPS,)
CIDR_SETS = (n.GLOBAL_CIDR, n.REMOTE_GLOBAL_CIDRS)
