"""The lab's stand-in for kubelet and CNI.

There are no container runtimes here: a pod is a network namespace wired to its
node, its "containers" are processes started inside it, and its API status is
written by us. That is all the real endpoint controllers and kube-proxy need to
do their jobs: a Node object, and pods with a podIP and Ready=True.

Wiring is routed, Calico-style, with no bridge: the pod has its IP as a /32 and
a default route to the node's pod gateway address; the node holds that gateway
address on every pod veth and a /32 route per pod. So every pod packet is routed
(never bridged) by the node and passes its netfilter hooks, which kube-proxy and
the Globalnet datapath rely on, with no br_netfilter needed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from kube import names, resources
from kube.crud import ResourceClient
from lab import netns
from lab.topology import ClusterPlan, NodePlan


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def register_node(api: Any, node: NodePlan) -> None:
    """Create (or keep) the Node object and mark it Ready."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": {
                "kubernetes.io/hostname": node.name,
                "kubernetes.io/os": "linux",
                **({names.GATEWAY_LABEL: names.GATEWAY_LABEL_VALUE} if node.underlay_ip else {}),
            },
        },
        "spec": {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]},
    }
    nodes = ResourceClient(api, resources.NODES)
    nodes.create_if_absent(body)
    status = {
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": node.ip},
                {"type": "Hostname", "address": node.name},
            ],
            "conditions": [
                {
                    "type": "Ready", "status": "True", "reason": "LabNodeReady",
                    "message": "lab node namespace is up",
                    "lastHeartbeatTime": _now(), "lastTransitionTime": _now(),
                }
            ],
        }
    }
    nodes.patch_status(node.name, status)


def host_ifname(cluster: str, pod: str) -> str:
    """Node-side veth name: unique per pod, within the 15-character limit."""
    return "vp" + hashlib.sha256(f"{cluster}/{pod}".encode()).hexdigest()[:10]


def wire_pod(*, pod_ns: str, node: NodePlan, ip: str, ifname: str) -> None:
    """Create the pod namespace and route it through its node."""
    netns.ensure_netns(pod_ns)
    netns.ensure_veth(
        netns=node.netns, ifname=ifname, peer_netns=pod_ns, peer_ifname="eth0",
        address=f"{node.pod_gateway}/32", peer_address=f"{ip}/32",
    )
    netns.ensure_route(node.netns, f"{ip}/32", dev=ifname)
    netns.ensure_route(pod_ns, f"{node.pod_gateway}/32", dev="eth0")
    netns.ensure_route(pod_ns, "default", gateway=node.pod_gateway, dev="eth0")


def create_pod_object(
    api: Any, *, namespace: str, name: str, node: NodePlan,
    labels: dict[str, str], hostname: str | None = None, subdomain: str | None = None,
) -> None:
    spec: dict[str, Any] = {
        "nodeName": node.name,
        "containers": [{"name": "main", "image": "globalnet.lab/netns:latest"}],
    }
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    body = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": spec,
    }
    ResourceClient(api, resources.PODS).create_if_absent(body)


def set_pod_status(
    api: Any, *, namespace: str, name: str, node: NodePlan, ip: str, ready: bool
) -> None:
    """Write what kubelet would: Running, the pod IP, and readiness."""
    flag = "True" if ready else "False"
    now = _now()
    status = {
        "status": {
            "phase": "Running",
            "hostIP": node.ip,
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": now,
            "conditions": [
                {"type": t, "status": s, "lastTransitionTime": now}
                for t, s in (
                    ("Initialized", "True"), ("PodScheduled", "True"),
                    ("ContainersReady", flag), ("Ready", flag),
                )
            ],
            "containerStatuses": [
                {
                    "name": "main", "ready": ready, "restartCount": 0,
                    "image": "globalnet.lab/netns:latest", "imageID": "",
                    "state": {"running": {"startedAt": now}},
                }
            ],
        }
    }
    ResourceClient(api, resources.PODS).patch_status(name, status, namespace=namespace)


def node_by_name(cluster: ClusterPlan, name: str) -> NodePlan:
    for n in cluster.nodes:
        if n.name == name or n.name.endswith(f"-{name}"):
            return n
    raise LookupError(f"no node {name!r} in cluster {cluster.name}")
