"""What each agent may do on the API: the one list of RBAC rules, per component.

Every rule names the code that needs it. A rule has a scope: ``CLUSTER`` rules go
into the component's ClusterRole (objects in every namespace, or cluster-scoped
kinds), ``NAMESPACE`` rules into its Role in the agents' namespace
(``names.CLUSTER_NAMESPACE``). The ``BROKER_*`` rules are what the component does on the
Broker's API server with its member's Broker identity: in the member's own namespace
there (``BROKER_OWN``: what it publishes), in every member's namespace (``BROKER_MEMBERS``:
what it imports) and in the shared Broker namespace (``BROKER_SHARED``: the Cluster
objects join writes). They are not part of a member cluster's manifests: ``deploy.broker``
builds the Broker's roles from them, so a member's identity can do exactly what its
agents do and write nothing but its own namespace.

No rule has a wildcard verb, resource or group. ``get`` appears wherever a write is
retried from a fresh copy (``kube.controller.write_status`` and the create-or-update
helpers re-read the object on 409). API discovery (``kube.discovery``) needs no rule:
the built-in ``system:discovery`` role grants it to every authenticated user.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from kube import names, resources
from kube.resources import Resource

JSON = dict[str, Any]


class Scope(enum.Enum):
    CLUSTER = "cluster"  # ClusterRole + ClusterRoleBinding
    NAMESPACE = "namespace"  # Role + RoleBinding in the agents' namespace
    BROKER_OWN = "broker-own"  # on the Broker, in the member's own namespace
    BROKER_MEMBERS = "broker-members"  # on the Broker, in every member's namespace
    BROKER_SHARED = "broker-shared"  # on the Broker, in names.BROKER_NAMESPACE


@dataclass(frozen=True)
class Rule:
    scope: Scope
    resource: Resource
    verbs: tuple[str, ...]
    subresource: str | None = None
    resource_names: tuple[str, ...] = ()

    def policy_rule(self, cluster_id: str) -> JSON:
        """The rule as an RBAC PolicyRule; ``{cluster_id}`` in a resource name is
        replaced by the cluster's ID."""
        plural = self.resource.plural
        rule: JSON = {
            "apiGroups": [self.resource.group],
            "resources": [f"{plural}/{self.subresource}" if self.subresource else plural],
            "verbs": list(self.verbs),
        }
        if self.resource_names:
            rule["resourceNames"] = [n.format(cluster_id=cluster_id)
                                     for n in self.resource_names]
        return rule


# The components, one ServiceAccount each; their containers are named the same.
GATEWAY_ENGINE = "gateway-engine"
BROKER_SYNCER = "broker-syncer"
GLOBALNET = "globalnet"
ROUTE_AGENT = "route-agent"
LIGHTHOUSE_AGENT = "lighthouse-agent"
COMPONENTS = (GATEWAY_ENGINE, BROKER_SYNCER, GLOBALNET, ROUTE_AGENT, LIGHTHOUSE_AGENT)

C, N = Scope.CLUSTER, Scope.NAMESPACE
BO, BM, BS = Scope.BROKER_OWN, Scope.BROKER_MEMBERS, Scope.BROKER_SHARED
READ = ("list", "watch")  # an informer (kube.informer): list, then watch
# The EndpointSlice version is discovered at run time (1.20: v1beta1); RBAC ignores
# versions, so either constant names the same resource.
ENDPOINTSLICES = resources.ENDPOINTSLICES_V1BETA1

RULES: dict[str, tuple[Rule, ...]] = {
    # gateway/engine.py (GatewayEngine)
    GATEWAY_ENGINE: (
        # kube.leaderelection.LeaderElector for the active gateway: reads and renews
        # the one Lease, creates it when missing (create cannot be limited by name).
        Rule(N, resources.LEASES, ("get", "update"), resource_names=(names.GATEWAY_LEASE,)),
        Rule(N, resources.LEASES, ("create",)),
        # self.endpoints: the informer over the Broker syncer's copies of every
        # member's Endpoint (the remote cable ends).
        Rule(N, resources.SUBMARINER_ENDPOINTS, READ),
        # _write_status: the node's Gateway object is created when missing, re-read
        # on conflict, and its status (HA state, connections, RTTs) written.
        Rule(N, resources.GATEWAYS, ("get", "create")),
        Rule(N, resources.GATEWAYS, ("update",), subresource="status"),
        # The gateway nodes' informer: this node's health-check global IP annotation
        # (written by Globalnet) goes into the published Endpoint (`endpoint_spec`;
        # any gateway node may run it, so the name is not known when the role is
        # written), and `ctsync_link` takes the other gateway nodes' InternalIPs, the
        # peers conntrack state is replicated to. cable_ip(): the node's cable IP.
        Rule(C, resources.NODES, ("get", *READ)),
        # EndpointPublisher: this cluster's Endpoint on the Broker; the Endpoints of
        # its earlier gateways are withdrawn (listed once per term).
        Rule(BO, resources.SUBMARINER_ENDPOINTS,
             ("get", "list", "create", "update", "delete")),
    ),
    # gateway/syncer.py (ClusterSyncer)
    BROKER_SYNCER: (
        # reconcile(): the local copies of the Broker's Cluster and Endpoint objects,
        # watched (hand edits are put back), created, updated and removed; it never
        # reads one by name (the informer is its source).
        Rule(N, resources.CLUSTERS, (*READ, "create", "update", "delete")),
        Rule(N, resources.SUBMARINER_ENDPOINTS, (*READ, "create", "update", "delete")),
        # self._broker: the informers over the Broker's originals: the Cluster
        # objects (which also name the member namespaces) and every member's Endpoint.
        Rule(BS, resources.CLUSTERS, READ),
        Rule(BM, resources.SUBMARINER_ENDPOINTS, READ),
    ),
    # globalnet/agent.py -> globalnet/controllers/*
    GLOBALNET: (
        # manager.GlobalnetManager: leader election on the cluster's Globalnet Lease
        # (its name holds the cluster ID); create cannot be limited by name.
        Rule(N, resources.LEASES, ("get", "update"),
             resource_names=(names.globalnet_lease("{cluster_id}"),)),
        Rule(N, resources.LEASES, ("create",)),
        # publisher.IntentPublisher: who holds the gateway Lease (a passive gateway
        # node keeps its NAT state but translates nothing).
        Rule(N, resources.LEASES, READ),
        # gateway_health.GatewayHealthCheckController: the informer over Nodes (the
        # publisher also reads the gateway nodes from it) and the patch that sets or
        # clears the gateway node's health-check global IP annotation.
        Rule(C, resources.NODES, (*READ, "patch")),
        # global_egress (pod selectors), service_export (headless endpoints) and the
        # publisher (the NAT intent): informers only.
        Rule(C, resources.PODS, READ),
        Rule(C, resources.SERVICES, READ),
        Rule(C, resources.ENDPOINTS, READ),
        # service_export.ServiceExportController: which services are exported.
        Rule(C, resources.SERVICE_EXPORTS, READ),
        # manager.Term / publisher: every member's Cluster (the remote global CIDRs).
        Rule(C, resources.CLUSTERS, READ),
        # cluster_egress: the informer, ensure_default() creating
        # cluster-egress.submariner.io, and the Allocated status it records.
        Rule(C, resources.CLUSTER_GLOBAL_EGRESS_IPS, (*READ, "get", "create")),
        Rule(C, resources.CLUSTER_GLOBAL_EGRESS_IPS, ("update",), subresource="status"),
        # global_egress: the informer, the patch of the accepted-pod-selector
        # annotation, and the status.
        Rule(C, resources.GLOBAL_EGRESS_IPS, (*READ, "get", "patch")),
        Rule(C, resources.GLOBAL_EGRESS_IPS, ("update",), subresource="status"),
        # service_export creates and deletes the GlobalIngressIPs of exported
        # services; global_ingress allocates and records their status.
        Rule(C, resources.GLOBAL_INGRESS_IPS, (*READ, "get", "create", "delete")),
        Rule(C, resources.GLOBAL_INGRESS_IPS, ("update",), subresource="status"),
    ),
    # gateway/routeagent.py (RouteAgent): informers only; it writes routes, not objects.
    ROUTE_AGENT: (
        # self.nodes: the active gateway node's InternalIP (the next hop).
        Rule(C, resources.NODES, READ),
        # self.clusters / self.gateways: remote global CIDRs and the active gateway.
        Rule(N, resources.CLUSTERS, READ),
        Rule(N, resources.GATEWAYS, READ),
        # self.leases: the gateway Lease's holder is the active gateway, first.
        Rule(N, resources.LEASES, READ),
        # viptable.VipTableFollower: the cluster's VIP table ConfigMap (an informer
        # by label: list and watch cannot be limited by name).
        Rule(N, resources.CONFIGMAPS, READ),
    ),
    # lighthouse/agent/* (LighthouseAgent: exporter, importer, DNS feed)
    LIGHTHOUSE_AGENT: (
        # exporter.Exporter: the ServiceExports it publishes and whose Ready/Valid
        # conditions it writes (base.write_conditions re-reads on conflict).
        Rule(C, resources.SERVICE_EXPORTS, (*READ, "get")),
        Rule(C, resources.SERVICE_EXPORTS, ("update",), subresource="status"),
        # exporter: what an export publishes (services, their endpoints and pods, and
        # with Globalnet their GlobalIngressIPs); dnsfeed: local services.
        Rule(C, resources.SERVICES, READ),
        Rule(C, resources.ENDPOINTS, READ),
        Rule(C, resources.PODS, READ),
        Rule(C, resources.GLOBAL_INGRESS_IPS, READ),
        # importer.Importer: imports go only into namespaces that exist.
        Rule(C, resources.NAMESPACES, READ),
        # agent.LighthouseAgent.start: the DNS feed's gateway health (every namespace).
        Rule(C, resources.GATEWAYS, READ),
        # importer: the aggregated ServiceImports (spec by create-or-update, then
        # status.clusters) and the local copies of the Broker's EndpointSlices; also
        # agent.remove_imports (``--leave``).
        Rule(C, resources.SERVICE_IMPORTS, (*READ, "get", "create", "update", "delete")),
        Rule(C, resources.SERVICE_IMPORTS, ("update",), subresource="status"),
        Rule(C, ENDPOINTSLICES, (*READ, "get", "create", "update", "delete")),
        # exporter: this cluster's ServiceImports and EndpointSlices on the Broker
        # (created, updated, withdrawn; also agent.withdraw_cluster).
        Rule(BO, resources.SERVICE_IMPORTS, (*READ, "get", "create", "update", "delete")),
        Rule(BO, ENDPOINTSLICES, (*READ, "get", "create", "update", "delete")),
        # viptable.VipTableWriter: the cluster's VIP table ConfigMap, written by
        # server-side apply (a patch, which creates it when missing) and deleted when
        # no VIP is left (also agent.remove_vip_table).
        Rule(N, resources.CONFIGMAPS, ("patch", "delete"),
             resource_names=(names.VIP_TABLE_CONFIGMAP,)),
        Rule(N, resources.CONFIGMAPS, ("create",)),
        # brokercache.BrokerCache: every member's (the imports), in the member
        # namespaces the Cluster objects name.
        Rule(BS, resources.CLUSTERS, READ),
        Rule(BM, resources.SERVICE_IMPORTS, READ),
        Rule(BM, ENDPOINTSLICES, READ),
    ),
}


def rules_for(component: str, cluster_id: str, scope: Scope) -> list[JSON]:
    """The PolicyRules of one component in one scope, for one cluster."""
    return [rule.policy_rule(cluster_id) for rule in RULES[component] if rule.scope is scope]


def merged_rules(scope: Scope, cluster_id: str = "") -> list[JSON]:
    """Every component's rules of one scope as one role's PolicyRules: one rule per
    resource (and resource names), holding the union of the verbs, in a stable order.
    The Broker's member roles are built this way: one identity serves all of a
    member's agents."""
    verbs: dict[tuple[str, str, tuple[str, ...]], set[str]] = {}
    for component in COMPONENTS:
        for rule in RULES[component]:
            if rule.scope is scope:
                policy = rule.policy_rule(cluster_id)
                key = (policy["apiGroups"][0], policy["resources"][0],
                       tuple(policy.get("resourceNames", ())))
                verbs.setdefault(key, set()).update(policy["verbs"])
    out: list[JSON] = []
    for (group, resource, resource_names), held in sorted(verbs.items()):
        merged: JSON = {"apiGroups": [group], "resources": [resource], "verbs": sorted(held)}
        if resource_names:
            merged["resourceNames"] = list(resource_names)
        out.append(merged)
    return out
