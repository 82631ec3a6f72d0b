"""The real tc programs of bpf/ on hand-built packets, through BPF_PROG_TEST_RUN.

Each case is a `<case>_pktgen` / `<case>_setup` / `<case>_check` triplet (as in
Cilium's bpf/tests): setup writes map elements the way the backend does,
pktgen builds the frame, check asserts the verdict, the rewritten packet (every
checksum recomputed independently by bpf_pkt.verify) and the maps' state
(connection entries, counters, drop reasons). Address conventions in
bpf_fixture.py.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import pytest

from datapath.ebpf import elements
from datapath.ebpf import names as n
from datapath.ebpf import structs as s
from tests.netns import bpf_pkt as P
from tests.netns.bpf_fixture import LoadedProgs, loaded

pytestmark = pytest.mark.privileged

OURS, REMOTE = "242.0.0.0/16", "242.1.0.0/16"
WEB_G, WEB_T = "242.0.10.1", "10.96.0.10"
HL_G, HL_T = "242.0.3.30", "10.244.1.30"
HLX_G, HLX_T = "242.0.3.31", "10.244.1.31"
CLIENT = "242.1.0.7"
POD, POD2 = "10.244.0.10", "10.244.0.11"
SERVER = "242.1.10.1"
HEALTH = "242.0.255.254"
ROUTER = "198.18.1.1"


@pytest.fixture(scope="module")
def progs() -> Iterator[LoadedProgs]:
    with loaded() as lp:
        yield lp


@pytest.fixture
def bpf(progs: LoadedProgs) -> LoadedProgs:
    progs.reset()
    base_setup(progs)
    return progs


def base_setup(lp: LoadedProgs) -> None:
    lp.put(n.CIDRS, (OURS,), (int(n.CidrKind.OURS),))
    lp.put(n.CIDRS, (REMOTE,), (int(n.CidrKind.REMOTE),))
    for proto, port in ((6, 80), (17, 53)):
        lp.put(n.INGRESS, (WEB_G, proto, port), (WEB_T, 0))
        lp.put(n.REVERSE, (WEB_T, proto, port), (WEB_G, 0))
    lp.put(n.INGRESS, (HL_G, 0, 0), (HL_T, 0))
    lp.put(n.REVERSE, (HL_T, 0, 0), (HL_G, 0))
    # A headless pod exporting tcp/7070 only: every port rewritten, new connections
    # admitted on 7070 only.
    lp.put(n.INGRESS, (HLX_G, 0, 0), (HLX_T, n.NAT_F_ADMIT_PORTS))
    lp.put(n.REVERSE, (HLX_T, 0, 0), (HLX_G, n.NAT_F_ADMIT_PORTS))
    lp.put(n.INGRESS, (HLX_G, 6, 7070), (HLX_T, 0))
    lp.put(n.REVERSE, (HLX_T, 6, 7070), (HLX_G, 0))
    lp.put(n.EGRESS_CIDRS, ("10.244.0.0/16",), ("242.0.0.1", 4))
    lp.put(n.HEALTH, (HEALTH,), (1,))


def drops(lp: LoadedProgs, reason: n.Drop) -> int:
    v = lp.get(n.STATS, s.U32(value=int(reason)))
    assert isinstance(v, s.U64)
    return int(v.value)


def nat_counter(lp: LoadedProgs, macro: str, ip: str, proto: int, port: int) -> int:
    """Packets counted for one element: in the hash, plus in its ingress slot when the
    slot holds it (an every-port ingress entry)."""
    v = lp.get(macro, s.NatKey(addr=s.be32(ip), proto=proto, port=s.be16(port)))
    assert isinstance(v, s.NatValue)
    slotted = 0
    if macro == n.INGRESS and proto == 0:
        raw = lp.get(n.INGRESS_SLOT, s.U32(value=elements.slot_index(ip)))
        assert isinstance(raw, s.NatSlot)
        if raw.global_ip == s.be32(ip):
            slotted = int(raw.value.packets)
    return int(v.packets) + slotted


def run_from(lp: LoadedProgs, pkt: bytes) -> P.Result:
    return P.run_prog(lp.fd(n.FROM_TUNNEL), pkt)


def run_to(lp: LoadedProgs, pkt: bytes) -> P.Result:
    return P.run_prog(lp.fd(n.TO_TUNNEL), pkt)


# -- ingress: exported port ------------------------------------------------------

def ingress_tcp_pktgen() -> bytes:
    return P.tcp(CLIENT, WEB_G, 40000, 80)


def ingress_tcp_setup(lp: LoadedProgs) -> None:
    pass  # base_setup: 242.0.10.1 tcp/80 -> 10.96.0.10


def ingress_tcp_check(lp: LoadedProgs, res: P.Result) -> None:
    assert res.verdict == P.TC_ACT_OK
    p = P.parse(res.ip)
    assert (p.src, p.dst, p.sport, p.dport) == (CLIENT, WEB_T, 40000, 80)
    P.verify(res.ip)
    assert nat_counter(lp, n.INGRESS, WEB_G, 6, 80) == 1


def ingress_udp_pktgen() -> bytes:
    return P.udp(CLIENT, WEB_G, 40001, 53)


def ingress_udp_setup(lp: LoadedProgs) -> None:
    pass


def ingress_udp_check(lp: LoadedProgs, res: P.Result) -> None:
    assert res.verdict == P.TC_ACT_OK
    assert P.parse(res.ip).dst == WEB_T
    P.verify(res.ip)
    assert nat_counter(lp, n.INGRESS, WEB_G, 17, 53) == 1


# -- ingress: what must not pass -------------------------------------------------

def ingress_unexported_port_pktgen() -> bytes:
    return P.tcp(CLIENT, WEB_G, 40000, 9090)


def ingress_unexported_port_setup(lp: LoadedProgs) -> None:
    pass


def ingress_unexported_port_check(lp: LoadedProgs, res: P.Result) -> None:
    assert res.verdict == P.TC_ACT_SHOT
    assert drops(lp, n.Drop.UNMAPPED) == 1
    assert nat_counter(lp, n.INGRESS, WEB_G, 6, 80) == 0


def ingress_unmapped_pktgen() -> bytes:
    return P.udp(CLIENT, "242.0.20.20", 40000, 53)


def ingress_unmapped_setup(lp: LoadedProgs) -> None:
    pass


def ingress_unmapped_check(lp: LoadedProgs, res: P.Result) -> None:
    assert res.verdict == P.TC_ACT_SHOT
    assert drops(lp, n.Drop.UNMAPPED) == 1


def ingress_not_ours_pktgen() -> bytes:
    return P.tcp("10.1.0.1", "10.1.0.2", 1, 2)


def ingress_not_ours_setup(lp: LoadedProgs) -> None:
    pass


def ingress_not_ours_check(lp: LoadedProgs, res: P.Result) -> None:
    assert res.verdict == P.TC_ACT_OK
    assert res.ip == ingress_not_ours_pktgen()


# -- fragments -------------------------------------------------------------------

def ingress_later_fragment_pktgen() -> bytes:
    return P.ipv4(CLIENT, HL_G, P.UDP, b"x" * 64, frag=100)


def ingress_later_fragment_setup(lp: LoadedProgs) -> None:
    pass  # 242.0.3.30 maps every port: a later fragment can follow it


def ingress_later_fragment_check(lp: LoadedProgs, res: P.Result) -> None:
    assert res.verdict == P.TC_ACT_OK
    assert P.parse(res.ip).dst == HL_T
    assert P.csum(res.ip[:20]) == 0
    assert res.ip[20:] == b"x" * 64


def ingress_later_fragment_ported_pktgen() -> bytes:
    return P.ipv4(CLIENT, WEB_G, P.UDP, b"x" * 64, frag=100)


def ingress_later_fragment_ported_setup(lp: LoadedProgs) -> None:
    pass  # 242.0.10.1 maps exported ports only: a later fragment has none


def ingress_later_fragment_ported_check(lp: LoadedProgs, res: P.Result) -> None:
    assert res.verdict == P.TC_ACT_SHOT
    assert drops(lp, n.Drop.FRAGMENT) == 1


# -- reverse: replies of ingress flows -------------------------------------------

def reverse_reply_pktgen() -> bytes:
    return P.tcp(WEB_T, CLIENT, 80, 40000, flags=P.SYN | P.ACK)


def reverse_reply_setup(lp: LoadedProgs) -> None:
    pass


def reverse_reply_check(lp: LoadedProgs, res: P.Result) -> None:
    assert res.verdict == P.TC_ACT_OK
    p = P.parse(res.ip)
    assert (p.src, p.sport, p.dst) == (WEB_G, 80, CLIENT)
    P.verify(res.ip)
    assert nat_counter(lp, n.REVERSE, WEB_T, 6, 80) == 1
    assert lp.count(n.CT) == 0  # stateless


# -- health check ----------------------------------------------------------------

def health_echo_pktgen() -> bytes:
    return P.echo(CLIENT, HEALTH, 77)


def health_echo_setup(lp: LoadedProgs) -> None:
    pass


def health_echo_check(lp: LoadedProgs, res: P.Result) -> None:
    assert res.verdict == P.TC_ACT_REDIRECT
    p = P.parse(res.ip)
    assert (p.src, p.dst, p.payload[0], p.sport) == (HEALTH, CLIENT, 0, 77)
    assert res.frame[:6] == P.ETH[6:12] and res.frame[6:12] == P.ETH[:6]
    P.verify(res.ip)


def health_tcp_pktgen() -> bytes:
    return P.tcp(CLIENT, HEALTH, 40000, 80)


def health_tcp_setup(lp: LoadedProgs) -> None:
    pass


def health_tcp_check(lp: LoadedProgs, res: P.Result) -> None:
    assert res.verdict == P.TC_ACT_SHOT
    assert drops(lp, n.Drop.UNMAPPED) == 1


# -- egress: the connection table ------------------------------------------------

def egress_new_tcp_pktgen() -> bytes:
    return P.tcp(POD, SERVER, 5555, 80)


def egress_new_tcp_setup(lp: LoadedProgs) -> None:
    pass  # cluster egress 242.0.0.1-4 for 10.244.0.0/16


def egress_new_tcp_check(lp: LoadedProgs, res: P.Result) -> None:
    assert res.verdict == P.TC_ACT_OK
    p = P.parse(res.ip)
    assert p.src in {f"242.0.0.{i}" for i in range(1, 5)}
    assert (p.sport, p.dst, p.dport) == (5555, SERVER, 80)  # the pod's port was free
    P.verify(res.ip)
    fwd = lp.get(n.CT, s.CtKey(saddr=s.be32(POD), daddr=s.be32(SERVER), sport=s.be16(5555),
                               dport=s.be16(80), proto=6, dir=int(n.CtDir.EGRESS)))
    assert isinstance(fwd, s.CtValue) and fwd.packets == 0 and s.ip_of(fwd.addr) == p.src
    back = lp.get(n.CT, s.CtKey(saddr=s.be32(SERVER), daddr=s.be32(p.src), sport=s.be16(80),
                                dport=s.be16(5555), proto=6, dir=int(n.CtDir.REPLY)))
    assert isinstance(back, s.CtValue)
    assert (s.ip_of(back.addr), s.port_of(back.port)) == (POD, 5555)
    assert lp.count(n.CT) == 2
    # The reply comes back to the pod, and both directions now count one packet.
    reply = run_from(lp, P.tcp(SERVER, p.src, 80, 5555, flags=P.SYN | P.ACK))
    assert reply.verdict == P.TC_ACT_OK
    r = P.parse(reply.ip)
    assert (r.dst, r.dport, r.src) == (POD, 5555, SERVER)
    P.verify(reply.ip)
    again = run_to(lp, P.tcp(POD, SERVER, 5555, 80, flags=P.ACK))
    assert P.parse(again.ip).src == p.src
    fwd = lp.get(n.CT, s.CtKey(saddr=s.be32(POD), daddr=s.be32(SERVER), sport=s.be16(5555),
                               dport=s.be16(80), proto=6, dir=int(n.CtDir.EGRESS)))
    assert isinstance(fwd, s.CtValue) and fwd.packets == 1 and fwd.last_seen > 0


def egress_port_collision_pktgen() -> bytes:
    return P.udp(POD2, SERVER, 5555, 53)


def egress_port_collision_setup(lp: LoadedProgs) -> None:
    # One global IP for the whole cluster, and POD already holds its port 5555.
    lp.put(n.EGRESS_CIDRS, ("10.244.0.0/16",), ("242.0.0.1", 1))
    first = run_to(lp, P.udp(POD, SERVER, 5555, 53))
    assert P.parse(first.ip).sport == 5555


def egress_port_collision_check(lp: LoadedProgs, res: P.Result) -> None:
    assert res.verdict == P.TC_ACT_OK
    p = P.parse(res.ip)
    assert p.src == "242.0.0.1" and p.sport != 5555 and p.sport >= n.PORT_MIN
    P.verify(res.ip)
    assert lp.count(n.CT) == 4
    reply = run_from(lp, P.udp(SERVER, "242.0.0.1", 53, p.sport))
    assert (P.parse(reply.ip).dst, P.parse(reply.ip).dport) == (POD2, 5555)
    P.verify(reply.ip)


def egress_echo_pktgen() -> bytes:
    return P.echo(POD, SERVER, 9)


def egress_echo_setup(lp: LoadedProgs) -> None:
    pass


def egress_echo_check(lp: LoadedProgs, res: P.Result) -> None:
    assert res.verdict == P.TC_ACT_OK
    p = P.parse(res.ip)
    assert p.src.startswith("242.0.0.") and p.sport >= n.PORT_MIN  # identifier translated
    P.verify(res.ip)
    reply = run_from(lp, P.echo(SERVER, p.src, p.sport, reply=True))
    r = P.parse(reply.ip)
    assert (reply.verdict, r.dst, r.sport) == (P.TC_ACT_OK, POD, 9)
    P.verify(reply.ip)


def egress_pod_group_pktgen() -> bytes:
    return P.tcp("10.244.1.12", SERVER, 6000, 80)


def egress_pod_group_setup(lp: LoadedProgs) -> None:
    lp.put(n.EGRESS_PODS, ("10.244.1.12",), ("242.0.2.1", 1))


def egress_pod_group_check(lp: LoadedProgs, res: P.Result) -> None:
    assert P.parse(res.ip).src == "242.0.2.1"  # the pod's group beats the cluster's
    v = lp.get(n.EGRESS_PODS, s.U32(value=s.be32("10.244.1.12")))
    assert isinstance(v, s.EgressValue) and v.packets == 1


def egress_headless_pktgen() -> bytes:
    return P.tcp(HL_T, SERVER, 6000, 80)


def egress_headless_setup(lp: LoadedProgs) -> None:
    pass


def egress_headless_check(lp: LoadedProgs, res: P.Result) -> None:
    p = P.parse(res.ip)
    assert (p.src, p.sport) == (HL_G, 6000)  # its own global IP, statelessly
    P.verify(res.ip)
    assert lp.count(n.CT) == 0


# -- a headless target admits new connections on its exported ports only -------------

def headless_exported_port_pktgen() -> bytes:
    return P.tcp(CLIENT, HLX_G, 40000, 7070)


def headless_exported_port_setup(lp: LoadedProgs) -> None:
    pass


def headless_exported_port_check(lp: LoadedProgs, res: P.Result) -> None:
    assert res.verdict == P.TC_ACT_OK
    assert P.parse(res.ip).dst == HLX_T
    P.verify(res.ip)


def headless_unexported_port_pktgen() -> bytes:
    return P.udp(CLIENT, HLX_G, 40000, 7070)  # the exported port, but tcp only


def headless_unexported_port_setup(lp: LoadedProgs) -> None:
    pass


def headless_unexported_port_check(lp: LoadedProgs, res: P.Result) -> None:
    assert res.verdict == P.TC_ACT_SHOT
    assert drops(lp, n.Drop.NOT_EXPORTED) == 1


def headless_own_connection_pktgen() -> bytes:
    return P.udp(HLX_T, SERVER, 6000, 53)


def headless_own_connection_setup(lp: LoadedProgs) -> None:
    # Before the pod talks, a reply-shaped packet on its port 6000 is a new connection.
    stray = run_from(lp, P.udp(SERVER, HLX_G, 53, 6000))
    assert stray.verdict == P.TC_ACT_SHOT


def headless_own_connection_check(lp: LoadedProgs, res: P.Result) -> None:
    p = P.parse(res.ip)
    assert (res.verdict, p.src, p.sport) == (P.TC_ACT_OK, HLX_G, 6000)  # 1:1, stateless
    P.verify(res.ip)
    assert lp.count(n.CT) == 1  # its reply entry only
    reply = run_from(lp, P.udp(SERVER, HLX_G, 53, 6000))
    r = P.parse(reply.ip)
    assert (reply.verdict, r.dst, r.dport) == (P.TC_ACT_OK, HLX_T, 6000)
    P.verify(reply.ip)


def headless_in_selector_group_pktgen() -> bytes:
    return P.tcp(HLX_T, SERVER, 6001, 80)


def headless_in_selector_group_setup(lp: LoadedProgs) -> None:
    lp.put(n.EGRESS_PODS, (HLX_T,), ("242.0.2.1", 1))  # a pod-selector group claims it


def headless_in_selector_group_check(lp: LoadedProgs, res: P.Result) -> None:
    assert P.parse(res.ip).src == "242.0.2.1"  # precedence: the selector group wins
    P.verify(res.ip)
    assert lp.count(n.CT) == 2
    # Its replies to ingress flows on the exported port stay 1:1.
    reply = run_to(lp, P.tcp(HLX_T, CLIENT, 7070, 40000, flags=P.SYN | P.ACK))
    assert P.parse(reply.ip).src == HLX_G


# -- MSS clamping toward the tunnel ----------------------------------------------

def mss_clamp_pktgen() -> bytes:
    return P.tcp(POD, SERVER, 5556, 80, options=P.mss_option(1460))


def mss_clamp_setup(lp: LoadedProgs) -> None:
    # BPF_PROG_TEST_RUN runs the program on loopback (ifindex 1) of the test's namespace.
    lp.maps[n.MSS].update(s.U32(value=1), s.U16(value=1360))


def mss_clamp_check(lp: LoadedProgs, res: P.Result) -> None:
    assert res.verdict == P.TC_ACT_OK
    assert P.mss_of(res.ip) == 1360
    assert P.parse(res.ip).src.startswith("242.0.0.")  # translated as well
    P.verify(res.ip)
    small = run_to(lp, P.tcp(POD, SERVER, 5557, 80, options=P.mss_option(1200)))
    assert P.mss_of(small.ip) == 1200  # already below: untouched
    P.verify(small.ip)


# -- ICMP errors: the quoted header follows its flow ------------------------------

def _quoted_tcp(src: str, dst: str, sport: int, dport: int) -> bytes:
    return P.tcp(src, dst, sport, dport, flags=P.ACK)


def icmp_error_ct_pktgen() -> bytes:
    return b""  # built in setup: it quotes the translated packet


_ct_error: dict[str, bytes] = {}


def icmp_error_ct_setup(lp: LoadedProgs) -> None:
    out = run_to(lp, P.tcp(POD, SERVER, 5555, 80))
    nat = P.parse(out.ip)
    _ct_error["pkt"] = P.icmp_error(ROUTER, nat.src, _quoted_tcp(nat.src, SERVER, nat.sport, 80))


def icmp_error_ct_check(lp: LoadedProgs, res: P.Result) -> None:
    assert res.verdict == P.TC_ACT_OK
    outer = P.parse(res.ip)
    assert (outer.src, outer.dst) == (ROUTER, POD)
    inner = P.parse(outer.payload[8:])
    assert (inner.src, inner.sport, inner.dst, inner.dport) == (POD, 5555, SERVER, 80)
    P.verify(res.ip)


def icmp_error_mapping_pktgen() -> bytes:
    return P.icmp_error(ROUTER, WEB_G, _quoted_tcp(WEB_G, CLIENT, 80, 40000))


def icmp_error_mapping_setup(lp: LoadedProgs) -> None:
    pass


def icmp_error_mapping_check(lp: LoadedProgs, res: P.Result) -> None:
    assert res.verdict == P.TC_ACT_OK
    outer = P.parse(res.ip)
    assert outer.dst == WEB_T
    inner = P.parse(outer.payload[8:])
    assert (inner.src, inner.sport, inner.dst) == (WEB_T, 80, CLIENT)
    P.verify(res.ip)


def icmp_error_reverse_pktgen() -> bytes:
    quoted = P.udp(CLIENT, WEB_T, 40000, 53)
    return P.icmp_error(WEB_T, CLIENT, quoted, code=3)  # port unreachable


def icmp_error_reverse_setup(lp: LoadedProgs) -> None:
    pass


def icmp_error_reverse_check(lp: LoadedProgs, res: P.Result) -> None:
    assert res.verdict == P.TC_ACT_OK
    outer = P.parse(res.ip)
    assert (outer.src, outer.dst) == (WEB_G, CLIENT)
    inner = P.parse(outer.payload[8:])
    assert (inner.src, inner.dst, inner.dport) == (CLIENT, WEB_G, 53)
    P.verify(res.ip)


def icmp_error_unknown_pktgen() -> bytes:
    return P.icmp_error(ROUTER, "242.0.20.20", _quoted_tcp("242.0.20.20", SERVER, 1, 2))


def icmp_error_unknown_setup(lp: LoadedProgs) -> None:
    pass


def icmp_error_unknown_check(lp: LoadedProgs, res: P.Result) -> None:
    assert res.verdict == P.TC_ACT_SHOT
    assert drops(lp, n.Drop.UNMAPPED) == 1


CASES: dict[str, Callable[[LoadedProgs, bytes], P.Result]] = {
    "ingress_tcp": run_from,
    "ingress_udp": run_from,
    "ingress_unexported_port": run_from,
    "ingress_unmapped": run_from,
    "ingress_not_ours": run_from,
    "ingress_later_fragment": run_from,
    "ingress_later_fragment_ported": run_from,
    "reverse_reply": run_to,
    "health_echo": run_from,
    "health_tcp": run_from,
    "egress_new_tcp": run_to,
    "egress_port_collision": run_to,
    "egress_echo": run_to,
    "egress_pod_group": run_to,
    "egress_headless": run_to,
    "headless_exported_port": run_from,
    "headless_unexported_port": run_from,
    "headless_own_connection": run_to,
    "headless_in_selector_group": run_to,
    "mss_clamp": run_to,
    "icmp_error_ct": run_from,
    "icmp_error_mapping": run_from,
    "icmp_error_reverse": run_to,
    "icmp_error_unknown": run_from,
}


def write_port_hint(lp: LoadedProgs, mode: str) -> None:
    """The port hint (names.PORT_HINT) as the backend derives it from the maps'
    port keys ("exact"), or wrong both ways: all bits clear or all set. It may
    only change the order of lookups, never a verdict or a rewrite."""
    if mode == "clear":
        return
    installed: elements.Elements = {macro: {elements.key_from_ctypes(macro, k): ()
                         for k in lp.maps[macro].walk_keys()}
                 for macro in (n.INGRESS, n.REVERSE)}
    words = elements.hint_words(installed)
    for word, bits in words.items():
        value = bits if mode == "exact" else (1 << 64) - 1
        lp.maps[n.PORT_HINT].update(s.U32(value=word), s.U64(value=value))


def write_slots(lp: LoadedProgs, mode: str) -> None:
    """The ingress slots (names.INGRESS_SLOT) as the backend derives them from the
    every-port ingress entries ("exact"), or none: the programs then find every
    entry in the hash, with the same verdicts and rewrites."""
    if mode == "none":
        return
    installed: elements.Elements = {n.INGRESS: {
        elements.key_from_ctypes(n.INGRESS, k): elements.value_from_ctypes(n.INGRESS, v)
        for k, v in lp.maps[n.INGRESS].items()}}
    for idx, entry in elements.slot_entries(installed).items():
        lp.maps[n.INGRESS_SLOT].update(s.U32(value=idx), elements.slot_to_ctypes(entry))


@pytest.mark.parametrize("slots", ["exact", "none"])
@pytest.mark.parametrize("hint", ["exact", "clear", "set"])
@pytest.mark.parametrize("case", list(CASES))
def test_bpf_case(bpf: LoadedProgs, case: str, hint: str, slots: str) -> None:
    pktgen = globals()[f"{case}_pktgen"]
    setup = globals()[f"{case}_setup"]
    check = globals()[f"{case}_check"]
    setup(bpf)
    write_port_hint(bpf, hint)
    write_slots(bpf, slots)
    pkt = pktgen() or _ct_error.pop("pkt")
    res = CASES[case](bpf, pkt)
    check(bpf, res)


def test_every_case_has_its_triplet() -> None:
    for case in CASES:
        for part in ("pktgen", "setup", "check"):
            assert callable(globals().get(f"{case}_{part}")), f"{case}_{part}"


def test_icmp_error_quoting_full_tcp_header_keeps_its_checksum(bpf: LoadedProgs) -> None:
    """The quoted TCP checksum is rewritten too when the error quotes that far."""
    pkt = icmp_error_mapping_pktgen()
    assert len(pkt) - 28 >= 40  # quoted IP + full TCP header
    res = run_from(bpf, pkt)
    inner = res.ip[28:]
    assert struct.unpack("!H", inner[20 + 16:20 + 18])[0] != struct.unpack(
        "!H", pkt[28 + 20 + 16:28 + 20 + 18])[0]
    P.verify(res.ip)


def test_an_every_port_entry_is_read_from_its_slot(bpf: LoadedProgs) -> None:
    """The program translates an every-port mapping from its ingress slot and counts
    the packet there; the hash copy is not read (here made to disagree, to prove it)."""
    slot = s.U32(value=elements.slot_index(HL_G))
    bpf.maps[n.INGRESS_SLOT].update(slot, elements.slot_to_ctypes((HL_G, "10.244.9.9", 0)))
    res = run_from(bpf, P.tcp(CLIENT, HL_G, 40000, 22))
    assert res.verdict == P.TC_ACT_OK
    assert P.parse(res.ip).dst == "10.244.9.9"
    P.verify(res.ip)
    raw = bpf.get(n.INGRESS_SLOT, slot)
    assert isinstance(raw, s.NatSlot) and raw.value.packets == 1
    hashed = bpf.get(n.INGRESS, s.NatKey(addr=s.be32(HL_G), proto=0, port=0))
    assert isinstance(hashed, s.NatValue) and hashed.packets == 0


def test_a_slot_claiming_another_address_is_passed_over(bpf: LoadedProgs) -> None:
    """An address whose low 16 bits share a slot with another's (a global CIDR wider
    than a /16), or an unclaimed slot, is found in the hash."""
    other = "242.7.3.30"  # same low 16 bits as HL_G
    slot = s.U32(value=elements.slot_index(HL_G))
    assert elements.slot_index(other) == slot.value
    for entry, claimed in (((other, "10.244.9.9", 0), True), ((HL_G, "10.244.9.9", 0), False)):
        bpf.maps[n.INGRESS_SLOT].update(slot, elements.slot_to_ctypes(entry, claimed=claimed))
        res = run_from(bpf, P.tcp(CLIENT, HL_G, 40000, 22))
        assert res.verdict == P.TC_ACT_OK
        assert P.parse(res.ip).dst == HL_T
    assert nat_counter(bpf, n.INGRESS, HL_G, 0, 0) == 2


def test_a_slotted_headless_target_still_admits_exported_ports_only(bpf: LoadedProgs) -> None:
    """A flagged every-port entry read from its slot keeps GN_NAT_F_ADMIT_PORTS."""
    write_slots(bpf, "exact")
    assert run_from(bpf, P.tcp(CLIENT, HLX_G, 40000, 9999)).verdict == P.TC_ACT_SHOT
    assert drops(bpf, n.Drop.NOT_EXPORTED) == 1
    res = run_from(bpf, P.tcp(CLIENT, HLX_G, 40000, 7070))
    assert res.verdict == P.TC_ACT_OK and P.parse(res.ip).dst == HLX_T
