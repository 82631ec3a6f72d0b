"""NAT intent: the desired translation state of one cluster's gateway.

This is the contract between the controllers (which compute it from API state
with pure functions) and the datapath backends (which realise it in the kernel).
It is plain, frozen, typed data: equal API states give equal intents, so a
restarted controller can be checked to re-derive exactly the same one. It
imports nothing from the project, so both sides can depend on it. The rules of
a sound intent live here (`NatIntent.validate`, and `intent_validator` for the
same rules checked per change), and so does the one difference function
(`sequence_delta`); the protocol backends implement is beside it, in
`datapath_api`.

Canonical form: every collection is a sorted tuple or a frozenset, so equality
and hashing do not depend on the order informers delivered objects in.
"""

from __future__ import annotations

import enum
import operator
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import NewType, TypeVar

import netaddr

GlobalIP = NewType("GlobalIP", str)
ClusterID = NewType("ClusterID", str)


class EgressKind(enum.IntEnum):
    """Egress groups in precedence order: the first group holding a pod IP wins.

    Mirrors upstream: a pod-selector GlobalEgressIP beats the pod's own global IP
    as a headless-service backend, which beats a namespace-wide GlobalEgressIP,
    which beats the cluster's ClusterGlobalEgressIP.
    """

    POD_SELECTOR = 1
    HEADLESS_POD = 2
    NAMESPACE = 3
    CLUSTER = 4


class IngressTarget(enum.Enum):
    """What a 1:1 ingress global IP stands for (GlobalIngressIP spec.target)."""

    CLUSTER_IP_SERVICE = "ClusterIPService"
    HEADLESS_SERVICE_POD = "HeadlessServicePod"
    HEADLESS_SERVICE_ENDPOINTS = "HeadlessServiceEndpoints"


class Protocol(enum.Enum):
    TCP = "tcp"
    UDP = "udp"
    SCTP = "sctp"


@dataclass(frozen=True)
class PortSpec:
    protocol: Protocol
    port: int


@dataclass(frozen=True)
class EgressGroup:
    """Pods whose cross-cluster traffic leaves with an address from `global_ips`.

    `owner` names the API object ("GlobalEgressIP ns/name") and becomes the
    comment on the datapath elements. For the CLUSTER kind `pod_ips` is empty:
    it applies to every source in the cluster's local CIDRs.
    """

    kind: EgressKind
    owner: str
    global_ips: tuple[GlobalIP, ...]
    pod_ips: frozenset[str] = frozenset()


@dataclass(frozen=True)
class IngressMapping:
    """A 1:1 global IP <-> local target (ClusterIP or pod IP).

    `ports` are the exported ports: new connections from other clusters reach
    the target on these only; empty means all. A ClusterIP service is
    translated on these ports only. A headless target (pod, selector-less
    endpoint) is translated on every port, because its own connections leave
    1:1 through the same global IP and their replies must come back, and the
    backends admit new connections to it on `ports` only. Translation is
    stateless (before conntrack), so kube-proxy sees an ordinary ClusterIP
    packet and no extra Service is needed.
    """

    global_ip: GlobalIP
    target_ip: str
    target: IngressTarget
    owner: str
    ports: tuple[PortSpec, ...] = ()


@dataclass(frozen=True)
class HealthCheck:
    """The global IP a remote gateway pings to check this cluster's gateway."""

    global_ip: GlobalIP
    owner: str


@dataclass(frozen=True)
class NatIntent:
    """Everything one cluster's gateway datapath must do."""

    cluster_id: ClusterID
    global_cidr: str
    local_cidrs: tuple[str, ...]
    remote_global_cidrs: tuple[str, ...] = ()
    egress: tuple[EgressGroup, ...] = ()
    ingress: tuple[IngressMapping, ...] = ()
    health_checks: tuple[HealthCheck, ...] = ()

    @classmethod
    def build(
        cls,
        *,
        cluster_id: str,
        global_cidr: str,
        local_cidrs: list[str] | tuple[str, ...],
        remote_global_cidrs: list[str] | tuple[str, ...] = (),
        egress: list[EgressGroup] | tuple[EgressGroup, ...] = (),
        ingress: list[IngressMapping] | tuple[IngressMapping, ...] = (),
        health_checks: list[HealthCheck] | tuple[HealthCheck, ...] = (),
    ) -> NatIntent:
        """Construct in canonical (sorted) form."""
        return cls(
            cluster_id=ClusterID(cluster_id),
            global_cidr=str(netaddr.IPNetwork(global_cidr).cidr),
            local_cidrs=tuple(sorted(str(netaddr.IPNetwork(c).cidr) for c in local_cidrs)),
            remote_global_cidrs=tuple(
                sorted(str(netaddr.IPNetwork(c).cidr) for c in remote_global_cidrs)
            ),
            egress=tuple(sorted(egress, key=lambda g: (g.kind, g.owner))),
            ingress=tuple(sorted(ingress, key=lambda m: (m.global_ip, m.owner))),
            health_checks=tuple(sorted(health_checks, key=lambda h: (h.global_ip, h.owner))),
        )

    def validate(self) -> list[str]:
        """Every reason this intent must not reach the kernel (empty when sound)."""
        errors: list[str] = []
        try:
            own = netaddr.IPNetwork(self.global_cidr)
        except (netaddr.AddrFormatError, ValueError):
            return [f"invalid global CIDR {self.global_cidr!r}"]
        holders: dict[str, str] = {}

        def claim(ip: str, owner: str) -> None:
            try:
                addr = netaddr.IPAddress(ip)
            except (netaddr.AddrFormatError, ValueError):
                errors.append(f"{owner}: invalid global IP {ip!r}")
                return
            if addr not in own:
                errors.append(f"{owner}: global IP {ip} is outside {self.global_cidr}")
            if ip in holders and holders[ip] != owner:
                errors.append(f"global IP {ip} is held by both {holders[ip]} and {owner}")
            holders[ip] = owner

        for group in self.egress:
            if not group.global_ips:
                errors.append(f"{group.owner}: egress group without global IPs")
            for ip in group.global_ips:
                claim(ip, group.owner)
        targets: dict[str, str] = {}
        for m in self.ingress:
            claim(m.global_ip, m.owner)
            if m.target_ip in targets and targets[m.target_ip] != m.global_ip:
                errors.append(
                    f"{m.owner}: target {m.target_ip} is also mapped from "
                    f"{targets[m.target_ip]} (conflicting targets)"
                )
            targets[m.target_ip] = m.global_ip
        for hc in self.health_checks:
            claim(hc.global_ip, hc.owner)
        for remote in self.remote_global_cidrs:
            net = netaddr.IPNetwork(remote)
            if net.first <= own.last and own.first <= net.last:
                errors.append(f"remote global CIDR {remote} overlaps ours {self.global_cidr}")
        return errors


def egress_for(intent: NatIntent, pod_ip: str) -> EgressGroup | None:
    """The group a pod's cross-cluster traffic uses (reference semantics for backends)."""
    in_cluster = any(netaddr.IPAddress(pod_ip) in netaddr.IPNetwork(c) for c in intent.local_cidrs)
    for group in intent.egress:  # sorted: precedence order
        if group.kind is EgressKind.CLUSTER:
            if in_cluster:
                return group
        elif pod_ip in group.pod_ips:
            return group
    return None


def longest_contiguous_run(ips: Iterable[str]) -> tuple[int, int]:
    """(first, last), as integers, of the longest run of consecutive addresses in
    `ips` (non-empty). IPAM hands out contiguous blocks, so normally all of them;
    should a group ever hold a gap, a backend translates to this run rather than
    to addresses nobody owns."""
    values = sorted({int(netaddr.IPAddress(ip)) for ip in ips})
    best = (values[0], values[0])
    start = prev = values[0]
    for v in values[1:]:
        if v != prev + 1:
            start = v
        prev = v
        if prev - start > best[1] - best[0]:
            best = (start, prev)
    return best


@dataclass(frozen=True)
class EgressAssignment:
    """Egress precedence resolved once, for every backend alike.

    `pods` gives each pod IP named by a group the group that wins it (groups in
    precedence order, pod IPs sorted within a group); `cluster` is the fallback
    for every other source in the local CIDRs. Groups without global IPs take
    no part, as in `egress_for`.
    """

    pods: dict[str, EgressGroup]
    cluster: EgressGroup | None


def assign_egress(intent: NatIntent) -> EgressAssignment:
    """`egress_for` for every pod at once: the first group naming a pod IP wins."""
    pods: dict[str, EgressGroup] = {}
    cluster: EgressGroup | None = None
    for group in intent.egress:  # sorted: precedence order
        if not group.global_ips:
            continue
        if group.kind is EgressKind.CLUSTER:
            cluster = cluster or group
            continue
        for ip in sorted(group.pod_ips):
            pods.setdefault(ip, group)
    return EgressAssignment(pods=pods, cluster=cluster)


@dataclass(frozen=True)
class IntentDiff:
    """What changed between two intents, per kind of object (pure data)."""

    ingress_added: tuple[IngressMapping, ...] = ()
    ingress_removed: tuple[IngressMapping, ...] = ()
    egress_added: tuple[EgressGroup, ...] = ()
    egress_removed: tuple[EgressGroup, ...] = ()
    health_added: tuple[HealthCheck, ...] = ()
    health_removed: tuple[HealthCheck, ...] = ()
    # CIDRs changed: backends rebuild the sets that depend on them.
    cidrs_changed: bool = False

    @property
    def empty(self) -> bool:
        return not (
            self.ingress_added or self.ingress_removed or self.egress_added
            or self.egress_removed or self.health_added or self.health_removed
            or self.cidrs_changed
        )

    @property
    def size(self) -> int:
        return (
            len(self.ingress_added) + len(self.ingress_removed) + len(self.egress_added)
            + len(self.egress_removed) + len(self.health_added) + len(self.health_removed)
            + int(self.cidrs_changed)
        )


IngressDelta = tuple[Sequence[IngressMapping], Sequence[IngressMapping]]
"""(added, removed) ingress mappings, as `sequence_delta` returns them."""


def diff_intents(old: NatIntent | None, new: NatIntent, *,
                 ingress_delta: IngressDelta | None = None) -> IntentDiff:
    """Element-level difference; a changed element shows as removed + added.

    A backend that already computed the ingress delta passes it in, so the
    largest collection is not compared twice.
    """
    if old is None:
        return IntentDiff(
            ingress_added=new.ingress, egress_added=new.egress,
            health_added=new.health_checks, cidrs_changed=True,
        )
    ia, ir = ingress_delta if ingress_delta is not None else sequence_delta(old.ingress,
                                                                            new.ingress)
    ea, er = sequence_delta(old.egress, new.egress)
    ha, hr = sequence_delta(old.health_checks, new.health_checks)
    return IntentDiff(tuple(ia), tuple(ir), tuple(ea), tuple(er), tuple(ha), tuple(hr),
                      cidrs_changed(old, new))


def cidrs_changed(old: NatIntent, new: NatIntent) -> bool:
    """Whether the CIDRs changed, which every set depending on them must follow."""
    return (old.global_cidr, old.local_cidrs, old.remote_global_cidrs) != (
        new.global_cidr, new.local_cidrs, new.remote_global_cidrs)


_T = TypeVar("_T", bound=Hashable)


def _common_prefix(a: Sequence[object], b: Sequence[object]) -> int:
    n = min(len(a), len(b))
    same = list(map(operator.is_, a[:n], b[:n]))
    try:
        return same.index(False)
    except ValueError:
        return n


def sequence_delta(a: tuple[_T, ...], b: tuple[_T, ...]) -> tuple[list[_T], list[_T]]:
    """(added, removed) as multisets: what b has more of, what a has more of.

    The one difference function of the intent, in time proportional to the
    change where it can be: with 50,000 ingress mappings, hashing every one
    costs tens of milliseconds of Python, and an update must cost a few. The
    common prefix and suffix of the (sorted, canonical) tuples are trimmed by
    *identity* at C speed, then the small middle is diffed. An intent derived
    from the previous one by sharing its unchanged objects costs two slices and
    a compare per change; equal but unshared objects give the same answer after
    hashing all of them. Order follows b for the added and a for the removed.
    """
    if a is b:
        return [], []
    p = _common_prefix(a, b)
    ra, rb = a[p:][::-1], b[p:][::-1]
    s = _common_prefix(ra, rb)
    mid_a, mid_b = a[p:len(a) - s], b[p:len(b) - s]
    set_a, set_b = set(mid_a), set(mid_b)
    if len(set_a) == len(mid_a) and len(set_b) == len(mid_b):
        # No duplicates (build_intent never makes any): plain sets give the same answer.
        return [x for x in mid_b if x not in set_a], [x for x in mid_a if x not in set_b]
    ca, cb = Counter(mid_a), Counter(mid_b)
    return list((cb - ca).elements()), list((ca - cb).elements())
