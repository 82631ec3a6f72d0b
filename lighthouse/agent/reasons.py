"""Names the Lighthouse agent shares with users and other tools: conditions, types.

Everything here is a stable string: users match on condition reasons. Names follow
the MCS API (sigs.k8s.io/mcs-api v0.5.0, ``ServiceExportReason*``) where it has one,
so habits and tooling carry over; the few of our own say what the MCS reasons cannot
(a Globalnet address still missing). The labels and annotations other clusters'
agents select our objects by are in ``kube.names``.

ServiceExport conditions (kept few on purpose; each has one writer, the exporter):

=========  ======  ==============================  =======================================
type       status  reason                          meaning
=========  ======  ==============================  =======================================
Valid      True    Valid                           the Service can be exported
Valid      False   NoService                       no Service of that name (yet)
Valid      False   InvalidServiceType              not ClusterIP/headless (ExternalName...)
Valid      False   ServiceGlobalIPUnavailable      ClusterIP service without a global IP yet
Ready      True    Exported                        published to the Broker
Ready      False   Pending                         not valid yet, nothing published
Ready      False   ServiceGlobalIPUnavailable      headless: some ready backends lack one
Ready      False   Failed                          the Broker refused or is unreachable
Conflict   True    TypeConflict                    clusters disagree on ClusterSetIP/Headless
Conflict   True    PortConflict                    same port name, other port or protocol
Conflict   True    SessionAffinityConflict         None vs ClientIP
Conflict   True    SessionAffinityConfigConflict   other ClientIP timeouts
Conflict   True    InternalTrafficPolicyConflict   Cluster vs Local
Conflict   True    LabelsConflict                  other exportedLabels
Conflict   True    AnnotationsConflict             other exportedAnnotations
Conflict   False   NoConflicts                     a former conflict is resolved
=========  ======  ==============================  =======================================

With a ClusterSetIP slice (``gnctl join`` gives one when the Broker records a pool),
a ClusterSetIP export also carries ``ClusterSetIPAllocated``: ``True Allocated`` with
the service's VIP, or ``False ClusterSetIPPoolExhausted`` when this cluster's slice
has no VIP left for a service no older export holds one for.

Several conflicts at once are one ``Conflict`` whose reason joins theirs with commas,
in the order of :data:`CONFLICT_ORDER` (as the MCS API allows). ``Conflict`` appears
only once a conflict was seen (as upstream), so a plain export carries just ``Valid``
and ``Ready``.

The aggregated ServiceImport of a cluster carries ``Ready``: ``Ready`` when some
exporting cluster publishes a ready endpoint, else ``Pending``.
"""

from __future__ import annotations

from typing import Final

# --- condition types (MCS names) ------------------------------------------------------------
VALID: Final = "Valid"
READY: Final = "Ready"
CONFLICT: Final = "Conflict"
CLUSTERSET_IP_ALLOCATED: Final = "ClusterSetIPAllocated"

# --- ServiceExport reasons ---------------------------------------------------------------------
REASON_VALID: Final = "Valid"
NO_SERVICE: Final = "NoService"
INVALID_SERVICE_TYPE: Final = "InvalidServiceType"
SERVICE_GLOBAL_IP_UNAVAILABLE: Final = "ServiceGlobalIPUnavailable"
EXPORTED: Final = "Exported"
PENDING: Final = "Pending"
FAILED: Final = "Failed"
TYPE_CONFLICT: Final = "TypeConflict"
PORT_CONFLICT: Final = "PortConflict"
SESSION_AFFINITY_CONFLICT: Final = "SessionAffinityConflict"
SESSION_AFFINITY_CONFIG_CONFLICT: Final = "SessionAffinityConfigConflict"
INTERNAL_TRAFFIC_POLICY_CONFLICT: Final = "InternalTrafficPolicyConflict"
LABELS_CONFLICT: Final = "LabelsConflict"
ANNOTATIONS_CONFLICT: Final = "AnnotationsConflict"
NO_CONFLICTS: Final = "NoConflicts"
ALLOCATED: Final = "Allocated"
CLUSTERSET_IP_POOL_EXHAUSTED: Final = "ClusterSetIPPoolExhausted"

CONFLICT_ORDER: Final = (
    TYPE_CONFLICT, PORT_CONFLICT, SESSION_AFFINITY_CONFLICT, SESSION_AFFINITY_CONFIG_CONFLICT,
    INTERNAL_TRAFFIC_POLICY_CONFLICT, LABELS_CONFLICT, ANNOTATIONS_CONFLICT)

# --- ServiceImport reasons (its Ready condition) ------------------------------------------------
REASON_READY: Final = "Ready"
# PENDING as above: no exporting cluster has a ready endpoint yet.

# --- ServiceImport types ----------------------------------------------------------------------
CLUSTER_SET_IP: Final = "ClusterSetIP"
HEADLESS: Final = "Headless"

# --- Service values the MCS API copies ---------------------------------------------------------
SESSION_AFFINITY_NONE: Final = "None"
SESSION_AFFINITY_CLIENT_IP: Final = "ClientIP"
PREFER_CLOSE: Final = "PreferClose"  # trafficDistribution

# --- traffic distribution (``names.TRAFFIC_DISTRIBUTION_ANNOTATION``) -------------------------
LOCAL_FIRST: Final = "local-first"
BALANCED: Final = "balanced"
DISTRIBUTIONS: Final = (LOCAL_FIRST, BALANCED)
