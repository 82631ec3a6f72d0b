"""The route agent's ClusterSetIP part: the cluster's VIP table, applied on this node.

The Lighthouse agent writes the cluster's VIP table into one ConfigMap
(``names.VIP_TABLE_CONFIGMAP``, ``lighthouse.agent.viptable``); every node applies
it to its nft table ``ip globalnet-clusterset-ip``
(``datapath.nftables.clustersetip``), so a pod's connection to a VIP is sent to a
cluster on the pod's own node. The informer selects that ConfigMap by label and
nothing else: a node holds one small object, not the cluster's Services.

* A new plan is applied in one nft transaction as it arrives; established
  connections keep their cluster.
* The ConfigMap deleted (the last VIP gone, or the Lighthouse agent's leave): the
  table goes.
* A plan that cannot be read is logged and the table kept as it is (a half-written
  or hand-edited object must not cut every VIP); a failed apply is retried with
  backoff.
* Stopping the agent leaves the table (a restart must not disturb traffic);
  ``--uninstall`` removes it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from deferred_import import defer
from gateway import metrics
from kube import names, resources
from kube.informers import InformerSet
from kube.syncloop import SyncLoop

if TYPE_CHECKING:
    from datapath.nftables.clustersetip import VipTable

log = logging.getLogger(__name__)
# datapath.nftables.clustersetip without the package's __init__ (the whole nftables
# backend): the route agent, on every node, needs this one module of it.
defer("datapath.nftables")

JSON = dict[str, Any]


def vip_table(netns: str | None) -> VipTable:
    """The node's table; its module is imported only once there is one to program
    (most nodes of most clusters never hold a VIP), and without the nftables
    backend's package (``deferred_import``): the route agent runs on every node."""
    from datapath.nftables.clustersetip import VipTable

    return VipTable(netns)


class VipTableFollower:
    """Applies the cluster's VIP table ConfigMap to this node's nft table."""

    def __init__(self, informers: InformerSet, netns: str | None) -> None:
        self.netns = netns
        self.configmaps = informers.get(resources.CONFIGMAPS, namespace=names.CLUSTER_NAMESPACE,
                                        label_selector=f"{names.VIP_TABLE_LABEL}=true")
        self._loop = SyncLoop("VIP table apply", self.sync, log=log,
                              on_error=metrics.VIP_TABLE_APPLIES.labels(result="error").inc)
        self.configmaps.add_handler(on_add=lambda _o: self._loop.poke(),
                                    on_update=lambda _a, _b: self._loop.poke(),
                                    on_delete=lambda _o: self._loop.poke())
        self.applied: str | None = None  # the plan text in force ("" : no table)
        self.applies = 0
        self._refused: str | None = None
        self._table: VipTable | None = None

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def _plan(self) -> str:
        """The plan the ConfigMap holds ("" when there is none)."""
        cm = self.configmaps.get(f"{names.CLUSTER_NAMESPACE}/{names.VIP_TABLE_CONFIGMAP}")
        if cm is None:
            return ""
        return str((cm.get("data") or {}).get(names.VIP_TABLE_KEY) or "")

    def sync(self) -> bool:
        """Bring the node's table to the ConfigMap's plan; True when it changed."""
        plan = self._plan()
        if plan == self.applied:
            return False
        if not plan:
            if self._table is not None or self.applied is None:
                table = self._table or vip_table(self.netns)
                if table.delete():
                    log.info("VIP table removed: the cluster has no ClusterSetIP VIP")
            self.applied = ""
            metrics.VIPS.set(0)
            return True
        from datapath.nftables.clustersetip import plan_from_json

        try:
            services = plan_from_json(plan)
        except ValueError as exc:
            if plan != self._refused:
                self._refused = plan
                metrics.VIP_TABLE_APPLIES.labels(result="refused").inc()
                log.error("VIP table ConfigMap %s/%s refused, the table stays as it is: %s",
                          names.CLUSTER_NAMESPACE, names.VIP_TABLE_CONFIGMAP, exc)
            return False
        if self._table is None:
            self._table = vip_table(self.netns)
        self._table.apply(services)
        self.applied = plan
        self.applies += 1
        metrics.VIPS.set(len(services))
        metrics.VIP_TABLE_APPLIES.labels(result="ok").inc()
        log.info("VIP table: %d VIPs", len(services))
        return True


def remove(netns: str | None) -> bool:
    """``--uninstall``: drop the node's table; False when there was none."""
    return vip_table(netns).delete()
