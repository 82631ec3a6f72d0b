"""Packet flows through the ruleset model (`trace_packet`), and tests of the tracer.

One table of named flows runs against the base intent; each flow states the
packet as it reaches the gateway and what must come out. kube-proxy and routing
are not modelled: "rewrote daddr to the ClusterIP" is where kube-proxy takes over.

Address conventions: see tests/unit/test_nft_fixtures.py. A remote client is
242.1.0.5; local pods are 10.244.x.y; 8.8.8.8 stands for the outside world.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from datapath.nftables import NftablesDatapath
from datapath.nftables import names as n
from datapath.nftables.fake import FakeNft, Packet, trace_packet
from tests.unit import test_nft_fixtures as fx


@dataclass(frozen=True)
class Flow:
    packet: Packet
    src: str  # after our chains
    dst: str
    verdict: str = "accept"
    snat: str = ""
    mark: int = 0


REMOTE = "242.1.0.5"
FLOWS: dict[str, Flow] = {
    "remote to exported service port": Flow(
        Packet(REMOTE, "242.0.10.1", dport=80, mark=0x4000), REMOTE, "10.96.0.10"),
    "remote to unexported port of the service": Flow(
        Packet(REMOTE, "242.0.10.1", dport=22), REMOTE, "242.0.10.1", verdict="drop"),
    "remote to headless pod, any port": Flow(
        Packet(REMOTE, "242.0.3.10", proto="udp", dport=5353), REMOTE, "10.244.1.30"),
    "remote ping to headless pod": Flow(
        Packet(REMOTE, "242.0.3.10", proto="icmp", dport=0), REMOTE, "10.244.1.30"),
    "remote to unallocated global IP": Flow(
        Packet(REMOTE, "242.0.77.7"), REMOTE, "242.0.77.7", verdict="drop"),
    "remote ping to health-check IP": Flow(
        Packet(REMOTE, "242.0.255.254", proto="icmp", dport=0), REMOTE, "242.0.255.254",
        verdict="local"),
    "reply from exported service": Flow(
        Packet("10.96.0.10", REMOTE, sport=80, dport=40000, syn=False, new=False),
        "242.0.10.1", REMOTE),
    "reply from headless pod": Flow(
        Packet("10.244.1.30", REMOTE, sport=5353, dport=40000, proto="udp", new=False),
        "242.0.3.10", REMOTE),
    "pod to remote via cluster egress": Flow(
        Packet("10.244.0.9", "242.1.10.1"), "242.0.0.1", "242.1.10.1", snat="242.0.0.1-242.0.0.8"),
    "pod to remote via namespace egress": Flow(
        Packet("10.244.0.20", "242.1.10.1"), "242.0.1.1", "242.1.10.1", snat="242.0.1.1-242.0.1.2"),
    "pod-selector beats namespace": Flow(
        Packet("10.244.0.21", "242.1.10.1"), "242.0.2.1", "242.1.10.1", snat="242.0.2.1-242.0.2.1"),
    "headless pod leaves with its own global IP": Flow(
        Packet("10.244.1.30", "242.1.10.1"), "242.0.3.10", "242.1.10.1"),  # 1:1, no SNAT
    "reply to a pod's egress connection is not dropped": Flow(  # conntrack: not new
        Packet("242.1.10.1", "242.0.0.1", sport=80, syn=False, new=False),
        "242.1.10.1", "242.0.0.1"),
    "pod to local pod untouched": Flow(Packet("10.244.0.9", "10.244.1.7"), "10.244.0.9",
                                       "10.244.1.7"),
    "pod to local ClusterIP untouched": Flow(Packet("10.244.0.9", "10.96.0.10"), "10.244.0.9",
                                             "10.96.0.10"),
    "pod to the internet untouched": Flow(Packet("10.244.0.9", "8.8.8.8"), "10.244.0.9", "8.8.8.8"),
    "local ClusterIP reply to local pod untouched": Flow(
        Packet("10.96.0.10", "10.244.0.9", sport=80, syn=False, new=False), "10.96.0.10",
        "10.244.0.9"),
    "outside client to global IP is not translated": Flow(
        Packet("8.8.8.8", "242.0.10.1"), "8.8.8.8", "242.0.10.1", verdict="drop"),
}


@pytest.fixture(scope="module")
def nft() -> FakeNft:
    fake = FakeNft()
    NftablesDatapath(client=fake).apply(fx.intent())
    return fake


@pytest.mark.parametrize("name", list(FLOWS))
def test_packet_flow(nft: FakeNft, name: str) -> None:
    flow = FLOWS[name]
    trace = trace_packet(nft, flow.packet)
    assert (trace.packet.src, trace.packet.dst, trace.verdict, trace.snat) == (
        flow.src, flow.dst, flow.verdict, flow.snat), trace.rules
    assert trace.packet.mark == flow.mark


def test_kube_proxy_mark_is_cleared_only_for_remote_sources(nft: FakeNft) -> None:
    local = trace_packet(nft, Packet("10.244.0.9", "10.96.0.10", mark=0x4000))
    assert local.packet.mark == 0x4000
    remote = trace_packet(nft, Packet(REMOTE, "242.0.10.1", mark=0x4001))
    assert remote.packet.mark == 0x0001


def test_mss_is_clamped_toward_remote_clusters_only(nft: FakeNft) -> None:
    assert trace_packet(nft, Packet("10.244.0.9", "242.1.10.1")).mss_clamped
    assert not trace_packet(nft, Packet("10.244.0.9", "10.244.1.7")).mss_clamped


def test_tracer_rejects_rules_it_does_not_know(nft: FakeNft) -> None:
    fake = FakeNft()
    NftablesDatapath(client=fake).apply(fx.intent())
    assert fake.table is not None
    fake.table.chains[n.RAW_PREROUTING].rules.append("ip daddr 242.0.0.1 dnat ip to 10.0.0.1")
    with pytest.raises(AssertionError, match="unmatched rule"):
        trace_packet(fake, Packet(REMOTE, "242.0.10.1"))


def test_tracer_reports_the_rules_that_acted(nft: FakeNft) -> None:
    trace = trace_packet(nft, Packet(REMOTE, "242.0.10.1", dport=80))
    assert [r.split(":")[0] for r in trace.rules] == [
        n.RAW_PREROUTING,  # daddr rewritten (exported port)
        n.NAT_POSTROUTING,  # masquerade bit cleared, returned
        n.FILTER_POSTROUTING,  # returned: likewise
    ]
