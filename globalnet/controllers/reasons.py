"""Condition types, reasons, names, labels and annotations (as upstream Submariner)."""

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

# The only ClusterGlobalEgressIP upstream honours.
CLUSTER_EGRESS_NAME = "cluster-egress.submariner.io"
DEFAULT_CLUSTER_EGRESS_IPS = 8
DEFAULT_EGRESS_IPS = 1

# GlobalIngressIP targets.
TARGET_CLUSTER_IP_SERVICE = "ClusterIPService"
TARGET_HEADLESS_POD = "HeadlessServicePod"
TARGET_HEADLESS_ENDPOINTS = "HeadlessServiceEndpoints"

# Labels the ingress controller puts on the GlobalIngressIPs it creates, so it
# can find (and remove) them from the service alone.
SERVICE_REF_LABEL = "submariner.io/serviceRef"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "globalnet"
# For HeadlessServiceEndpoints: which endpoint address the global IP maps to.
HEADLESS_ENDPOINT_IP_ANNOTATION = "submariner.io/headless-svc-endpoints-ip"
# The accepted podSelector of a GlobalEgressIP: a later change is refused, and
# this keeps refusing it across restarts.
ACCEPTED_POD_SELECTOR_ANNOTATION = "globalnet.submariner.io/accepted-pod-selector"

# Gateway nodes and the health-check global IP kept on them.
GATEWAY_LABEL = "submariner.io/gateway"
GATEWAY_GLOBAL_IP_ANNOTATION = "submariner.io/globalIp"

# Owner keys in the shared pool: "<Kind>/<namespace>/<name>" or "<Kind>/<name>".
KIND_CLUSTER_EGRESS = "ClusterGlobalEgressIP"
KIND_EGRESS = "GlobalEgressIP"
KIND_INGRESS = "GlobalIngressIP"
KIND_GATEWAY = "Node"


def owner_key(kind: str, key: str) -> str:
    return f"{kind}/{key}"
