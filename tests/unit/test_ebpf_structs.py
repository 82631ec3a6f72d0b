"""The eBPF backend's pure parts: ctypes layouts and byte order, the shared
configuration, the source rendering, intent -> map elements, GC rules.

The C side of each layout is checked by tests/netns/test_bpf_layout.py (clang
asserts the same offsets); here, no privileges. Addresses: global CIDR
242.0.0.0/16, remote 242.1.0.0/16, pods 10.244.0.0/16, a ClusterIP 10.96.0.10.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import pytest

from datapath.ebpf import ct, elements, loader
from datapath.ebpf import names as n
from datapath.ebpf import structs as s
from globalnet.intent import (
    EgressGroup,
    EgressKind,
    GlobalIP,
    IngressMapping,
    IngressTarget,
    NatIntent,
    PortSpec,
    Protocol,
)


@pytest.mark.parametrize("cname", list(s.LAYOUTS))
def test_mirrored_struct_has_the_c_size_and_no_implicit_padding(cname: str) -> None:
    mirror, size = s.LAYOUTS[cname]
    assert ctypes.sizeof(mirror) == size
    fields = sum(ctypes.sizeof(f[1]) for f in mirror._fields_)
    assert fields == size, f"{cname}: implicit padding"


def test_keys_are_in_network_byte_order() -> None:
    key = s.NatKey(addr=s.be32("242.0.10.1"), proto=6, pad=0, port=s.be16(80))
    assert bytes(key) == bytes([242, 0, 10, 1, 6, 0, 0, 80])
    ctk = s.CtKey(saddr=s.be32("10.244.0.10"), daddr=s.be32("242.1.10.1"), sport=s.be16(5555),
                  dport=s.be16(80), proto=17, dir=1)
    assert bytes(ctk) == bytes([10, 244, 0, 10, 242, 1, 10, 1, 0x15, 0xB3, 0, 80, 17, 1, 0, 0])
    lpm = s.CidrKey(prefixlen=16, addr=s.be32("242.0.0.0"))
    assert bytes(lpm) == (16).to_bytes(4, "little") + bytes([242, 0, 0, 0])  # host order len
    assert s.ip_of(s.be32("1.2.3.4")) == "1.2.3.4" and s.port_of(s.be16(443)) == 443


def test_defines_carry_every_shared_constant_once() -> None:
    pins = n.PinLayout(Path("/sys/fs/bpf"), "host")
    flags = n.defines(pins)
    names = [f.split("=", 1)[0] for f in flags]
    assert len(names) == len(set(names)) and flags == sorted(flags)
    for d in n.Drop:
        assert f"-DGN_DROP_{d.name}={int(d)}" in flags
    assert '-DGN_PIN_CT="/sys/fs/bpf/globalnet/host/maps/gn_ct"' in flags
    assert all(len(m.name) <= 15 for m in n.MAPS)  # BPF_OBJ_NAME_LEN - 1


def test_every_config_token_in_the_sources_comes_from_python() -> None:
    pins = n.PinLayout(Path("/sys/fs/bpf"), "host")
    defined = {f[2:].split("=", 1)[0] for f in n.defines(pins)}
    for prog in n.PROGRAMS:
        text = loader.render_source(prog)
        assert "GN_MAP_CT" not in text and "gn_ct" in text
        used = set(re.findall(r"\bGN_(?:DROP|PIN|CIDR|CT|MARK|PORT)_[A-Z_]*[A-Z]\b", text))
        local = set(re.findall(r"#define (GN_[A-Z_]+)", text))
        assert used - local <= defined, used - local - defined


def test_build_id_changes_with_the_configuration() -> None:
    a = loader.build_id(n.PinLayout(Path("/sys/fs/bpf"), "a"))
    assert a == loader.build_id(n.PinLayout(Path("/sys/fs/bpf"), "a"))
    assert a != loader.build_id(n.PinLayout(Path("/sys/fs/bpf"), "b"))


def _mapping(g: str, t: str, *ports: PortSpec) -> IngressMapping:
    return IngressMapping(GlobalIP(g), t, IngressTarget.CLUSTER_IP_SERVICE,
                          f"GlobalIngressIP default/{t}", tuple(ports))


def test_ingress_elements_per_exported_port_or_all() -> None:
    m = _mapping("242.0.10.1", "10.96.0.10", PortSpec(Protocol.TCP, 80),
                 PortSpec(Protocol.UDP, 53))
    assert elements.ingress_elements(m) == [
        (n.INGRESS, ("242.0.10.1", 6, 80), ("10.96.0.10", 0)),
        (n.REVERSE, ("10.96.0.10", 6, 80), ("242.0.10.1", 0)),
        (n.INGRESS, ("242.0.10.1", 17, 53), ("10.96.0.10", 0)),
        (n.REVERSE, ("10.96.0.10", 17, 53), ("242.0.10.1", 0)),
    ]
    assert elements.ingress_elements(_mapping("242.0.3.30", "10.244.1.30")) == [
        (n.INGRESS, ("242.0.3.30", 0, 0), ("10.244.1.30", 0)),
        (n.REVERSE, ("10.244.1.30", 0, 0), ("242.0.3.30", 0)),
    ]


def test_a_headless_target_is_rewritten_on_every_port_but_admits_its_exported_ones() -> None:
    m = IngressMapping(GlobalIP("242.0.3.30"), "10.244.1.30",
                       IngressTarget.HEADLESS_SERVICE_POD, "GlobalIngressIP default/hl",
                       (PortSpec(Protocol.TCP, 7070),))
    assert elements.ingress_elements(m) == [
        (n.INGRESS, ("242.0.3.30", 0, 0), ("10.244.1.30", n.NAT_F_ADMIT_PORTS)),
        (n.REVERSE, ("10.244.1.30", 0, 0), ("242.0.3.30", n.NAT_F_ADMIT_PORTS)),
        (n.INGRESS, ("242.0.3.30", 6, 7070), ("10.244.1.30", 0)),
        (n.REVERSE, ("10.244.1.30", 6, 7070), ("242.0.3.30", 0)),
    ]


def test_ingress_index_keeps_a_key_another_mapping_still_wants() -> None:
    a, b = _mapping("242.0.0.9", "10.96.0.1"), _mapping("242.0.0.9", "10.96.0.1")
    index = elements.IngressIndex.build([a, b])
    index.remove(a)
    assert index.desired(n.INGRESS, ("242.0.0.9", 0, 0)) == ("10.96.0.1", 0)
    index.remove(b)
    assert index.desired(n.INGRESS, ("242.0.0.9", 0, 0)) is None


def test_egress_elements_resolve_precedence_like_egress_for() -> None:
    intent = NatIntent.build(
        cluster_id="a", global_cidr="242.0.0.0/16", local_cidrs=["10.244.0.0/16"],
        egress=[
            EgressGroup(EgressKind.CLUSTER, "cluster", tuple(
                GlobalIP(f"242.0.0.{i}") for i in range(1, 5))),
            EgressGroup(EgressKind.NAMESPACE, "ns", (GlobalIP("242.0.1.1"), GlobalIP("242.0.1.2")),
                        frozenset({"10.244.1.11", "10.244.1.12"})),
            EgressGroup(EgressKind.POD_SELECTOR, "sel", (GlobalIP("242.0.2.1"),),
                        frozenset({"10.244.1.12"})),
            EgressGroup(EgressKind.HEADLESS_POD, "hl", (GlobalIP("242.0.3.30"),),
                        frozenset({"10.244.1.30", "10.244.1.11"})),
        ])
    got = elements.egress_elements(intent)
    assert got[n.EGRESS_PODS] == {("10.244.1.12",): ("242.0.2.1", 1)}
    assert got[n.EGRESS_CIDRS] == {("10.244.0.0/16",): ("242.0.0.1", 4)}
    # 10.244.1.11 is a headless pod first (precedence 2 beats namespace 3): no element,
    # its own global IP comes from the reverse map.


def test_connection_timeouts_per_protocol_and_closing_state() -> None:
    t = n.TIMEOUTS
    assert ct.timeout_of(6, 0) == t.tcp and ct.timeout_of(6, n.CT_F_CLOSING) == t.tcp_closing
    assert (ct.timeout_of(17, 0), ct.timeout_of(1, 0), ct.timeout_of(47, 0)) == (
        t.udp, t.icmp, t.other)
    key = s.CtKey(saddr=s.be32("10.244.0.10"), daddr=s.be32("242.1.10.1"), sport=s.be16(5555),
                  dport=s.be16(80), proto=6, dir=0)
    value = s.CtValue(addr=s.be32("242.0.0.2"), port=s.be16(30000))
    rk = ct.reply_key(key, value)
    assert (s.ip_of(rk.saddr), s.ip_of(rk.daddr), s.port_of(rk.sport), s.port_of(rk.dport),
            rk.dir) == ("242.1.10.1", "242.0.0.2", 80, 30000, 1)


def test_the_port_hint_has_a_bit_for_each_address_with_port_entries() -> None:
    web = IngressMapping(GlobalIP("242.0.10.1"), "10.96.0.10", IngressTarget.CLUSTER_IP_SERVICE,
                         "GlobalIngressIP app/web", (PortSpec(Protocol.TCP, 80),))
    every = IngressMapping(GlobalIP("242.0.10.2"), "10.96.0.11",
                           IngressTarget.CLUSTER_IP_SERVICE, "GlobalIngressIP app/all")
    installed: elements.Elements = elements.IngressIndex.build([web, every]).elements()
    words = elements.hint_words(installed)
    assert len(words) == 2 * n.HINT_WORDS
    # 242.0.10.1: low 16 bits 0x0a01 -> word 40, bit 1; 10.96.0.10 -> reverse half, bit 10.
    assert elements.hint_bit(n.INGRESS, ("242.0.10.1", 6, 80)) == (0x0A01 >> 6, 0x0A01 & 63)
    assert elements.hint_bit(n.REVERSE, ("10.96.0.10", 6, 80)) == (n.HINT_WORDS, 10)
    assert elements.hint_bit(n.INGRESS, ("242.0.10.2", 0, 0)) is None  # every-port key
    assert {w: b for w, b in words.items() if b} == {40: 1 << 1, n.HINT_WORDS: 1 << 10}


def test_every_port_ingress_entries_get_a_slot_by_their_low_16_bits() -> None:
    web = IngressMapping(GlobalIP("242.0.10.1"), "10.96.0.10", IngressTarget.CLUSTER_IP_SERVICE,
                         "GlobalIngressIP app/web", (PortSpec(Protocol.TCP, 80),))
    every = IngressMapping(GlobalIP("242.0.10.2"), "10.96.0.11",
                           IngressTarget.CLUSTER_IP_SERVICE, "GlobalIngressIP app/all")
    pod = IngressMapping(GlobalIP("242.0.3.31"), "10.244.1.31", IngressTarget.HEADLESS_SERVICE_POD,
                         "GlobalIngressIP app/pod", (PortSpec(Protocol.TCP, 7070),))
    installed = elements.IngressIndex.build([web, every, pod]).elements()
    assert n.INGRESS_SLOT_SIZE == 1 << 16
    assert elements.slot_index("242.0.10.2") == 0x0A02 == elements.slot_index("242.7.10.2")
    # Port entries have none; a headless target's slot keeps its flag.
    assert elements.slot_entries(installed) == {
        0x0A02: ("242.0.10.2", "10.96.0.11", 0),
        0x031F: ("242.0.3.31", "10.244.1.31", n.NAT_F_ADMIT_PORTS)}
    raw = elements.slot_to_ctypes(("242.0.10.2", "10.96.0.11", 0))
    assert elements.slot_from_ctypes(raw) == ("242.0.10.2", "10.96.0.11", 0)
    assert bytes(raw)[:4] == bytes([242, 0, 10, 2])  # global IP in network order first
    unclaimed = elements.slot_to_ctypes(("242.0.10.2", "10.96.0.11", 0), claimed=False)
    assert elements.slot_from_ctypes(unclaimed) is None and unclaimed.value.addr == raw.value.addr


def test_a_shared_slot_keeps_its_holder_while_its_entry_is_unchanged() -> None:
    """Two addresses with the same low 16 bits (a global CIDR wider than a /16): the
    lowest gets the slot from empty, a holder keeps it (no rewrite on restart or on an
    added neighbour), a changed or removed holder gives it up."""
    low, high = ("242.0.10.2", ("10.96.0.1", 0)), ("242.1.10.2", ("10.96.0.2", 0))
    both = dict([low, high])
    assert elements.slot_owner(None, both) == ("242.0.10.2", "10.96.0.1", 0)
    held = ("242.1.10.2", "10.96.0.2", 0)
    assert elements.slot_owner(held, both) == held
    assert elements.slot_owner(held, {**both, "242.1.10.2": ("10.96.0.9", 0)}) == (
        "242.0.10.2", "10.96.0.1", 0)
    assert elements.slot_owner(held, dict([low])) == ("242.0.10.2", "10.96.0.1", 0)
    assert elements.slot_owner(held, {}) is None
