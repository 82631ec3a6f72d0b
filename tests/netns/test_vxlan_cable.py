"""The VXLAN cable between two gateway namespaces on one underlay: remote
subnets reach the other side through the tunnel, by difference, and go away.
Addresses: underlay 198.18.9.1/.2, tunnel 240.18.9.1/.2, subnets 242.x.0.0/16
(a 242.x.0.1 address on each side's loopback stands for the cluster)."""

from __future__ import annotations

from collections.abc import Callable

from datapath.vxlan import IFNAME, RemoteGateway, VxlanCable, tunnel_ip
from lab import netns


def test_tunnel_ip_keeps_the_low_24_bits() -> None:
    assert tunnel_ip("198.18.0.10") == "240.18.0.10"


def test_two_gateways_reach_each_others_subnets_through_the_cable(
        make_netns: Callable[[str], str]) -> None:
    a, b = make_netns("gwa"), make_netns("gwb")
    netns.ensure_veth(netns=a, ifname="ul0", peer_netns=b, peer_ifname="ul0",
                      address="198.18.9.1/24", peer_address="198.18.9.2/24")
    for ns, own in ((a, "242.1.0.1"), (b, "242.2.0.1")):
        netns.run(ns, ["ip", "link", "set", "lo", "up"])
        netns.run(ns, ["ip", "addr", "add", f"{own}/32", "dev", "lo"])
    cable_a, cable_b = VxlanCable("198.18.9.1", netns=a), VxlanCable("198.18.9.2", netns=b)
    first = cable_a.converge([RemoteGateway("198.18.9.2", ("242.2.0.0/16",))])
    assert [r.dst for r in first.added] == ["242.2.0.0/16"]
    cable_b.converge([RemoteGateway("198.18.9.1", ("242.1.0.0/16",)),
                      RemoteGateway("198.18.9.2", ("242.2.0.0/16",))])  # itself: ignored
    # From a's cluster address to b's, through the tunnel (not the underlay route).
    out = netns.run(a, ["ping", "-c", "2", "-W", "2", "-I", "242.1.0.1", "242.2.0.1"])
    assert " 0% packet loss" in out
    assert "via 240.18.9.2 dev vx-globalnet" in netns.run(a, ["ip", "route", "get", "242.2.0.1"])
    assert "proto 150" in netns.run(a, ["ip", "route", "show", "242.2.0.0/16"])
    assert "mtu 1450" in netns.run(a, ["ip", "link", "show", IFNAME])
    # Again: nothing changes. The remote gone: its route and FDB entries go too -
    # what a learned from b as well. b stops first: while its device is up it keeps
    # flooding (IPv6 router solicitations, MLD) to a, which would learn b again.
    assert cable_a.converge([RemoteGateway("198.18.9.2", ("242.2.0.0/16",))]).changes == 0
    cable_b.remove()
    gone = cable_a.converge([])
    assert [r.dst for r in gone.removed] == ["242.2.0.0/16"]
    assert "198.18.9.2" not in netns.run(a, ["bridge", "fdb", "show", "dev", IFNAME])
    cable_a.remove()
    assert IFNAME not in netns.run(a, ["ip", "link"])
