"""Intent -> map elements (pure functions, no kernel), and elements -> ctypes.

An element is `(map macro, key) -> value` in plain Python values (dotted
addresses, protocol numbers, ports), so desired and installed state compare
as tuples; `to_ctypes`/`from_ctypes` convert at the kernel boundary. Counters
live in the kernel's values and are not part of an element: converging never
resets the counters of an unchanged element.

Ingress elements are kept per change by `IngressIndex` (a multiset per key),
so that a partial apply with 50,000 mappings touches only the changed keys.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import netaddr

from datapath.ebpf import names as n
from datapath.ebpf import structs as s
from globalnet.intent import (
    EgressKind,
    IngressMapping,
    IngressTarget,
    NatIntent,
    Protocol,
    assign_egress,
    longest_contiguous_run,
)

log = logging.getLogger(__name__)

Key = tuple[object, ...]
Value = tuple[object, ...]
Elements = dict[str, dict[Key, Value]]  # map macro -> key -> value

PROTO_NUMBER = {Protocol.TCP: 6, Protocol.UDP: 17, Protocol.SCTP: 132}
PROTO_NAME = {v: k.value for k, v in PROTO_NUMBER.items()}


def ingress_elements(m: IngressMapping) -> list[tuple[str, Key, Value]]:
    """Forward and reverse elements of one mapping: 2, or 2 per exported port.

    Values are (address, flags). A headless target with exported ports has its
    every-port pair too, flagged `NAT_F_ADMIT_PORTS` (see bpf/lib/nat.h).
    """
    out: list[tuple[str, Key, Value]] = []
    headless = m.target is not IngressTarget.CLUSTER_IP_SERVICE
    if not m.ports or headless:
        flags = n.NAT_F_ADMIT_PORTS if m.ports else 0
        out += [(n.INGRESS, (m.global_ip, 0, 0), (m.target_ip, flags)),
                (n.REVERSE, (m.target_ip, 0, 0), (m.global_ip, flags))]
    for p in m.ports:
        proto = PROTO_NUMBER[p.protocol]
        out.append((n.INGRESS, (m.global_ip, proto, p.port), (m.target_ip, 0)))
        out.append((n.REVERSE, (m.target_ip, proto, p.port), (m.global_ip, 0)))
    return out


@dataclass
class IngressIndex:
    """Ingress elements wanted by the current mappings, with how many want each.
    Should two mappings disagree on a key, the smallest value wins
    (deterministic across restarts)."""

    wanted: dict[tuple[str, Key], dict[Value, int]] = field(default_factory=dict)

    @classmethod
    def build(cls, mappings: Iterable[IngressMapping]) -> IngressIndex:
        index = cls()
        for m in mappings:
            index.add(m)
        return index

    def add(self, m: IngressMapping) -> list[tuple[str, Key]]:
        touched = []
        for macro, key, value in ingress_elements(m):
            values = self.wanted.setdefault((macro, key), {})
            values[value] = values.get(value, 0) + 1
            touched.append((macro, key))
        return touched

    def remove(self, m: IngressMapping) -> list[tuple[str, Key]]:
        touched = []
        for macro, key, value in ingress_elements(m):
            values = self.wanted.get((macro, key))
            if values is None or value not in values:
                continue
            values[value] -= 1
            if values[value] <= 0:
                del values[value]
            if not values:
                del self.wanted[(macro, key)]
            touched.append((macro, key))
        return touched

    def desired(self, macro: str, key: Key) -> Value | None:
        values = self.wanted.get((macro, key))
        return min(values) if values else None

    def elements(self) -> Elements:
        out: Elements = {n.INGRESS: {}, n.REVERSE: {}}
        for (macro, key), values in self.wanted.items():
            out[macro][key] = min(values)
        return out


def contiguous_range(ips: Iterable[str], *, owner: str = "") -> tuple[str, int]:
    """(first address, count) of the longest contiguous run of a group's global IPs
    (`globalnet.intent.longest_contiguous_run`)."""
    unique = set(ips)
    best = longest_contiguous_run(unique)
    if best[1] - best[0] + 1 != len(unique):
        log.warning("%s: global IPs are not contiguous; connections use %s-%s only", owner,
                    netaddr.IPAddress(best[0]), netaddr.IPAddress(best[1]))
    return str(netaddr.IPAddress(best[0])), best[1] - best[0] + 1


def egress_elements(intent: NatIntent) -> Elements:
    """`EGRESS_PODS` and `EGRESS_CIDRS`, precedence resolved by `assign_egress`.

    Headless pods get no element: their own 1:1 global IP is written statelessly
    from the reverse map of their ingress mapping.
    """
    pods: dict[Key, Value] = {}
    cidrs: dict[Key, Value] = {}
    assignment = assign_egress(intent)
    ranges: dict[str, Value] = {}
    for ip, group in assignment.pods.items():
        if group.kind is EgressKind.HEADLESS_POD:
            continue
        if group.owner not in ranges:
            ranges[group.owner] = contiguous_range(group.global_ips, owner=group.owner)
        pods[(ip,)] = ranges[group.owner]
    cluster = assignment.cluster
    if cluster is not None:
        rng = contiguous_range(cluster.global_ips, owner=cluster.owner)
        for cidr in netaddr.cidr_merge(intent.local_cidrs):
            cidrs[(str(cidr),)] = rng
    return {n.EGRESS_PODS: pods, n.EGRESS_CIDRS: cidrs}


def health_elements(intent: NatIntent) -> Elements:
    return {n.HEALTH: {(h.global_ip,): (1,) for h in intent.health_checks}}


def cidr_elements(intent: NatIntent) -> Elements:
    out: dict[Key, Value] = {(str(netaddr.IPNetwork(intent.global_cidr).cidr),):
                             (int(n.CidrKind.OURS),)}
    for c in netaddr.cidr_merge(intent.remote_global_cidrs):
        out[(str(c),)] = (int(n.CidrKind.REMOTE),)
    return {n.CIDRS: out}


# -- ctypes -------------------------------------------------------------------

KEY_TYPES: dict[str, type[ctypes.Structure]] = {
    n.INGRESS: s.NatKey, n.REVERSE: s.NatKey, n.CIDRS: s.CidrKey, n.HEALTH: s.U32,
    n.EGRESS_PODS: s.U32, n.EGRESS_CIDRS: s.CidrKey, n.CT: s.CtKey, n.STATS: s.U32,
    n.MSS: s.U32, n.PORT_HINT: s.U32, n.INGRESS_SLOT: s.U32,
}
VALUE_TYPES: dict[str, type[ctypes.Structure]] = {
    n.INGRESS: s.NatValue, n.REVERSE: s.NatValue, n.CIDRS: s.CidrValue, n.HEALTH: s.U32,
    n.EGRESS_PODS: s.EgressValue, n.EGRESS_CIDRS: s.EgressValue, n.CT: s.CtValue,
    n.STATS: s.U64, n.MSS: s.U16, n.PORT_HINT: s.U64, n.INGRESS_SLOT: s.NatSlot,
}


def hint_bit(macro: str, key: Key) -> tuple[int, int] | None:
    """(word index, bit) of the port hint an `INGRESS`/`REVERSE` key sets, or None
    for an every-port key (see `names.PORT_HINT`)."""
    if macro not in (n.INGRESS, n.REVERSE) or key[1] == 0:
        return None
    low = int(netaddr.IPAddress(str(key[0]))) & 0xFFFF
    base = 0 if macro == n.INGRESS else n.HINT_WORDS
    return base + (low >> 6), low & 63


def hint_words(installed: Elements) -> dict[int, int]:
    """Every word of the port hint (index -> bits) for these ingress/reverse elements."""
    words = dict.fromkeys(range(2 * n.HINT_WORDS), 0)
    for macro in (n.INGRESS, n.REVERSE):
        for key in installed.get(macro, {}):
            bit = hint_bit(macro, key)
            if bit is not None:
                words[bit[0]] |= 1 << bit[1]
    return words


SlotEntry = tuple[str, str, int]
"""What an ingress slot holds (names.INGRESS_SLOT): (global IP, target, flags)."""


def slot_index(global_ip: str) -> int:
    """The ingress slot of a global IP: its low 16 bits (bpf/lib/nat.h, gn_nat__every_port)."""
    return int(netaddr.IPAddress(global_ip)) & (n.INGRESS_SLOT_SIZE - 1)


def slot_owner(current: SlotEntry | None,
               candidates: Mapping[str, Value]) -> SlotEntry | None:
    """What one slot should hold, given its every-port ingress entries (global IP ->
    (target, flags)): the entry it holds while that is unchanged (a restart or an
    added neighbour rewrites nothing), else the lowest address's, else nothing."""
    if current is not None and candidates.get(current[0]) == (current[1], current[2]):
        return current
    if not candidates:
        return None
    ip = min(candidates, key=lambda a: int(netaddr.IPAddress(a)))
    target, flags = candidates[ip]
    return (ip, str(target), int(str(flags)))


def slot_entries(installed: Elements) -> dict[int, SlotEntry]:
    """The slots of these ingress elements as they would be written from empty."""
    by_slot: dict[int, dict[str, Value]] = {}
    for key, value in installed.get(n.INGRESS, {}).items():
        if key[1] == 0:
            by_slot.setdefault(slot_index(str(key[0])), {})[str(key[0])] = value
    out = {}
    for idx, candidates in by_slot.items():
        owner = slot_owner(None, candidates)
        if owner is not None:
            out[idx] = owner
    return out


def slot_to_ctypes(entry: SlotEntry | None, *, claimed: bool = True) -> s.NatSlot:
    """A slot's value; `claimed` False writes its global IP as 0 (the slot claims
    no address) with the rest as given."""
    if entry is None:
        return s.NatSlot()
    return s.NatSlot(global_ip=s.be32(entry[0]) if claimed else 0, pad=0,
                     value=s.NatValue(addr=s.be32(entry[1]), flags=entry[2]))


def slot_from_ctypes(raw: s.NatSlot) -> SlotEntry | None:
    if raw.global_ip == 0:
        return None
    return (s.ip_of(raw.global_ip), s.ip_of(raw.value.addr), int(raw.value.flags))


def _cidr_key(cidr: str) -> s.CidrKey:
    net = netaddr.IPNetwork(cidr)
    return s.CidrKey(prefixlen=net.prefixlen, addr=s.be32(str(net.network)))


def key_to_ctypes(macro: str, key: Key) -> ctypes.Structure:
    if macro in (n.INGRESS, n.REVERSE):
        ip, proto, port = key
        return s.NatKey(addr=s.be32(str(ip)), proto=int(str(proto)), pad=0,
                        port=s.be16(int(str(port))))
    if macro in (n.CIDRS, n.EGRESS_CIDRS):
        return _cidr_key(str(key[0]))
    return s.U32(value=s.be32(str(key[0])))


def value_to_ctypes(macro: str, value: Value) -> ctypes.Structure:
    if macro in (n.INGRESS, n.REVERSE):
        return s.NatValue(addr=s.be32(str(value[0])), flags=int(str(value[1])))
    if macro == n.CIDRS:
        return s.CidrValue(kind=int(str(value[0])))
    if macro in (n.EGRESS_PODS, n.EGRESS_CIDRS):
        return s.EgressValue(first=s.be32(str(value[0])), count=int(str(value[1])))
    return s.U32(value=int(str(value[0])))


def key_from_ctypes(macro: str, raw: ctypes.Structure) -> Key:
    if isinstance(raw, s.NatKey):
        return (s.ip_of(raw.addr), int(raw.proto), s.port_of(raw.port))
    if isinstance(raw, s.CidrKey):
        return (f"{s.ip_of(raw.addr)}/{raw.prefixlen}",)
    assert isinstance(raw, s.U32)
    return (s.ip_of(raw.value),)


def value_from_ctypes(macro: str, raw: ctypes.Structure) -> Value:
    if isinstance(raw, s.NatValue):
        return (s.ip_of(raw.addr), int(raw.flags))
    if isinstance(raw, s.CidrValue):
        return (int(raw.kind),)
    if isinstance(raw, s.EgressValue):
        return (s.ip_of(raw.first), int(raw.count))
    assert isinstance(raw, s.U32)
    return (int(raw.value),)
