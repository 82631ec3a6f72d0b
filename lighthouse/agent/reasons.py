"""Names the Lighthouse agent shares with users and other tools: conditions, types.

Everything here is a stable string: users match on condition reasons. Names follow
upstream Lighthouse and the MCS API where they exist, so habits and tooling carry
over. The labels and annotations other clusters' agents select our objects by are
in ``kube.names``.

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

# --- ServiceImport types ----------------------------------------------------------------------
CLUSTER_SET_IP: Final = "ClusterSetIP"
HEADLESS: Final = "Headless"
