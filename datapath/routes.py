"""Routes of ours in a kernel routing table, told apart by their protocol number.

The route agent (`gateway/routeagent.py`) decides which routes a node needs;
this module makes the kernel hold exactly those, by difference: routes carry
`proto 149` (`ip route show proto 149` lists them), so ours are found without
bookkeeping, a restart changes nothing that is already right, and a route of
anyone else - even one for the same destination - is never replaced or
removed. A conflicting foreign route is reported instead. Each owner has its
own number: the route agent 149, the gateway engine's cable 150, so the two
never remove each other's routes on a gateway node.
"""

from __future__ import annotations

import logging
import select
import socket
from dataclasses import dataclass, field

from datapath.netlink import RTMGRP_IPV4_ROUTE, IPRoute

log = logging.getLogger(__name__)

RTPROT_GLOBALNET = 149  # the route agent's routes (upstream's route agent table number)
RTPROT_CABLE = 150  # the gateway engine's routes into the cable
RT_TABLE_MAIN = 254


@dataclass(frozen=True, order=True)
class Route:
    """`dst` (a CIDR) via the next hop `via`."""

    dst: str
    via: str


@dataclass
class ConvergeResult:
    added: list[Route] = field(default_factory=list)
    removed: list[Route] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # destinations someone else routes

    @property
    def changes(self) -> int:
        return len(self.added) + len(self.removed)


class RouteTable:
    """Our routes in one network namespace's main table (IPv4)."""

    def __init__(self, netns: str | None = None, *, proto: int = RTPROT_GLOBALNET) -> None:
        self.netns = netns
        self.proto = proto

    def _ipr(self) -> IPRoute:
        return IPRoute(netns=self.netns) if self.netns else IPRoute()

    def _dump(self, ipr: IPRoute) -> list[tuple[str, str, int]]:
        out = []
        for msg in ipr.get_routes(family=socket.AF_INET, table=RT_TABLE_MAIN):
            dst = msg.get_attr("RTA_DST")
            if dst is None:
                continue  # the default route is never ours
            out.append((f"{dst}/{msg['dst_len']}", msg.get_attr("RTA_GATEWAY") or "",
                        int(msg["proto"])))
        return out

    def installed(self) -> set[Route]:
        with self._ipr() as ipr:
            return {Route(dst, via) for dst, via, proto in self._dump(ipr) if proto == self.proto}

    def converge(self, wanted: set[Route]) -> ConvergeResult:
        """Make our routes `wanted`, touching nothing else."""
        result = ConvergeResult()
        with self._ipr() as ipr:
            current = self._dump(ipr)
            ours = {Route(dst, via) for dst, via, proto in current if proto == self.proto}
            foreign = {dst for dst, _, proto in current if proto != self.proto}
            for route in sorted(ours - wanted):
                ipr.route("del", dst=route.dst, gateway=route.via, proto=self.proto)
                result.removed.append(route)
            for route in sorted(wanted - ours):
                if route.dst in foreign:
                    result.conflicts.append(route.dst)
                    continue
                # `replace`: a route of ours to the same destination via another hop
                # was removed above, so this never overwrites anyone else's.
                ipr.route("replace", dst=route.dst, gateway=route.via, proto=self.proto)
                result.added.append(route)
        for dst in result.conflicts:
            log.warning("not routing %s: a route that is not ours already covers it", dst)
        return result

    def clear(self) -> int:
        """Remove every route of ours."""
        return self.converge(set()).changes


class RouteEvents:
    """The kernel's IPv4 route change notifications in one namespace, so an owner
    can put back a route of its that someone deleted within moments, not at its
    next periodic check. `changed(timeout)`: whether any of `proto` changed."""

    def __init__(self, netns: str | None = None, *, proto: int = RTPROT_GLOBALNET) -> None:
        self.proto = proto
        self._ipr = IPRoute(netns=netns) if netns else IPRoute()
        self._ipr.bind(groups=RTMGRP_IPV4_ROUTE)

    def changed(self, timeout: float) -> bool:
        ready, _, _ = select.select([self._ipr.fileno()], [], [], timeout)
        if not ready:
            return False
        return any(int(msg.get("proto", -1)) == self.proto for msg in self._ipr.get())

    def close(self) -> None:
        self._ipr.close()

