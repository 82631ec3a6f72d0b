"""ClusterSetIP routing with real packets: a pod's connections to a VIP reach the local
service through kube-proxy or a remote cluster's global IP through the gateways.

The two clusters of nat_topology.py (same pod and service CIDRs; kube-proxy-shaped
iptables-nft rules on every node, the nftables Globalnet datapath on both
gateways). The VIP table (``datapath.nftables.clustersetip``) is on cluster a's node
n2, where the client pod ``ns`` lives. Which cluster answered shows in the source
the server saw: the pod's own IP in a, a's global egress IP in b.

Address conventions: VIP 244.0.0.7 for service web (tcp/80, udp/53): a's ClusterIP
10.96.0.10, b's global IP 242.1.10.1; 244.0.0.8 is a VIP no table holds.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import pytest

from datapath.nftables import NftablesDatapath
from datapath.nftables.clustersetip import VipBackend, VipService, VipTable
from tests.netns import nat_topology as nt

pytestmark = pytest.mark.privileged

VIP = "244.0.0.7"
WEB_B = nt.global_ip("b", "10.1")
LOCAL = VipBackend("a", nt.WEB_CLUSTER_IP, weight=1, local=True)
REMOTE = VipBackend("b", WEB_B, weight=3)


def web(*backends: VipBackend) -> VipService:
    return VipService(vip=VIP, owner="shop/web", ports=(("tcp", 80), ("udp", 53)),
                      backends=backends)


@pytest.fixture(scope="module")
def topo() -> Iterator[nt.Topology]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces and nftables")
    with nt.topology() as t:
        backends = {c: NftablesDatapath(netns=t.gateway(c)) for c in ("a", "b")}
        for c, backend in backends.items():
            backend.apply(nt.intent(c))
        try:
            yield t
        finally:
            for backend in backends.values():
                backend.cleanup()


@pytest.fixture
def table(topo: nt.Topology) -> Iterator[VipTable]:
    vips = VipTable(topo.ns("a", "n2"))
    yield vips
    vips.delete()


def cluster_of(seen: str) -> str:
    """Which cluster's web answered, from the client address its server saw."""
    if seen == nt.POD["ns"].ip:
        return "a"
    assert seen.startswith(nt.GLOBAL["a"] + "."), f"b's server saw {seen}, not a global IP"
    return "b"


def test_connections_spread_by_weight_and_replies_come_from_the_vip(
        topo: nt.Topology, table: VipTable) -> None:
    table.apply([web(LOCAL, REMOTE)])
    answered = Counter(cluster_of(topo.tcp_echo("a", "ns", VIP, 80)[1]) for _ in range(80))
    # 1:3 expected; 80 draws put b's share in [0.55, 0.95] with overwhelming odds.
    assert set(answered) == {"a", "b"} and 44 <= answered["b"] <= 76, answered
    replies = [topo.udp_echo("a", "ns", VIP, 53) for _ in range(12)]
    assert {src for _, _, src in replies} == {(VIP, 53)}  # the VIP, whichever cluster
    assert {cluster_of(seen) for _, seen, _ in replies} == {"a", "b"}
    assert topo.ping("a", "ns", VIP)
    # Only the table's VIPs are translated.
    assert nt.connect_all(topo, "a", "ns", [("244.0.0.8", 80)])[("244.0.0.8", 80)].startswith(
        "error")


def test_established_connections_keep_their_cluster_when_the_table_changes(
        topo: nt.Topology, table: VipTable) -> None:
    """A cluster dropped from the table gets no new connections; the connections it
    has keep working, and so do those to the cluster that stays."""
    table.apply([web(LOCAL, REMOTE)])
    flows: dict[str, nt.EchoFlow] = {}
    for _ in range(60):
        flow = topo.open_flow("a", "ns", VIP, 80)
        where = cluster_of(flow.echo()[1])
        if where in flows:
            flow.close()
        else:
            flows[where] = flow
        if len(flows) == 2:
            break
    assert set(flows) == {"a", "b"}
    try:
        table.apply([web(LOCAL)])  # b drops out (unexported, or its gateway is cut off)
        assert {cluster_of(topo.tcp_echo("a", "ns", VIP, 80)[1]) for _ in range(12)} == {"a"}
        for where, flow in flows.items():
            assert cluster_of(flow.echo()[1]) == where
        table.apply([web()])  # nobody left: new connections are dropped, not leaked
        failed = nt.connect_all(topo, "a", "ns", [(VIP, 80)], timeout=0.5)[(VIP, 80)]
        assert failed.startswith("error"), failed
        assert cluster_of(flows["a"].echo()[1]) == "a"
    finally:
        for flow in flows.values():
            flow.close()


def test_the_listing_names_the_service_and_its_shares(topo: nt.Topology,
                                                      table: VipTable) -> None:
    table.apply([web(LOCAL, REMOTE)])
    listing = table.listing()
    assert 'comment "shop/web 244.0.0.7: a (local) 1, b 3"' in listing
    assert "numgen random mod 4" in listing
    assert table.delete() and table.listing() == "" and not table.delete()
