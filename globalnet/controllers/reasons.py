"""Condition types and reasons Globalnet writes, its defaults and pool owner keys.

Names, labels and annotations other components share are in `kube.names`.
"""

from __future__ import annotations

# Condition types.
ALLOCATED = "Allocated"
UPDATED = "Updated"

# Condition reasons: stable strings that users and tools match on.
SUCCESS = "Success"
IP_POOL_ALLOCATION_FAILED = "IPPoolAllocationFailed"
INVALID_INPUT = "InvalidInput"
ZERO_INPUT = "ZeroInput"
INVALID_INSTANCE = "InvalidInstance"
POD_SELECTOR_UPDATE_NOT_SUPPORTED = "PodSelectorUpdateNotSupported"
# Ours: a record found at start-up that collided with another object's.
CONFLICTING_ALLOCATION = "ReallocatedAfterConflict"

# Addresses an object gets when its spec does not say (as upstream).
DEFAULT_CLUSTER_EGRESS_IPS = 8
DEFAULT_EGRESS_IPS = 1

# Owner keys in the shared pool: "<Kind>/<namespace>/<name>" or "<Kind>/<name>".
KIND_CLUSTER_EGRESS = "ClusterGlobalEgressIP"
KIND_EGRESS = "GlobalEgressIP"
KIND_INGRESS = "GlobalIngressIP"
KIND_GATEWAY = "Node"


def owner_key(kind: str, key: str) -> str:
    return f"{kind}/{key}"
