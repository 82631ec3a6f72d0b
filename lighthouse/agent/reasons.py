"""Names the Lighthouse agent shares with users and other tools: conditions, labels.

Everything here is a stable string: users match on condition reasons, other
clusters' agents select our objects on the Broker by these labels. Names follow
upstream Lighthouse and the MCS API where they exist, so habits and tooling carry
over.

ServiceExport conditions (kept few on purpose; each has one writer, the exporter):

=========  ======  ============================  =========================================
type       status  reason                        meaning
=========  ======  ============================  =========================================
Valid      True    ServiceValid                  the Service can be exported
Valid      False   ServiceUnavailable            no Service of that name (yet)
Valid      False   UnsupportedServiceType        not ClusterIP/headless (ExternalName...)
Valid      False   ServiceGlobalIPUnavailable    ClusterIP service without a global IP yet
Ready      True    Exported                      published to the Broker
Ready      False   AwaitingExport                not valid yet, nothing published
Ready      False   ServiceGlobalIPUnavailable    headless: some ready backends lack one
Ready      False   ExportFailed                  the Broker refused or is unreachable
Conflict   True    ConflictingType               clusters disagree on ClusterSetIP/Headless
Conflict   True    ConflictingPorts              same port name, other port or protocol
Conflict   False   NoConflict                    a former conflict is resolved
=========  ======  ============================  =========================================

``Conflict`` appears only once a conflict was seen (as upstream), so a plain
export carries just ``Valid`` and ``Ready``.
"""

from __future__ import annotations

from typing import Final

# --- ServiceExport condition types (MCS names) -------------------------------------------
VALID: Final = "Valid"
READY: Final = "Ready"
CONFLICT: Final = "Conflict"

# --- reasons ------------------------------------------------------------------------------
SERVICE_VALID: Final = "ServiceValid"
SERVICE_UNAVAILABLE: Final = "ServiceUnavailable"
UNSUPPORTED_SERVICE_TYPE: Final = "UnsupportedServiceType"
SERVICE_GLOBAL_IP_UNAVAILABLE: Final = "ServiceGlobalIPUnavailable"
EXPORTED: Final = "Exported"
AWAITING_EXPORT: Final = "AwaitingExport"
EXPORT_FAILED: Final = "ExportFailed"
CONFLICTING_TYPE: Final = "ConflictingType"
CONFLICTING_PORTS: Final = "ConflictingPorts"
NO_CONFLICT: Final = "NoConflict"

# --- labels on every object the agent publishes or imports ------------------------------
# MCS well-known labels.
SOURCE_CLUSTER_LABEL: Final = "multicluster.kubernetes.io/source-cluster"
SERVICE_NAME_LABEL: Final = "multicluster.kubernetes.io/service-name"
# Upstream Lighthouse's: the exported Service's namespace (the Broker holds every
# namespace's exports in one namespace).
SOURCE_NAMESPACE_LABEL: Final = "lighthouse.submariner.io/sourceNamespace"
# Ours: ClusterSetIP or Headless, so an EndpointSlice says how to read it by itself
# (the DNS feed needs no ServiceImport lookup).
SERVICE_TYPE_LABEL: Final = "lighthouse.submariner.io/serviceType"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "lighthouse-agent"
# The EndpointSlice controllers of kube-controller-manager leave alone any slice
# whose managed-by names someone else; no `kubernetes.io/service-name` label is ever
# set, so kube-proxy never programs these slices.
ENDPOINTSLICE_MANAGED_BY_LABEL: Final = "endpointslice.kubernetes.io/managed-by"
ENDPOINTSLICE_MANAGED_BY: Final = "lighthouse-agent.submariner.io"

MANAGED_SELECTOR: Final = f"{MANAGED_BY_LABEL}={MANAGED_BY}"

# --- annotations ----------------------------------------------------------------------------
# When the ServiceExport was created (RFC 3339): the oldest export decides the
# aggregated type when clusters disagree (MCS conflict resolution).
EXPORTED_AT_ANNOTATION: Final = "lighthouse.submariner.io/exported-at"

# --- ServiceImport types ----------------------------------------------------------------------
CLUSTER_SET_IP: Final = "ClusterSetIP"
HEADLESS: Final = "Headless"
