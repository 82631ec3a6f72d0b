"""`show networks`: each member's pod, service and global CIDRs.

Read from the Cluster objects the Broker syncer copies into every member (what
`gnctl join` published for each), so one cluster's view names the whole clusterset;
the cluster's own entry is marked. A member without a global CIDR runs without
Globalnet (its pod and service CIDRs are then what the others route to).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kube import objects as o

JSON = dict[str, Any]


@dataclass(frozen=True)
class ClusterNetwork:
    cluster_id: str
    local: bool  # the cluster this view was read from
    pod_cidrs: tuple[str, ...]
    service_cidrs: tuple[str, ...]
    global_cidrs: tuple[str, ...]
    globalnet: bool  # it has a global CIDR


@dataclass(frozen=True)
class NetworksView:
    local_cluster_id: str | None  # None: no agents deployed and no gateway report
    datapath: str  # the Globalnet agent's --datapath; "" when not deployed
    clusters: tuple[ClusterNetwork, ...]  # the local one first, then by ID


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def networks_view(clusters: list[JSON], *, local_cluster_id: str | None,
                  datapath: str) -> NetworksView:
    found = []
    for cluster in clusters:
        spec = o.spec(cluster)
        cluster_id = str(spec.get("cluster_id") or o.name(cluster))
        global_cidrs = _strings(spec.get("global_cidr"))
        found.append(ClusterNetwork(cluster_id, cluster_id == local_cluster_id,
                                    _strings(spec.get("cluster_cidr")),
                                    _strings(spec.get("service_cidr")),
                                    global_cidrs, bool(global_cidrs)))
    found.sort(key=lambda c: (not c.local, c.cluster_id))
    return NetworksView(local_cluster_id, datapath, tuple(found))
