"""The VXLAN cable: the tunnel between the active gateways of the clusterset.

One VXLAN device per gateway node, `vx-globalnet` (VNI 100, UDP 4800), with a
tunnel address 240.a.b.c/8 taken from the low 24 bits of the node's underlay
(private) IP, as upstream's vxlan cable driver does. Each remote gateway is an
all-zero FDB entry (flooding to it resolves its tunnel address) and each remote
cluster's subnets are routes via its tunnel address (`proto 150`, through
`datapath.routes`, so nobody else's routes are touched). Only global IPs cross
it under Globalnet; the overlapping pod and service CIDRs never do. No
encryption: VXLAN is upstream's unencrypted cable (`datapath.wireguard` is the
encrypted one).

`converge()` is by difference: a restart changes nothing that is right, and a
remote gateway gone is removed from the FDB and the routes. It is the `vxlan`
driver of `datapath.cable.Cable`.
"""

from __future__ import annotations

import logging

import netaddr

from datapath.cable import PeerState, RemoteGateway, configure_device
from datapath.netlink import IPRoute
from datapath.routes import ConvergeResult, Route, cable_routes

# RemoteGateway lives in datapath.cable now, shared by every driver; still here too.
__all__ = ["IFNAME", "OVERHEAD", "PORT", "TUNNEL_NET", "VNI", "ZERO_MAC", "RemoteGateway",
           "VxlanCable", "tunnel_ip"]

log = logging.getLogger(__name__)

IFNAME = "vx-globalnet"
VNI = 100
PORT = 4800
TUNNEL_NET = netaddr.IPNetwork("240.0.0.0/8")
ZERO_MAC = "00:00:00:00:00:00"
OVERHEAD = 50  # outer IPv4 + UDP + VXLAN + inner Ethernet


def tunnel_ip(private_ip: str) -> str:
    """240.x.y.z: the tunnel address of the gateway whose underlay IP is w.x.y.z."""
    return str(netaddr.IPAddress(int(TUNNEL_NET.network) | (int(netaddr.IPAddress(private_ip))
                                                           & 0xFFFFFF)))


class VxlanCable:
    """The cable of one gateway node (a network namespace, or our own)."""

    driver = "vxlan"

    def __init__(self, local_ip: str, *, netns: str | None = None, mtu: int = 1500) -> None:
        self.local_ip = local_ip
        self.netns = netns
        self.mtu = mtu - OVERHEAD
        self.routes = cable_routes(netns)

    def _ipr(self) -> IPRoute:
        return IPRoute(netns=self.netns) if self.netns else IPRoute()

    def implementation(self) -> str:
        return "kernel"

    def backend_config(self) -> dict[str, str]:
        return {}  # the remote end needs nothing but our underlay IP

    def tunnel_ip(self, private_ip: str) -> str:
        return tunnel_ip(private_ip)

    def unusable(self, remote: RemoteGateway) -> str | None:
        return None

    def peers(self) -> dict[str, PeerState]:
        return {}  # VXLAN has no connection state; the health ping is all there is

    def _ensure_device(self, ipr: IPRoute) -> int:
        found = ipr.link_lookup(ifname=IFNAME)
        if not found:
            ipr.link("add", ifname=IFNAME, kind="vxlan", vxlan_id=VNI, vxlan_port=PORT,
                     vxlan_local=self.local_ip, vxlan_learning=True)
            found = ipr.link_lookup(ifname=IFNAME)
            log.info("created %s (VNI %d, UDP %d, local %s)", IFNAME, VNI, PORT, self.local_ip)
        index = int(found[0])
        configure_device(ipr, index, tunnel_ip(self.local_ip), TUNNEL_NET.prefixlen, self.mtu)
        return index

    def _fdb(self, ipr: IPRoute, index: int) -> list[tuple[str, str]]:
        """(MAC, remote VTEP) of every FDB entry: ours (all-zero MAC) and learned."""
        return [(str(e.get_attr("NDA_LLADDR")), str(e.get_attr("NDA_DST")))
                for e in ipr.fdb("dump", ifindex=index) if e.get_attr("NDA_DST")]

    def converge(self, remotes: list[RemoteGateway]) -> ConvergeResult:
        """Tunnel to exactly `remotes`, routing each one's subnets through it."""
        wanted_vteps = {r.private_ip for r in remotes if r.private_ip != self.local_ip}
        with self._ipr() as ipr:
            index = self._ensure_device(ipr)
            entries = self._fdb(ipr, index)
            have = {dst for mac, dst in entries if mac == ZERO_MAC}
            for mac, dst in entries:  # a remote gone: its entry and what was learned
                if dst not in wanted_vteps:
                    ipr.fdb("del", ifindex=index, lladdr=mac, dst=dst)
            for vtep in sorted(wanted_vteps - have):
                ipr.fdb("append", ifindex=index, lladdr=ZERO_MAC, dst=vtep)
        return self.routes.converge({
            Route(subnet, tunnel_ip(r.private_ip))
            for r in remotes if r.private_ip != self.local_ip for subnet in r.subnets})

    def exists(self) -> bool:
        with self._ipr() as ipr:
            return bool(ipr.link_lookup(ifname=IFNAME))

    def remove(self) -> None:
        """Delete the device and our routes (another gateway is active now)."""
        self.routes.clear()
        with self._ipr() as ipr:
            for index in ipr.link_lookup(ifname=IFNAME):
                ipr.link("del", index=index)
