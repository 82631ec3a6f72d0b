"""ClusterGlobalEgressIP: the cluster-wide egress addresses.

Only the instance named `kube.names.CLUSTER_EGRESS_NAME` is honoured (others get
InvalidInstance); it is created with 8 addresses when missing; a new `numGlobalIPs`
reallocates; 0 releases everything (ZeroInput).
"""

from __future__ import annotations

from globalnet.controllers import reasons as r
from globalnet.controllers.egress import EgressAllocationController
from kube import names, resources
from kube import objects as o


class ClusterEgressController(EgressAllocationController):
    name = "cluster-global-egress-ip"
    resource = resources.CLUSTER_GLOBAL_EGRESS_IPS
    kind = r.KIND_CLUSTER_EGRESS
    count_field = "numGlobalIPs"
    default_count = r.DEFAULT_CLUSTER_EGRESS_IPS

    def check(self, obj: o.JSON) -> tuple[str, str] | None:
        if o.name(obj) != names.CLUSTER_EGRESS_NAME:
            return (r.INVALID_INSTANCE, "Only the ClusterGlobalEgressIP instance named "
                    f"{names.CLUSTER_EGRESS_NAME} is supported")
        return None

    def ensure_default(self) -> None:
        """Create the cluster's egress object if nobody did (as upstream does at start)."""
        if self.informer.get(names.CLUSTER_EGRESS_NAME) is None:
            self.create_if_absent(self.client, {
                "metadata": {"name": names.CLUSTER_EGRESS_NAME},
                "spec": {"numGlobalIPs": r.DEFAULT_CLUSTER_EGRESS_IPS},
            })
