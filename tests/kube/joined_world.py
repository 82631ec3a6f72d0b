"""What the gnctl show and diagnose tests build on one real API server: a Broker
in a namespace of its own with c1 and c2 joined (as `gnctl deploy-broker` and
`gnctl join` would), c1's Broker identity recorded in its cluster namespace, and
the agents' workloads as join renders them. Pods 10.244.0.0/16, services
10.96.0.0/16; each caller brings its own global range (256 addresses a cluster)."""

from __future__ import annotations

import contextlib
from typing import Any

from deploy import broker as broker_identity
from deploy import install, manifests
from gateway import clusterset
from kube import crud, names, resources

POD_CIDR, SERVICE_CIDR = "10.244.0.0/16", "10.96.0.0/16"


def join(api: Any, cluster_ns: str, broker_ns: str, cluster_id: str) -> str | None:
    """`cluster_id` joined; its global CIDR from the Broker."""
    request = clusterset.JoinRequest(cluster_id=cluster_id, cluster_cidrs=(POD_CIDR,),
                                     service_cidrs=(SERVICE_CIDR,), cable_driver="vxlan")
    return clusterset.join(api, api, request, broker_namespace=broker_ns,
                           cluster_namespace=cluster_ns).global_cidr


def joined_broker(api: Any, server: str, cluster_ns: str, broker_ns: str,
                  stack: contextlib.ExitStack, *, global_range: str) -> tuple[str | None, ...]:
    """deploy-broker, c1 and c2 joined (their global CIDRs returned), c1's identity
    recorded in `cluster_ns`; what is not in a namespace is removed by `stack`."""
    info = install.deploy_broker(api, server=server, globalnet=True, cidr_range=global_range,
                                 cluster_size=256, namespace=broker_ns,
                                 progress=lambda _line: None)
    rbac = resources.Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings",
                              "ClusterRoleBinding", namespaced=False)
    stack.callback(crud.ResourceClient(api, rbac).delete_if_exists,
                   f"{broker_identity.JOIN_ROLE}:{broker_ns}")
    for cluster_id in ("c1", "c2"):
        member = names.broker_member_namespace(cluster_id, broker_ns)
        stack.callback(crud.ResourceClient(api, resources.NAMESPACES).delete_if_exists, member)
        broker_identity.apply_all(api, broker_identity.member_objects(cluster_id, broker_ns))
    cidrs = tuple(join(api, cluster_ns, broker_ns, c) for c in ("c1", "c2"))
    token, _ca = broker_identity.account_token(api, names.broker_member_account("c1"),
                                               broker_ns)
    secret = install.broker_secret(info, token)
    secret["metadata"]["namespace"] = cluster_ns
    crud.ResourceClient(api, resources.SECRETS).create(secret)
    return cidrs


def agent_workloads(api: Any, cluster_ns: str, global_cidr: str, **options: Any) -> None:
    """c1's agents' DaemonSets and Deployment as join renders them (in `cluster_ns`)."""
    opts = manifests.Options(cluster_id="c1", global_cidr=global_cidr,
                             cluster_cidrs=(POD_CIDR,), service_cidrs=(SERVICE_CIDR,),
                             **options)
    for obj in manifests.render(opts):
        if obj["kind"] in ("DaemonSet", "Deployment"):
            obj["metadata"]["namespace"] = cluster_ns
            crud.ResourceClient(api, manifests.KINDS[obj["kind"]]).create(obj)
