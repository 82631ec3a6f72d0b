"""The route agent: every non-gateway node sends clusterset traffic to the gateway.

Runs on every node of a cluster. From the Node objects it learns the active
gateway node (label `kube.names.GATEWAY_LABEL`; with several, the holder of
the gateway Lease - the engines' election, seen the moment it changes hands -
else the one a Gateway object calls active, else the oldest) and its
InternalIP; from the
`Cluster` objects (kept by the Broker syncer) the other members' CIDRs - their
global CIDRs under Globalnet, else their pod and service CIDRs. It then holds
exactly one route per remote CIDR via the gateway node (`datapath.routes`,
`proto 149`); on the gateway node itself it holds none (the gateway engine
routes from there). Any change of nodes or clusters reconverges at once, and so
does any change to a route of ours in the kernel (netlink notifications): a
route deleted by hand is back within moments, and a destination the deposed
gateway's cable still routes is ours the moment its engine lets it go. A
periodic check remains. It also applies the cluster's ClusterSetIP VIP table on
its node (``gateway.viptable``).

    python -m gateway.routeagent --kubeconfig K --node-name N --cluster-id C [--netns NS]
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from datapath import netns
from datapath.ctsync import ConntrackSyncError, Standby
from datapath.routes import Route, RouteEvents, RouteTable, cable_routes
from gateway import metrics, viptable
from kube import daemon, names, resources
from kube import objects as o
from kube.informers import InformerSet
from kube.leaderelection import holder_of

log = logging.getLogger(__name__)

JSON = dict[str, Any]


def active_gateway(nodes: Iterable[JSON], gateways: Iterable[JSON] = (),
                   lease_holder: str = "") -> JSON | None:
    """The node remote traffic leaves by; None when the cluster has no gateway."""
    candidates = [n for n in nodes
                  if o.labels(n).get(names.GATEWAY_LABEL) == names.GATEWAY_LABEL_VALUE
                  and o.internal_ip(n)]
    active = {o.name(g) for g in gateways if o.status(g).get("haStatus") == "active"}
    chosen = ([n for n in candidates if o.name(n) == lease_holder]
              or [n for n in candidates if o.name(n) in active] or candidates)
    if not chosen:
        return None
    return min(chosen, key=lambda n: (o.meta(n).get("creationTimestamp") or "", o.name(n)))


def desired_routes(node_name: str, cluster_id: str, nodes: Iterable[JSON],
                   clusters: Iterable[JSON], gateways: Iterable[JSON] = (),
                   lease_holder: str = "") -> set[Route]:
    gateway = active_gateway(nodes, gateways, lease_holder)
    if gateway is None or o.name(gateway) == node_name:
        return set()
    via = o.internal_ip(gateway)
    assert via is not None
    return {Route(cidr, via) for cidr in o.remote_cidrs(cluster_id, clusters)}


class RouteAgent:
    """Informers -> desired routes -> `RouteTable.converge`, on every change."""

    def __init__(self, api: Any, *, node_name: str, cluster_id: str,
                 table: RouteTable, check_period: float = 30.0, vips: bool = True) -> None:
        self.node_name, self.cluster_id, self.table = node_name, cluster_id, table
        self.check_period = check_period
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self.informers = InformerSet(api, name=f"routeagent@{node_name}")
        self.nodes = self.informers.get(resources.NODES)
        self.clusters = self.informers.get(resources.CLUSTERS,
                                           namespace=names.CLUSTER_NAMESPACE)
        self.gateways = self.informers.get(resources.GATEWAYS,
                                           namespace=names.CLUSTER_NAMESPACE)
        self.leases = self.informers.get(resources.LEASES, namespace=names.CLUSTER_NAMESPACE)
        for informer in (self.nodes, self.clusters, self.gateways):
            informer.add_handler(on_add=lambda _o: self._dirty.set(),
                                 on_update=lambda _a, _b: self._dirty.set(),
                                 on_delete=lambda _o: self._dirty.set())
        # Renewals change a Lease several times a second: only a new holder counts.
        self.leases.add_handler(
            on_add=lambda _o: self._dirty.set(), on_delete=lambda _o: self._dirty.set(),
            on_update=lambda a, b: self._dirty.set() if holder_of(a) != holder_of(b) else None)
        self.vips = viptable.VipTableFollower(self.informers, table.netns) if vips else None
        self._thread: threading.Thread | None = None
        self._leftovers_cleared = False  # of a gateway, on this node since it is none
        # The destinations of the routes we want (set before each converge reads the
        # kernel): a change to any route to them, anyone's, is a reason to converge.
        self._destinations: frozenset[str] = frozenset()

    def desired(self) -> set[Route]:
        lease = next((x for x in self.leases.list() if o.name(x) == names.GATEWAY_LEASE), None)
        return desired_routes(self.node_name, self.cluster_id, self.nodes.list(),
                              self.clusters.list(), self.gateways.list(), holder_of(lease))

    def _clear_gateway_leftovers(self) -> None:
        """On a node that is no gateway any more (its label removed): the cable's
        routes and the standby conntrack table go. The gateway pod is gone with the
        label, and a stopping engine removes nothing (a restart must not disturb
        traffic), so they would stay: this node's clusterset traffic would go into a
        cable nobody serves, and its connections would be left untracked."""
        node = self.nodes.get(self.node_name)
        if node is None:
            return
        if o.labels(node).get(names.GATEWAY_LABEL) == names.GATEWAY_LABEL_VALUE:
            self._leftovers_cleared = False  # a gateway again: its next removal counts
            return
        if self._leftovers_cleared:
            return
        removed = cable_routes(self.table.netns).clear()
        try:
            Standby(self.table.netns).converge(None)
        except ConntrackSyncError as exc:
            log.warning("could not remove the standby conntrack table: %s", exc)
            return  # tried again on the next round
        if removed:
            log.info("%s is no gateway node: removed %d cable routes it left", self.node_name,
                     removed)
        self._leftovers_cleared = True

    def start(self, sync_timeout: float = 30.0) -> RouteAgent:
        self.informers.start()
        self.informers.wait_for_sync(sync_timeout)
        self._dirty.set()
        if self.vips is not None:
            self.vips.start()
        self._thread = threading.Thread(target=self._loop, name="routeagent", daemon=True)
        self._thread.start()
        self._watch = threading.Thread(target=self._watch_kernel, name="routeagent-netlink",
                                       daemon=True)
        self._watch.start()
        return self

    def _watch_kernel(self) -> None:
        """A route of ours changed by anyone (a hand deletion, too), or any route to a
        destination we want (a deposed cable's going): converge now."""
        events = RouteEvents(self.table.netns, proto=self.table.proto,
                             destinations=lambda: self._destinations)
        try:
            while not self._stop.is_set():
                if events.changed(0.5):
                    self._dirty.set()
        except Exception:
            log.exception("route notifications lost; the periodic check remains")
        finally:
            events.close()

    def stop(self) -> None:
        """Stop watching; the routes and the VIP table stay (traffic keeps flowing until
        the next agent)."""
        if self.vips is not None:
            self.vips.stop()
        self._stop.set()
        self._dirty.set()
        if self._thread:
            self._thread.join(5)
        self.informers.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait(self.check_period)
            if self._stop.is_set():
                return
            self._dirty.clear()
            try:
                desired = self.desired()
                self._destinations = frozenset(r.dst for r in desired)
                result = self.table.converge(desired)
                self._clear_gateway_leftovers()
            except Exception:
                metrics.ROUTE_CONVERGES.labels(result="error").inc()
                log.exception("routes not converged; retrying")
                self._stop.wait(1.0)
                self._dirty.set()
                continue
            metrics.ROUTE_CONVERGES.labels(result="ok").inc()
            metrics.ROUTES.set(len(desired))
            metrics.ROUTE_CHANGES.labels(op="add").inc(len(result.added))
            metrics.ROUTE_CHANGES.labels(op="remove").inc(len(result.removed))
            if result.changes:
                log.info("routes: +%s -%s", [f"{r.dst} via {r.via}" for r in result.added],
                         [f"{r.dst} via {r.via}" for r in result.removed])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.routeagent",
                                description="Route clusterset traffic of this node to the "
                                            "active gateway node.")
    p.add_argument("--kubeconfig", type=Path, required=True)
    p.add_argument("--node-name", required=True, help="this node's Node object")
    p.add_argument("--cluster-id", required=True)
    p.add_argument("--netns", help="program this named network namespace instead of our own")
    p.add_argument("--uninstall", action="store_true",
                   help="remove every route of ours (proto 149) and the ClusterSetIP VIP "
                        "table, and exit")
    p.add_argument("--metrics-port", type=int, default=0,
                   help="serve Prometheus metrics on this port (0: off)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    daemon.setup_logging(args.verbose)
    problem = netns.missing(args.netns)
    if problem:
        print(f"routeagent: {problem}", file=sys.stderr)
        return 2
    table = RouteTable(args.netns)
    if args.uninstall:
        removed = table.clear()
        vips = " and the VIP table" if viptable.remove(args.netns) else ""
        print(f"routeagent: removed {removed} routes{vips}")
        return 0
    if not args.kubeconfig.exists():
        print(f"routeagent: kubeconfig {args.kubeconfig} not found", file=sys.stderr)
        return 2
    from kube.client import new_api_client

    agent = RouteAgent(new_api_client(args.kubeconfig), node_name=args.node_name,
                       cluster_id=args.cluster_id, table=table)
    if args.metrics_port:
        metrics.register_route_agent()
    metrics.serve(args.metrics_port, what="route agent")
    return daemon.serve(agent, f"route agent of {args.cluster_id}/{args.node_name} started")


if __name__ == "__main__":
    sys.exit(main())
