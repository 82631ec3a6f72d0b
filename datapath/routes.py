"""Routes of ours in a kernel routing table, told apart by their protocol number.

The route agent (`gateway/routeagent.py`) decides which routes a node needs;
this module makes the kernel hold exactly those, by difference: routes carry
`proto 149` (`ip route show proto 149` lists them), so ours are found without
bookkeeping, a restart changes nothing that is already right, and a route of
anyone else - even one for the same destination - is never replaced or
removed. A conflicting foreign route is reported instead. Each owner has its
own number: the route agent 149, the gateway engine's cable 150, so the two
never remove each other's routes on a gateway node.

One handover is the exception, a gateway node changing role: the route agent's
route to the old active gateway and the new cable's route are for the same
destinations. The cable, whose engine holds the gateway Lease, takes them over
at once (`cable_routes`: it overrides proto 149), whatever the route agent has
seen yet; the route agent, the other way round, waits for the deposed cable's
routes to go and is told the moment they do (`RouteEvents` watching every route
to a destination it wants): a node's traffic never waits for a periodic round
at a failover.
"""

from __future__ import annotations

import logging
import select
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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

    def __init__(self, netns: str | None = None, *, proto: int = RTPROT_GLOBALNET,
                 overrides: frozenset[int] = frozenset()) -> None:
        """``overrides``: owners whose routes to a destination we want are replaced
        by ours rather than reported as conflicts."""
        self.netns = netns
        self.proto = proto
        self.overrides = overrides

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
            foreign = {dst for dst, _, proto in current
                       if proto != self.proto and proto not in self.overrides}
            for route in sorted(ours - wanted):
                ipr.route("del", dst=route.dst, gateway=route.via, proto=self.proto)
                result.removed.append(route)
            for route in sorted(wanted - ours):
                if route.dst in foreign:
                    result.conflicts.append(route.dst)
                    continue
                # `replace`: a route of ours to the same destination via another hop
                # was removed above, so this overwrites nobody's but an overridden
                # owner's.
                ipr.route("replace", dst=route.dst, gateway=route.via, proto=self.proto)
                result.added.append(route)
        for dst in result.conflicts:
            log.warning("not routing %s: a route that is not ours already covers it", dst)
        return result

    def clear(self) -> int:
        """Remove every route of ours."""
        return self.converge(set()).changes


def cable_routes(netns: str | None = None) -> RouteTable:
    """The gateway engine's routes into its cable: they take over the route agent's
    for the same destinations (the node is the active gateway now; see above)."""
    return RouteTable(netns, proto=RTPROT_CABLE, overrides=frozenset({RTPROT_GLOBALNET}))


class RouteEvents:
    """The kernel's IPv4 route change notifications in one namespace, so an owner
    can put back a route of its that someone deleted within moments, not at its
    next periodic check, and take a destination the moment another owner lets it go.
    `changed(timeout)`: whether any route of `proto`, or any route to one of
    `destinations()`, changed. An owner's `destinations` gives what it wants, updated
    *before* it reads the table to converge: a change after that read is seen,
    however soon it comes. (Use it from the thread that made it: pyroute2's socket
    belongs to one.)"""

    def __init__(self, netns: str | None = None, *, proto: int = RTPROT_GLOBALNET,
                 destinations: Callable[[], frozenset[str]] = frozenset) -> None:
        self.proto = proto
        self.destinations = destinations
        self._ipr = IPRoute(netns=netns) if netns else IPRoute()
        self._ipr.bind(groups=RTMGRP_IPV4_ROUTE)

    def changed(self, timeout: float) -> bool:
        ready, _, _ = select.select([self._ipr.fileno()], [], [], timeout)
        if not ready:
            return False
        return any(self._concerns(msg) for msg in self._ipr.get())

    def _concerns(self, msg: Any) -> bool:
        if int(msg.get("proto", -1)) == self.proto:
            return True
        destinations = self.destinations()
        dst = msg.get_attr("RTA_DST") if destinations else None
        return dst is not None and f"{dst}/{msg['dst_len']}" in destinations

    def close(self) -> None:
        self._ipr.close()

