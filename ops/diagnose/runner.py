"""The groups of `gnctl diagnose` by name, run over every cluster named.

Groups run in subctl's order; `all` runs each. A group that reads a kind whose
CRD is missing ends the command with the one line of `ops.cluster` (the cluster
is not joined): a check cannot pass or fail on a cluster without Globalnet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from ops.broker import BrokerConnection, read_brokers, recorded_broker
from ops.diagnose import connections, deployment, discovery, firewall, globalnet, kubeproxy
from ops.diagnose.model import Check, warned
from ops.diagnose.target import Target
from ops.errors import InventoryError

GROUPS: Final = ("deployment", "connections", "globalnet", "service-discovery",
                 "kube-proxy-mode", "firewall")


def _globalnet(targets: Sequence[Target], broker: BrokerConnection | None) -> list[Check]:
    """Pools per cluster; the overlaps once for the clusterset, from the Broker when it
    can be read, else from the first cluster's copies of the Cluster objects."""
    out: list[Check] = []
    read = False
    if broker is not None:
        try:
            view = read_brokers(broker)
            for ns in view.namespaces:  # each Broker namespace is a clusterset of its own
                out += globalnet.overlap_checks(
                    globalnet.members_of_broker(ns.members),
                    source=f"Cluster objects in {ns.namespace} on the Broker {view.server}")
            read = True
        except InventoryError as exc:
            out.append(warned(globalnet.GROUP, "Broker", f"not read: {exc}",
                              "name it with --broker-kubeconfig"))
    if not read and targets:
        out += globalnet.overlap_checks(globalnet.members_of_cluster(targets[0]),
                                        source=f"the Cluster objects copied into "
                                               f"{targets[0].name}")
    for t in targets:
        out += globalnet.pool_checks(t)
    return out


def broker_of(targets: Sequence[Target], named: BrokerConnection | None
              ) -> BrokerConnection | None:
    """The Broker named, else the one the first cluster recorded; None if neither."""
    if named is not None:
        return named
    for t in targets:
        try:
            return recorded_broker(t.state)
        except InventoryError:
            continue
    return None


def run(targets: Sequence[Target], groups: Sequence[str], *,
        broker: BrokerConnection | None = None) -> list[Check]:
    per_cluster: dict[str, Callable[[Target], list[Check]]] = {
        "deployment": deployment.run, "connections": connections.run,
        "kube-proxy-mode": kubeproxy.run, "firewall": firewall.run,
        "service-discovery": lambda t: discovery.run(t, targets, broker),
    }
    out: list[Check] = []
    for group in groups:
        if group == "globalnet":
            out += _globalnet(targets, broker)
            continue
        for t in targets:
            out += per_cluster[group](t)
    return out
