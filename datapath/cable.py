"""What every cable driver offers the gateway engine, so that the engine knows no driver.

A *cable* is the tunnel of one gateway node (a network namespace, or our own) to
the other clusters' active gateways. The engine hands it the remote gateways it
should reach (from their Endpoints) and asks it three things: converge to exactly
those (by difference, so a restart changes nothing that is right), tear down
(another gateway of the cluster is active now), and report each connection's
state as the driver sees it (WireGuard's handshakes and counters), beside the
engine's own ICMP health check. Drivers: `datapath.vxlan` and `datapath.wireguard`,
chosen by name through `datapath.cable_drivers`.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from datapath.routes import ConvergeResult


class CableError(RuntimeError):
    """The cable cannot be built as asked (one line, for the log and the status)."""


@dataclass(frozen=True)
class RemoteGateway:
    private_ip: str  # where the remote cable end listens
    subnets: tuple[str, ...]  # what is routed to it
    # The remote Endpoint's `backend_config` (WireGuard: its publicKey and udp-port),
    # as sorted pairs so the value stays hashable.
    backend_config: tuple[tuple[str, str], ...] = ()

    def config(self, key: str) -> str | None:
        return dict(self.backend_config).get(key)


@dataclass(frozen=True)
class PeerState:
    """The driver's own view of one connection (WireGuard: `wg show DEV dump`)."""

    latest_handshake: int  # Unix seconds; 0: never
    rx_bytes: int
    tx_bytes: int
    endpoint: str  # where the driver sends to now ("" when unknown)
    # The driver's own word for the connection, where it has one (IPsec: the IKE
    # and child SA states, "ESTABLISHED/INSTALLED"); "" when it has none.
    state: str = ""


class Cable(Protocol):
    """The shape the gateway engine drives; `driver` is what the Endpoint's `backend`
    records, and only cables of the same driver connect to each other."""

    driver: str
    netns: str | None

    def implementation(self) -> str:
        """Who carries the packets: "kernel", or the userspace daemon's name."""
        ...

    def backend_config(self) -> dict[str, str]:
        """What the local Endpoint publishes for the remote ends (keys, ports)."""
        ...

    def tunnel_ip(self, private_ip: str) -> str:
        """The tunnel address of the gateway whose underlay IP is `private_ip`."""
        ...

    def unusable(self, remote: RemoteGateway) -> str | None:
        """Why this driver cannot connect to `remote` (say, no public key), or None."""
        ...

    def converge(self, remotes: list[RemoteGateway]) -> ConvergeResult:
        """Tunnel to exactly `remotes`, routing each one's subnets through it."""
        ...

    def peers(self) -> dict[str, PeerState]:
        """Connection state per remote private IP (empty: the driver has none)."""
        ...

    def exists(self) -> bool:
        ...

    def remove(self) -> None:
        """Delete the device, its routes and whatever runs it."""
        ...


def configure_device(ipr: Any, index: int, address: str, prefixlen: int, mtu: int) -> None:
    """Give a cable's device (by index) its tunnel address, its MTU and bring it up;
    what every driver does once its device exists (`ipr`: a pyroute2 IPRoute)."""
    have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index, family=socket.AF_INET)}
    if address not in have:
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
    ipr.link("set", index=index, mtu=mtu, state="up")


class UnderlayLink:
    """Whether the link that holds a gateway's cable address is up with carrier:
    the gateway election's eligibility (a gateway cut off the underlay must hand
    over even while it still reaches its API server). One netlink socket, kept."""

    def __init__(self, local_ip: str, netns: str | None = None) -> None:
        self.local_ip, self.netns = local_ip, netns
        self._ipr: Any = None
        self._lock = threading.Lock()  # asked by the elector and the engine's loop

    def up(self) -> bool:
        with self._lock:
            return self._up()

    def _up(self) -> bool:
        from datapath.netlink import IPRoute

        try:
            if self._ipr is None:
                self._ipr = IPRoute(netns=self.netns) if self.netns else IPRoute()
            addrs = self._ipr.get_addr(address=self.local_ip)
            if not addrs:
                return False
            link = self._ipr.get_links(int(addrs[0]["index"]))[0]
        except Exception:  # a broken socket: open a new one next time
            self.close()
            raise
        return (link.get_attr("IFLA_OPERSTATE") in ("UP", "UNKNOWN")
                and link.get_attr("IFLA_CARRIER") != 0)

    def close(self) -> None:
        if self._ipr is not None:
            ipr, self._ipr = self._ipr, None
            ipr.close()
