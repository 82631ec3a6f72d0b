"""The API vocabulary the components share: namespaces, fixed object and lease names,
labels, annotations, the Broker's ConfigMap keys and GlobalIngressIP targets.

Each string here is written by one component and read by another - often in another
process, on another cluster's API server, or by upstream Submariner's and the MCS
API's own tools - so it is spelled once, here, and imported everywhere (tests too).
Names follow upstream Submariner, Lighthouse and the MCS API wherever those have one,
so habits and tooling carry over; the few that are ours say so.

Condition types and reasons are not here: each has one writer, and they stay with it
(``globalnet.controllers.reasons``, ``lighthouse.agent.reasons``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# --- namespaces -------------------------------------------------------------------------
# On the Broker's API server: every member's Cluster and Endpoint objects, the
# ServiceImports and EndpointSlices Lighthouse exporters publish, and the Globalnet
# record below. Written by `gnctl deploy-broker`/`join`/`leave`, the gateway engine and
# the Lighthouse exporter; read by every member's Broker syncer and Lighthouse importer.
BROKER_NAMESPACE: Final = "submariner-k8s-broker"
# On the Broker: one namespace per member, holding what that member publishes (its
# Endpoint, its ServiceImports and EndpointSlices); the member's Broker identity
# (``broker_member_account``) may write there and nowhere else.
# Created by `gnctl join`, deleted by `gnctl leave`; which namespaces exist follows the
# Cluster objects in BROKER_NAMESPACE (the readers watch exactly those).
BROKER_MEMBER_NAMESPACE_MAX: Final = 63


def broker_member_namespace(cluster_id: str, broker_namespace: str = BROKER_NAMESPACE) -> str:
    """The Broker namespace a member publishes into (see above)."""
    return f"{broker_namespace}-{cluster_id}"


# The joining identity every broker-info file carries (a ServiceAccount in
# BROKER_NAMESPACE, made by `gnctl deploy-broker`).
BROKER_JOIN_ACCOUNT: Final = "globalnet-broker-join"


def broker_member_account(cluster_id: str) -> str:
    """A member's identity on the Broker: a ServiceAccount in BROKER_NAMESPACE made by
    `gnctl join`, deleted (revoked) by `gnctl leave`; upstream's name."""
    return f"cluster-{cluster_id}"


# On the Broker's Cluster objects: the UID of the member's kube-system namespace, which
# tells a rejoin of the same cluster from another cluster claiming a used cluster ID.
CLUSTER_UID_ANNOTATION: Final = "globalnet.io/cluster-uid"
# In each member cluster: where the agents run and hold their leases, where the Broker
# syncer keeps its copies of the Cluster and Endpoint objects (read by Globalnet, the
# route agent and the gateway engine) and the gateway engine its Gateway objects (read
# by the route agent and Lighthouse's DNS feed).
CLUSTER_NAMESPACE: Final = "submariner-operator"

# --- the Broker's address pools (ConfigMaps in BROKER_NAMESPACE) -----------------------
# Each pool is a range cut into per-cluster slices: written by `gnctl deploy-broker`
# (range, size, enabled) and `gnctl join`/`leave` (which cluster holds which slice).


@dataclass(frozen=True)
class PoolKeys:
    """The data keys of one pool's ConfigMap."""

    enabled: str  # "true" / "false"
    cidr_range: str  # the clusterset's range
    cluster_size: str  # default addresses per cluster
    # JSON list of {"cluster_id": ..., "global_cidr": [...]}: the allocations.
    cluster_info: str = "clusterinfo"


# The global CIDRs Globalnet translates to; name and keys as upstream, so its tools read
# our Broker.
GLOBALNET_INFO_CONFIGMAP: Final = "submariner-globalnet-info"
GLOBALNET_KEYS: Final = PoolKeys(enabled="globalnetEnabled", cidr_range="globalnetCidrRange",
                                 cluster_size="globalnetClusterSize")
# Ours: the ClusterSetIP VIPs Lighthouse hands to ClusterSetIP-type ServiceImports (one
# VIP per service for the whole clusterset, taken from the slice of the cluster whose
# export is oldest). Read by every member's Lighthouse agent; `enabled` means every
# service answers its VIP in DNS, not only those annotated.
CLUSTERSET_IP_CONFIGMAP: Final = "submariner-clusterset-ip-info"
CLUSTERSET_IP_KEYS: Final = PoolKeys(enabled="clustersetIPEnabled",
                                     cidr_range="clustersetIPCidrRange",
                                     cluster_size="clustersetIPClusterSize")

# --- the Broker's credentials in a member (a Secret in CLUSTER_NAMESPACE) ---------------
# A kubeconfig for the Broker's API server (its URL, CA and the member's token),
# written by `gnctl join`; mounted by the deployed gateway engine, Broker syncer and
# Lighthouse agent (deploy.manifests) as their --broker-kubeconfig.
BROKER_KUBECONFIG_SECRET: Final = "globalnet-broker-kubeconfig"
# The clusterset's IPsec pre-shared key: on the Broker (made once by deploy-broker)
# and, for members with the IPsec cable, in the cluster namespace (written by join).
IPSEC_PSK_SECRET: Final = "globalnet-ipsec-psk"
IPSEC_PSK_KEY: Final = "psk"
BROKER_KUBECONFIG_KEY: Final = "kubeconfig"

# --- leases (in CLUSTER_NAMESPACE) ------------------------------------------------------
# The active gateway of a cluster: held by one gateway engine at a time.
GATEWAY_LEASE: Final = "globalnet-gateway"


def globalnet_lease(cluster_id: str) -> str:
    """The Lease whose holder runs the cluster's Globalnet controllers (one per cluster)."""
    return f"globalnet-{cluster_id}"


# --- objects with fixed names -------------------------------------------------------------
# The only ClusterGlobalEgressIP upstream honours; Globalnet creates it when missing and
# refuses any other name. The lab and tests read its status.
CLUSTER_EGRESS_NAME: Final = "cluster-egress.submariner.io"

# --- gateway nodes ------------------------------------------------------------------------
# Marks the nodes that may carry the cluster's cable (set by whoever deploys: `gnctl`,
# the lab's kubelet); read by Globalnet, the route agent and the gateway engine.
GATEWAY_LABEL: Final = "submariner.io/gateway"
GATEWAY_LABEL_VALUE: Final = "true"
GATEWAY_SELECTOR: Final = f"{GATEWAY_LABEL}={GATEWAY_LABEL_VALUE}"
# The gateway node's health-check global IP: written by Globalnet, published by the
# gateway engine in its Endpoint, pinged by the other clusters' gateways.
GATEWAY_GLOBAL_IP_ANNOTATION: Final = "submariner.io/globalIp"
# On a gateway node, set by its admin (the lab sets it): the node's address the cable to
# the other clusters uses, when that is not its InternalIP (a separate underlay
# interface). Read by the gateway engine at start. Ours.
CABLE_IP_ANNOTATION: Final = "gateway.globalnet.io/cable-ip"
# On a member's Cluster object: the cable driver of its gateways (gnctl join checks
# that every member uses the same).
CABLE_DRIVER_ANNOTATION: Final = "gateway.globalnet.io/cable-driver"

# --- who manages an object ----------------------------------------------------------------
# The Kubernetes recommended label; each writer sets its own value and touches only
# objects that carry it.
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_GLOBALNET: Final = "globalnet"  # GlobalIngressIPs made for exported services
MANAGED_BY_LIGHTHOUSE: Final = "lighthouse-agent"  # ServiceImports, EndpointSlices
LIGHTHOUSE_SELECTOR: Final = f"{MANAGED_BY_LABEL}={MANAGED_BY_LIGHTHOUSE}"

# --- GlobalIngressIPs ---------------------------------------------------------------------
# Written by Globalnet's service-export controller on the GlobalIngressIPs it creates, so
# it (and Lighthouse's exporter) find them from the Service alone: the Service's name.
SERVICE_REF_LABEL: Final = "submariner.io/serviceRef"
# For target HeadlessServiceEndpoints: which endpoint address the global IP maps to.
# Written by Globalnet; read by its intent and by Lighthouse's exporter.
HEADLESS_ENDPOINT_IP_ANNOTATION: Final = "submariner.io/headless-svc-endpoints-ip"
# spec.target values (the CRD's enum).
TARGET_CLUSTER_IP_SERVICE: Final = "ClusterIPService"
TARGET_HEADLESS_POD: Final = "HeadlessServicePod"
TARGET_HEADLESS_ENDPOINTS: Final = "HeadlessServiceEndpoints"

# --- GlobalEgressIPs ----------------------------------------------------------------------
# Ours: the first accepted podSelector (canonical JSON). The field is immutable as
# upstream; Globalnet refuses later edits and keeps this one in force across restarts.
ACCEPTED_POD_SELECTOR_ANNOTATION: Final = "globalnet.submariner.io/accepted-pod-selector"

# --- exported services: MCS and Lighthouse labels -----------------------------------------
# On every ServiceImport and EndpointSlice Lighthouse publishes on the Broker or imports
# into a cluster; other clusters' agents and the DNS feed select and read them by these.
# MCS well-known labels:
SOURCE_CLUSTER_LABEL: Final = "multicluster.kubernetes.io/source-cluster"
SERVICE_NAME_LABEL: Final = "multicluster.kubernetes.io/service-name"
# Upstream Lighthouse's: the exported Service's namespace (the Broker holds every
# namespace's exports in one namespace).
SOURCE_NAMESPACE_LABEL: Final = "lighthouse.submariner.io/sourceNamespace"
# Ours: ClusterSetIP or Headless, so an EndpointSlice says how to read it by itself
# (the DNS feed needs no ServiceImport lookup).
SERVICE_TYPE_LABEL: Final = "lighthouse.submariner.io/serviceType"
# kube-controller-manager's EndpointSlice controllers leave alone any slice whose
# managed-by names someone else; no `kubernetes.io/service-name` label is ever set, so
# kube-proxy never programs these slices.
ENDPOINTSLICE_MANAGED_BY_LABEL: Final = "endpointslice.kubernetes.io/managed-by"
ENDPOINTSLICE_MANAGED_BY_LIGHTHOUSE: Final = "lighthouse-agent.submariner.io"
# Ours, set by users on a ServiceExport: how the clusterset name spreads clients,
# ``balanced`` (over every cluster with ready backends, the local one included,
# weighted by their ready backends) or ``local-first`` (the default, also what the
# Service's ``trafficDistribution: PreferClose`` asks for). Carried on the Broker and
# aggregated ServiceImports; the oldest export's choice is the service's.
TRAFFIC_DISTRIBUTION_ANNOTATION: Final = "lighthouse.submariner.io/traffic-distribution"
# Ours, on a ClusterSetIP export's EndpointSlices: the service's traffic distribution
# (as above, the same on every cluster's slice once the exporters agree) and how many
# ready backends the exporting cluster has (the weight of a balanced answer).
TRAFFIC_DISTRIBUTION_LABEL: Final = "lighthouse.submariner.io/traffic-distribution"
READY_BACKENDS_LABEL: Final = "lighthouse.submariner.io/ready-backends"
# When the ServiceExport was created (RFC 3339), on published ServiceImports: the oldest
# export decides the aggregated type when clusters disagree (MCS conflict resolution).
EXPORTED_AT_ANNOTATION: Final = "lighthouse.submariner.io/exported-at"
# Ours: the comma-separated keys of the annotations a ServiceExport's
# ``spec.exportedAnnotations`` put on a ServiceImport, so one taken out of the export is
# removed again while annotations others set stay.
EXPORTED_ANNOTATIONS_ANNOTATION: Final = "lighthouse.submariner.io/exported-annotations"
# Ours: the ClusterSetIP VIP an exporting cluster holds for the service, on its Broker
# ServiceImport (whose ``spec.ips`` is that cluster's own global IP). The VIP of the
# oldest export holding one is the service's in every cluster
# (``lighthouse.agent.clustersetip``).
CLUSTERSET_IP_ANNOTATION: Final = "lighthouse.submariner.io/clusterset-ip"
# Upstream Lighthouse's, set by users on a ServiceExport: "true" makes the clusterset
# name answer the service's ClusterSetIP VIP ("false" keeps the per-cluster global IPs
# where the clusterset answers VIPs for every service). The oldest export's choice is
# the service's; carried on the Broker ServiceImports.
USE_CLUSTERSET_IP_ANNOTATION: Final = "lighthouse.submariner.io/use-clusterset-ip"
# Ours, on a ClusterSetIP export's EndpointSlices: the service's VIP (the same on
# every cluster's slice once the exporters agree), and "true" when DNS answers it.
# Every VIP is routed on every node (``datapath.nftables.clustersetip``), answered
# in DNS or not: clients may use the ServiceImport's ``spec.ips`` directly.
VIP_LABEL: Final = "lighthouse.submariner.io/vip"
VIP_IN_DNS_LABEL: Final = "lighthouse.submariner.io/vip-in-dns"
# Ours: the ConfigMap in CLUSTER_NAMESPACE that holds the cluster's VIP table (every
# VIP, its ports and the clusters its new connections go to, by weight), written by
# the Lighthouse agent from what its DNS answers from and applied by the route agent
# on every node; labelled so the route agents watch it alone.
VIP_TABLE_CONFIGMAP: Final = "globalnet-clusterset-ip-table"
VIP_TABLE_KEY: Final = "table.json"
VIP_TABLE_LABEL: Final = "lighthouse.submariner.io/vip-table"
# Label and annotation keys an export's exportedLabels/exportedAnnotations may not set:
# the agents find and read their objects by them.
RESERVED_IMPORT_LABELS: Final = frozenset({
    SOURCE_CLUSTER_LABEL, SERVICE_NAME_LABEL, SOURCE_NAMESPACE_LABEL, SERVICE_TYPE_LABEL,
    MANAGED_BY_LABEL, ENDPOINTSLICE_MANAGED_BY_LABEL})
RESERVED_IMPORT_ANNOTATIONS: Final = frozenset({
    EXPORTED_AT_ANNOTATION, EXPORTED_ANNOTATIONS_ANNOTATION, CLUSTERSET_IP_ANNOTATION,
    TRAFFIC_DISTRIBUTION_ANNOTATION, USE_CLUSTERSET_IP_ANNOTATION})
