"""One read of a member cluster: each kind `gnctl show` needs, listed at most once.

`gnctl show all` renders several views from the same objects, so the lists are kept
for the life of one `ClusterState` (one command) and every view sees the same
moment. A custom resource whose CRD is missing (a 404 on its list) means the cluster
was never joined: that is an `InventoryError` naming the server, not an API error.
Everything else a read raises (unreachable server, 401, 403) goes up unchanged for
cli/main.py to explain.
"""

from __future__ import annotations

from typing import Any

from deploy import manifests
from kube import errors, names, resources
from kube import objects as o
from kube.crud import ResourceClient
from kube.resources import Resource
from ops.errors import InventoryError

JSON = dict[str, Any]
# What the agents run as (deploy.manifests renders them; `gnctl join` applies them).
WORKLOAD_KINDS: tuple[Resource, ...] = (manifests.KINDS["DaemonSet"],
                                        manifests.KINDS["Deployment"])


class ClusterState:
    """The objects of one member cluster, read on first use and kept."""

    def __init__(self, api: Any, *, namespace: str = names.CLUSTER_NAMESPACE) -> None:
        self.api = api
        self.namespace = namespace
        self._lists: dict[tuple[str, str, str], list[JSON]] = {}
        self._objects: dict[tuple[str, str, str], JSON | None] = {}

    @property
    def server(self) -> str:
        """The API server's URL, for messages."""
        return str(self.api.configuration.host)

    def read_list(self, resource: Resource, *, namespace: str | None = None,
                  label_selector: str | None = None) -> list[JSON]:
        key = (resource.qualified_name, namespace or "", label_selector or "")
        if key not in self._lists:
            try:
                self._lists[key] = ResourceClient(self.api, resource).list(
                    namespace=namespace, label_selector=label_selector).items
            except Exception as exc:
                if not errors.is_not_found(exc):
                    raise
                raise InventoryError(self._not_joined()) from None
        return self._lists[key]

    def read_one(self, resource: Resource, name: str, *,
                 namespace: str | None = None) -> JSON | None:
        key = (resource.qualified_name, namespace or "", name)
        if key not in self._objects:
            self._objects[key] = ResourceClient(self.api, resource).get_or_none(
                name, namespace=namespace)
        return self._objects[key]

    def _not_joined(self) -> str:
        return (f"Globalnet's CRDs are not in the cluster of {self.server} (is it joined? "
                "`gnctl join` installs them)")

    # --- the kinds the views read ---------------------------------------------------------

    def clusters(self) -> list[JSON]:
        """The Broker syncer's copies of every member's Cluster object."""
        return self.read_list(resources.CLUSTERS, namespace=self.namespace)

    def endpoints(self) -> list[JSON]:
        """The Broker syncer's copies of every member's Endpoint."""
        return self.read_list(resources.SUBMARINER_ENDPOINTS, namespace=self.namespace)

    def gateways(self) -> list[JSON]:
        """One Gateway object per gateway engine: its HA status and connections."""
        return self.read_list(resources.GATEWAYS, namespace=self.namespace)

    def gateway_lease(self) -> JSON | None:
        return self.read_one(resources.LEASES, names.GATEWAY_LEASE, namespace=self.namespace)

    def gateway_nodes(self) -> list[JSON]:
        return self.read_list(resources.NODES, label_selector=names.GATEWAY_SELECTOR)

    def workloads(self) -> list[JSON]:
        """The agents' DaemonSets and Deployments."""
        return [workload for kind in WORKLOAD_KINDS
                for workload in self.read_list(kind, namespace=self.namespace)]

    def pods(self) -> list[JSON]:
        return self.read_list(resources.PODS, namespace=self.namespace)

    def cluster_egress_ips(self) -> list[JSON]:
        return self.read_list(resources.CLUSTER_GLOBAL_EGRESS_IPS)

    def egress_ips(self) -> list[JSON]:
        return self.read_list(resources.GLOBAL_EGRESS_IPS)

    def ingress_ips(self) -> list[JSON]:
        return self.read_list(resources.GLOBAL_INGRESS_IPS)

    def broker_secret(self) -> JSON | None:
        """What `gnctl join` recorded of the Broker: a kubeconfig in a Secret."""
        return self.read_one(resources.SECRETS, names.BROKER_KUBECONFIG_SECRET,
                        namespace=self.namespace)

    # --- facts derived from several kinds -------------------------------------------------

    def local_cluster_id(self) -> str | None:
        """This cluster's ID: what its agents were deployed with (`--cluster-id` of the
        gateway DaemonSet), else what its gateway engines publish."""
        found = workload_flag(self.workloads(), "cluster-id")
        if found:
            return found
        for gateway in self.gateways():
            cluster_id = (o.status(gateway).get("localEndpoint") or {}).get("cluster_id")
            if cluster_id:
                return str(cluster_id)
        return None


def workload_flag(workloads: list[JSON], flag: str) -> str | None:
    """The value of `--FLAG=VALUE` in the first container of `workloads` that has it."""
    prefix = f"--{flag}="
    for workload in workloads:
        template = o.spec(workload).get("template") or {}
        for container in (template.get("spec") or {}).get("containers") or []:
            for arg in [*(container.get("command") or []), *(container.get("args") or [])]:
                if isinstance(arg, str) and arg.startswith(prefix):
                    return arg[len(prefix):]
    return None
